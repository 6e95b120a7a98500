// Faults: a client killed while holding leases, a daemon stopped or never started, bad flags.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/block_key.h"
#include "tests/integration/daemon_fixture.h"
#include "tests/support/wait.h"

namespace kvtier::testing {
namespace {

class FaultTest : public DaemonTest {
 protected:
  std::vector<std::string> DaemonArgs() override {
    return {"--dram-capacity", "32MiB", "--reaper-period-ms", "20"};
  }
};

TEST_F(FaultTest, AKilledClientsLeasesExpire) {
  Namespace ns = Register(256 << 10);
  auto keys = RandomKeys(3);
  auto data = RandomBytes(ns.block_bytes, 9);
  std::vector<const void*> src(3, data.data());
  ASSERT_TRUE(client_->Save(ns, keys, src).ok());

  // Another process acquires the blocks and reserves two slots, then dies holding both leases
  // (3 s leases: long enough to be seen held on a loaded machine, short enough to wait out).
  std::vector<std::string> argv = {BinPath("kvtier-test-peer"), "hold", daemon_->socket_path(),
                                   std::to_string(ns.block_bytes), "3000"};
  for (const BlockKey& k : keys) argv.push_back(KeyToHex({k.lo, k.hi}));
  auto holder = SpawnUntil(argv, "held", absl::Seconds(20));
  ASSERT_TRUE(holder.ok()) << holder.status();
  kill(*holder, SIGKILL);  // no destructor, no release
  int status;
  waitpid(*holder, &status, 0);

  DaemonStats stats;
  ASSERT_TRUE(client_->Stats(&stats).ok());
  EXPECT_EQ(stats.leases, 2u);
  DropResult drop;
  ASSERT_TRUE(client_->Drop(ns.id, keys, &drop).ok());
  EXPECT_EQ(drop.busy, 3u);  // still pinned by the dead reader

  ASSERT_TRUE(WaitUntil([&] { return client_->Stats(&stats).ok() && stats.leases == 0; },
                        absl::Seconds(10)));
  EXPECT_EQ(stats.tiers[0].used_bytes, 3 * ns.block_bytes);  // the dead writer's slots are free
  ASSERT_TRUE(client_->Drop(ns.id, keys, &drop).ok());
  EXPECT_EQ(drop.dropped, 3u);
}

TEST_F(FaultTest, SigtermStopsCleanlyAndClientsSeeUnavailable) {
  const std::string socket = daemon_->socket_path();
  int status = daemon_->Stop();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_FALSE(std::filesystem::exists(socket));
  DaemonStats stats;
  Status s = client_->Stats(&stats);
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();

  ClientOptions options;
  options.socket_path = socket;
  options.timeout_ms = 2000;
  std::unique_ptr<Client> c;
  s = Client::Connect(options, &c);
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
  EXPECT_EQ(c, nullptr);
}

TEST(DaemonFlagsTest, BadFlagsFailAtStartWithTheFlagNamed) {
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  std::vector<Case> cases = {
      {{"--dram-capacity", "12parsecs"}, "--dram-capacity"},
      {{"--dram-capacity", "100KiB"}, "--dram-capacity"},
      {{"--socket", "/tmp/" + std::string(120, 'x')}, "--socket"},
      {{"--socket", "/proc/no/such/dir/kvtier.sock"}, "--socket"},
      {{"--listen", "nonsense"}, "--listen"},
      {{"--log-level", "loud"}, "--log-level"},
      {{"--no-such-flag"}, "no-such-flag"},
      {{"--nvme-path", "/no/such/dir/nvme.dat", "--nvme-capacity", "64MiB"}, "--nvme-path"},
      {{"--nvme-path", "/tmp/kvtier-flags-nvme.dat", "--nvme-capacity", "1MiB"}, "--nvme-capacity"},
      {{"--nvme-path", "/tmp/kvtier-flags-nvme.dat"}, "--nvme-capacity"},
      {{"--nvme-capacity", "1GiB"}, "--nvme-path"},
      {{"--arena-pages", "2m"}, "--arena-pages"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {BinPath("kvtierd")};
    if (c.args[0] != "--socket") {
      argv.push_back("--socket");
      argv.push_back("/tmp/kvtier-flags-test.sock");
    }
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    ProcessResult r = RunProgram(argv, 20);
    EXPECT_EQ(r.exit_code, 1) << c.says << ": " << r.output;
    EXPECT_NE(r.output.find(c.says), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("ready"), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace kvtier::testing

namespace kvtier::testing {
namespace {

TEST(DaemonFlagsTest, ConfigFileSetsFlags) {
  char dir[] = "/tmp/kvtier-config-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string config = std::string(dir) + "/kvtierd.toml";
  {
    std::ofstream out(config);
    out << "dram-capacity = \"48MiB\"\nnode-id = \"from-config\"\n";
  }
  auto daemon = LocalDaemon::Start(BinPath("kvtierd"), {"--config", config});
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  ClientOptions options;
  options.socket_path = (*daemon)->socket_path();
  options.map_arena = false;
  std::unique_ptr<Client> client;
  ASSERT_TRUE(Client::Connect(options, &client).ok());
  DaemonStats stats;
  ASSERT_TRUE(client->Stats(&stats).ok());
  EXPECT_EQ(stats.node_id, "from-config");
  EXPECT_EQ(stats.tiers[0].capacity_bytes, 48u << 20);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kvtier::testing
