// The kvtier CLI against a real daemon, and against none.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "common/block_key.h"
#include "cuda/gather_scatter.h"
#include "tests/integration/daemon_fixture.h"

namespace kvtier::testing {
namespace {

class CliTest : public DaemonTest {
 protected:
  ProcessResult Cli(std::vector<std::string> args) {
    std::vector<std::string> argv = {BinPath("kvtier"), "--socket", daemon_->socket_path()};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProgram(argv, 20);
  }
};

TEST_F(CliTest, StatusJsonReportsTheDramTier) {
  ProcessResult r = Cli({"status", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = nlohmann::json::parse(r.output);
  ASSERT_TRUE(j["tiers"].is_array());
  ASSERT_GE(j["tiers"].size(), 1u);
  EXPECT_EQ(j["tiers"][0]["name"], "dram");
  EXPECT_EQ(j["tiers"][0]["capacity_bytes"].get<uint64_t>(), 64u << 20);
  EXPECT_EQ(j["tiers"][0]["used_bytes"].get<uint64_t>(), 0u);
  EXPECT_EQ(j["tiers"][0]["blocks"].get<uint64_t>(), 0u);
}

TEST_F(CliTest, TablesAndJsonFollowTheCache) {
  Namespace ns = Register(1 << 20, "cli-model");
  auto keys = RandomKeys(3);
  auto data = RandomBytes(ns.block_bytes, 3);
  std::vector<const void*> src(3, data.data());
  ASSERT_TRUE(client_->Save(ns, keys, src).ok());

  ProcessResult tiers = Cli({"tiers"});
  ASSERT_EQ(tiers.exit_code, 0) << tiers.output;
  EXPECT_NE(tiers.output.find("dram"), std::string::npos) << tiers.output;
  EXPECT_NE(tiers.output.find("64.00 MiB"), std::string::npos) << tiers.output;

  ProcessResult names = Cli({"namespaces", "--json"});
  ASSERT_EQ(names.exit_code, 0) << names.output;
  auto nj = nlohmann::json::parse(names.output);
  ASSERT_EQ(nj.size(), 1u);
  EXPECT_EQ(nj[0]["blocks"].get<uint64_t>(), 3u);

  ProcessResult blocks = Cli({"blocks", "--json"});
  ASSERT_EQ(blocks.exit_code, 0) << blocks.output;
  auto bj = nlohmann::json::parse(blocks.output);
  ASSERT_TRUE(bj.is_array() || bj.contains("blocks")) << blocks.output;
  const auto& list = bj.is_array() ? bj : bj["blocks"];
  EXPECT_EQ(list.size(), 3u);

  char ns_hex[17];
  std::snprintf(ns_hex, sizeof(ns_hex), "%016llx", static_cast<unsigned long long>(ns.id));
  ProcessResult drop = Cli({"drop", "--ns", ns_hex, KeyToHex({keys[0].lo, keys[0].hi})});
  ASSERT_EQ(drop.exit_code, 0) << drop.output;
  LookupResult lookup;
  ASSERT_TRUE(client_->Lookup(ns.id, keys, &lookup).ok());
  EXPECT_EQ(lookup.prefix_blocks, 0u);
  ProcessResult all = Cli({"drop", "--ns", ns_hex, "--all"});
  ASSERT_EQ(all.exit_code, 0) << all.output;
  DaemonStats stats;
  ASSERT_TRUE(client_->Stats(&stats).ok());
  EXPECT_EQ(stats.tiers[0].blocks, 0u);
}

TEST(CliNoDaemonTest, MissingDaemonIsOneLineAndExitCode2) {
  ProcessResult r =
      RunProgram({BinPath("kvtier"), "--socket", "/tmp/kvtier-no-such.sock", "status"}, 20);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  std::string out = r.output;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  EXPECT_EQ(out.find('\n'), std::string::npos) << "more than one line: " << r.output;
  EXPECT_NE(out.find("kvtier"), std::string::npos);
}

// Asked for an HBM tier on a machine without a CUDA device: the tier is listed as absent, with
// the reason, and the daemon serves from DRAM as usual.
class CliHbmTest : public CliTest {
 protected:
  std::vector<std::string> DaemonArgs() override {
    return {"--dram-capacity", "64MiB", "--hbm-capacity", "1GiB"};
  }
};

TEST_F(CliHbmTest, AbsentHbmTierSaysWhy) {
  ProcessResult r = Cli({"tiers", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto j = nlohmann::json::parse(r.output);
  bool found = false;
  for (const auto& t : j) {
    if (t["name"] != "hbm") continue;
    found = true;
    const std::string status = t["status"];
    EXPECT_EQ(status.rfind("absent: ", 0), 0u) << status;
    if (cuda::DeviceCount() == 0) {
      EXPECT_NE(status.find("no CUDA device"), std::string::npos) << status;
    }
    EXPECT_EQ(t["capacity_bytes"].get<uint64_t>(), 0u);
  }
  EXPECT_TRUE(found) << r.output;
  ProcessResult table = Cli({"tiers"});
  EXPECT_NE(table.output.find("absent: "), std::string::npos) << table.output;
  EXPECT_NE(daemon_->ReadLog().find("HBM tier"), std::string::npos);
}

}  // namespace
}  // namespace kvtier::testing
