// The NVMe tier in a real daemon: blocks survive kill -9, corrupt records are misses, a failing
// device degrades the tier (and says so in `kvtier tiers`) while DRAM keeps serving.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/block_key.h"
#include "common/local_daemon.h"
#include "kvtier/client.h"
#include "tests/support/bin_path.h"
#include "tests/support/flip_byte.h"
#include "tests/support/random_bytes.h"
#include "tests/support/wait.h"

namespace kvtier::testing {
namespace {

constexpr uint64_t kBlock = 256 << 10;

class NvmeDaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // On the build tree's disk; it outlives each daemon, as a device does.
    dir_ = std::filesystem::current_path() / ("nvme-it-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    client_.reset();
    daemon_.reset();
    std::filesystem::remove_all(dir_);
  }

  void StartDaemon(std::vector<std::string> extra = {}) {
    client_.reset();
    std::vector<std::string> args = {
        "--dram-capacity", "16MiB", "--nvme-path", (dir_ / "nvme.dat").string(), "--nvme-capacity",
        "64MiB", "--demote-watermark", "0.01",
        // These tests are about durability and faults: write every block down.
        "--nvme-admit", "all"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto d = LocalDaemon::Start(BinPath("kvtierd"), args);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
    ClientOptions options;
    options.socket_path = daemon_->socket_path();
    ASSERT_TRUE(Client::Connect(options, &client_).ok());
    NamespaceLayout layout;
    layout.model_id = "nvme-it";
    layout.block_bytes = kBlock;
    ASSERT_TRUE(client_->RegisterNamespace(layout, &ns_).ok());
  }

  std::vector<BlockKey> Keys(size_t n) {
    std::vector<BlockKey> keys;
    for (size_t i = 0; i < n; ++i) keys.push_back({1000 + i, 42});
    return keys;
  }

  // Saves block i = RandomBytes(kBlock, i) one by one (no chain, so each can be loaded alone).
  void SaveAll(const std::vector<BlockKey>& keys) {
    for (size_t i = 0; i < keys.size(); ++i) {
      auto bytes = RandomBytes(kBlock, i);
      std::vector<const void*> src = {bytes.data()};
      ASSERT_TRUE(client_->Save(ns_, {&keys[i], 1}, src).ok());
    }
  }

  // Saves n blocks, waits until every one is on NVMe, then stops the daemon cleanly: the device
  // then holds them all and DRAM is gone.
  std::vector<BlockKey> SaveAndWriteDown(size_t n) {
    auto keys = Keys(n);
    SaveAll(keys);
    EXPECT_TRUE(WaitUntil([&] { return Nvme().blocks == n; }, absl::Seconds(20)));
    client_.reset();
    EXPECT_EQ(daemon_->Stop(), 0);
    return keys;
  }

  TierStats Nvme() {
    DaemonStats stats;
    EXPECT_TRUE(client_->Stats(&stats).ok());
    for (const TierStats& t : stats.tiers) {
      if (t.name == "nvme") return t;
    }
    ADD_FAILURE() << "no nvme tier in Stats";
    return {};
  }

  // Loads each key alone: 1 = right bytes, 0 = a miss; a wrong byte fails the test.
  int LoadOne(const BlockKey& key, size_t i) {
    std::vector<std::byte> out(kBlock);
    std::vector<void*> dst = {out.data()};
    size_t loaded = 0;
    EXPECT_TRUE(client_->Load(ns_, {&key, 1}, dst, &loaded).ok());
    if (loaded == 1) {
      EXPECT_EQ(out, RandomBytes(kBlock, i)) << "block " << i << " came back wrong";
    }
    return static_cast<int>(loaded);
  }

  std::filesystem::path dir_;
  std::unique_ptr<LocalDaemon> daemon_;
  std::unique_ptr<Client> client_;
  Namespace ns_;
};

TEST_F(NvmeDaemonTest, BlocksSurviveKill9AndComeBackFromNvme) {
  StartDaemon();
  auto keys = Keys(16);
  SaveAll(keys);
  ASSERT_TRUE(WaitUntil([&] { return Nvme().blocks == 16; }, absl::Seconds(20)));
  daemon_->Kill();
  StartDaemon();  // same device: a warm restart
  LookupResult lookup;
  ASSERT_TRUE(client_->Lookup(ns_.id, keys, &lookup).ok());
  ASSERT_EQ(lookup.prefix_blocks, 16u);
  EXPECT_EQ(lookup.tiers[0], Tier::kNvme);
  for (size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(LoadOne(keys[i], i), 1) << i;
  EXPECT_EQ(Nvme().hits, 16u);
}

TEST_F(NvmeDaemonTest, PrefetchMovesBlocksUpAndBlocksListsByTier) {
  StartDaemon();
  auto keys = SaveAndWriteDown(6);
  StartDaemon();  // everything is on NVMe only now
  ProcessResult listed = RunProgram({BinPath("kvtier"), "--socket", daemon_->socket_path(),
                                     "blocks", "--tier", "nvme", "--json"});
  ASSERT_EQ(listed.exit_code, 0) << listed.output;
  EXPECT_EQ(nlohmann::json::parse(listed.output)["blocks"].size(), 6u);
  size_t present = 0;
  ASSERT_TRUE(client_->Prefetch(ns_.id, keys, &present).ok());
  EXPECT_EQ(present, 6u);
  ASSERT_TRUE(WaitUntil(
      [&] {
        LookupResult r;
        return client_->Lookup(ns_.id, keys, &r).ok() && r.prefix_blocks == 6 &&
               std::all_of(r.tiers.begin(), r.tiers.end(), [](Tier t) { return t == Tier::kDram; });
      },
      absl::Seconds(20)));
  DaemonStats stats;
  ASSERT_TRUE(client_->Stats(&stats).ok());
  EXPECT_EQ(stats.leases, 0u);  // prefetch pins nothing
  for (size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(LoadOne(keys[i], i), 1);
}

TEST_F(NvmeDaemonTest, Kill9WhileWritingNeverServesAWrongByte) {
  StartDaemon();
  auto keys = Keys(48);
  SaveAll(keys);
  daemon_->Kill();  // the mover is writing right now
  StartDaemon();
  int served = 0;
  for (size_t i = 0; i < keys.size(); ++i) served += LoadOne(keys[i], i);
  EXPECT_LE(served, 48);  // whatever made it to the device intact; LoadOne checked every byte
}

TEST_F(NvmeDaemonTest, AFlippedByteOnTheDeviceIsAMissAndCounted) {
  StartDaemon();
  auto keys = SaveAndWriteDown(8);
  // The first record of the first region: its payload starts after two 4 KiB headers.
  ASSERT_TRUE(FlipByte((dir_ / "nvme.dat").string(), 8192 + 777));
  StartDaemon();
  int served = 0;
  for (size_t i = 0; i < keys.size(); ++i) served += LoadOne(keys[i], i);
  EXPECT_EQ(served, 7);
  EXPECT_EQ(Nvme().misses, 1u);
}

TEST_F(NvmeDaemonTest, AFailingDeviceIsDegradedInKvtierTiersAndDramServes) {
  StartDaemon({"--nvme-fail-writes-after", "2"});
  auto keys = Keys(8);
  SaveAll(keys);
  ASSERT_TRUE(WaitUntil([&] { return Nvme().status != "ok"; }, absl::Seconds(20)));
  ProcessResult tiers =
      RunProgram({BinPath("kvtier"), "--socket", daemon_->socket_path(), "tiers", "--json"});
  ASSERT_EQ(tiers.exit_code, 0) << tiers.output;
  auto j = nlohmann::json::parse(tiers.output);
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[1]["name"], "nvme");
  EXPECT_NE(j[1]["status"].get<std::string>().find("degraded"), std::string::npos);
  ProcessResult table =
      RunProgram({BinPath("kvtier"), "--socket", daemon_->socket_path(), "tiers"});
  EXPECT_NE(table.output.find("degraded"), std::string::npos) << table.output;
  // DRAM keeps serving: more saves, and the newest block loads.
  auto more = Keys(12);
  SaveAll(more);
  EXPECT_EQ(LoadOne(more.back(), more.size() - 1), 1);
  // Logged once, not per block.
  std::string log = daemon_->ReadLog();
  size_t count = 0;
  for (size_t at = log.find("degraded"); at != std::string::npos;
       at = log.find("degraded", at + 1)) {
    ++count;
  }
  EXPECT_EQ(count, 1u) << log;
}

}  // namespace
}  // namespace kvtier::testing
