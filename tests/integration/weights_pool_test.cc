// The weight cache in a pool of 3 real daemons (static peers, UCX over tcp) pulling one file://
// origin at the same moment: every copy is whole, and each byte was read from the origin once in
// total (by the chunks' owners); the rest moved between the daemons. Then `weights ls` on each
// daemon names the others as holders of every chunk, wherever the chunk's directory is, and with
// one daemon frozen it still answers, counting that directory's chunks as unknown.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/free_port.h"
#include "common/local_daemon.h"
#include "tests/support/bin_path.h"
#include "tests/support/random_bytes.h"
#include "tests/support/wait.h"

namespace kvtier::testing {
namespace {

constexpr uint64_t kChunk = 256 << 10;
using Holders = std::map<std::string, uint64_t>;

TEST(WeightsPoolTest, ThreeDaemonsReadEachChunkOnceFromTheOrigin) {
  const std::string dir =
      std::filesystem::temp_directory_path() / ("kvtw-pool-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const auto bytes = RandomBytes(24 * kChunk + 999, 77);
  {
    std::ofstream out(dir + "/model.bin", std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
  }
  const std::string uri = "file://" + dir + "/model.bin";
  constexpr int kNodes = 3;
  std::string peers;
  for (int i = 0; i < kNodes; ++i) {
    peers += (i ? "," : "") + std::string(1, static_cast<char>('a' + i)) +
             "@127.0.0.1:" + std::to_string(FreeTcpPort());
  }
  std::vector<std::unique_ptr<LocalDaemon>> daemons;
  for (int i = 0; i < kNodes; ++i) {
    auto d = LocalDaemon::Start(
        BinPath("kvtierd"),
        {"--dram-capacity", "64MiB", "--node-id", std::string(1, static_cast<char>('a' + i)),
         "--peers", peers, "--ucx-tls", "tcp", "--peer-timeout-ms", "5000", "--weight-chunk-size",
         "256KiB", "--weight-capacity", "16MiB"});
    ASSERT_TRUE(d.ok()) << d.status();
    daemons.push_back(std::move(*d));
    std::filesystem::create_directories(dir + "/out" + std::to_string(i));
  }
  std::vector<ProcessResult> results(kNodes);
  std::vector<std::thread> pulls;
  for (int i = 0; i < kNodes; ++i) {
    pulls.emplace_back([&, i] {
      results[i] = RunProgram({BinPath("kvtier"), "--socket", daemons[i]->socket_path(), "weights",
                               "pull", uri, "--to", dir + "/out" + std::to_string(i), "--json"},
                              90);
    });
  }
  for (auto& t : pulls) t.join();
  uint64_t origin = 0, peer = 0;
  const std::string want(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  for (int i = 0; i < kNodes; ++i) {
    ASSERT_EQ(results[i].exit_code, 0) << results[i].output << daemons[i]->ReadLog();
    auto j = nlohmann::json::parse(results[i].output);
    origin += j["origin_bytes"].get<uint64_t>();
    peer += j["peer_bytes"].get<uint64_t>();
    EXPECT_EQ(j["origin_bytes"].get<uint64_t>() + j["peer_bytes"].get<uint64_t>() +
                  j["local_bytes"].get<uint64_t>(),
              bytes.size());
    std::ifstream in(dir + "/out" + std::to_string(i) + "/model.bin", std::ios::binary);
    const std::string got((std::istreambuf_iterator<char>(in)), {});
    EXPECT_TRUE(got == want) << "copy " << i << " differs";
  }
  // Each chunk came from the origin once in the whole pool; the other copies from peers.
  EXPECT_EQ(origin, bytes.size());
  EXPECT_EQ(peer, (kNodes - 1) * bytes.size());

  // Holders pool-wide. Each daemon is the directory of about a third of the chunks (by
  // placement), so every chunk listed with both other daemons means the other directories were
  // asked too. Announcements are batched: wait for them to land.
  const uint64_t chunks = (bytes.size() + kChunk - 1) / kChunk;
  auto ls = [&](int i, int timeout_ms) {
    ProcessResult r =
        RunProgram({BinPath("kvtier"), "--socket", daemons[i]->socket_path(), "--timeout-ms",
                    std::to_string(timeout_ms), "weights", "ls", "--json"},
                   90);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return r.exit_code == 0 ? nlohmann::json::parse(r.output)["files"][0] : nlohmann::json();
  };
  auto id = [](int i) { return std::string(1, static_cast<char>('a' + i)); };
  for (int i = 0; i < kNodes; ++i) {
    Holders want_holders;
    for (int j = 0; j < kNodes; ++j) {
      if (j != i) want_holders[id(j)] = chunks;
    }
    nlohmann::json f;
    kvtier::testing::WaitUntil(
        [&] {
          f = ls(i, 5000);
          return f.is_null() || f["holders"].get<Holders>() == want_holders;
        },
        absl::Seconds(30), absl::Milliseconds(50));
    ASSERT_FALSE(f.is_null());
    EXPECT_EQ(f["holders"].get<Holders>(), want_holders) << "ls on " << id(i) << ": " << f.dump();
    EXPECT_EQ(f["holders_unknown"].get<uint64_t>(), 0u) << f.dump();
  }

  // A frozen daemon (SIGSTOP: its socket accepts, nothing answers) must not hang `ls`: the asks
  // of its directory end at the peer deadline (--peer-timeout-ms 5000), its chunks are reported
  // unknown, and the other directories' chunks still list both holders (c's entries stay: it is
  // still a member).
  ASSERT_EQ(kill(daemons[2]->pid(), SIGSTOP), 0);
  const auto started = std::chrono::steady_clock::now();
  nlohmann::json f = ls(0, 60'000);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  ASSERT_EQ(kill(daemons[2]->pid(), SIGCONT), 0);
  ASSERT_FALSE(f.is_null());
  const uint64_t unknown = f["holders_unknown"].get<uint64_t>();
  EXPECT_GT(unknown, 0u) << f.dump();
  EXPECT_LT(unknown, chunks) << f.dump();
  const Holders want_holders = {{"b", chunks - unknown}, {"c", chunks - unknown}};
  EXPECT_EQ(f["holders"].get<Holders>(), want_holders) << f.dump();
  // Bounded by one peer deadline (5 s), not by the CLI's 60 s: a generous bound, not a timing.
  EXPECT_LT(seconds, 30.0);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kvtier::testing
