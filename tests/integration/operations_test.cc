// Operating kvtierd: the metrics endpoint (--metrics-listen) and the client sockets' permissions
// (--socket-group), against real daemons.
#include <grp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <optional>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tests/integration/daemon_fixture.h"
#include "tests/support/http_get.h"

namespace kvtier::testing {
namespace {

class MetricsTest : public DaemonTest {
 protected:
  std::vector<std::string> DaemonArgs() override {
    return {"--dram-capacity", "64MiB", "--metrics-listen", "127.0.0.1:0"};
  }

  void SetUp() override {
    DaemonTest::SetUp();
    // The ready line names the real port: "... metrics=127.0.0.1:PORT ...".
    const std::string& line = daemon_->ready_line();
    const size_t at = line.find(" metrics=127.0.0.1:");
    ASSERT_NE(at, std::string::npos) << line;
    const size_t start = at + std::string(" metrics=127.0.0.1:").size();
    const size_t end = line.find_first_of(" \n", start);
    ASSERT_TRUE(absl::SimpleAtoi(line.substr(start, end - start), &port_)) << line;
    ASSERT_GT(port_, 0);
  }

  HttpResponse Get(const std::string& path) {
    auto r = HttpGet("127.0.0.1", port_, path);
    EXPECT_TRUE(r.ok()) << path << ": " << r.status();
    return r.ok() ? *r : HttpResponse{};
  }

  // The value of `series` in a fresh scrape (-1 when absent).
  double Scrape(const std::string& series) {
    HttpResponse r = Get("/metrics");
    EXPECT_EQ(r.status, 200);
    std::optional<double> v = SampleValue(r.body, series);
    EXPECT_TRUE(v.has_value()) << series << " not in:\n" << r.body;
    return v.value_or(-1);
  }

  int port_ = 0;
};

TEST_F(MetricsTest, HealthAndReadiness) {
  HttpResponse health = Get("/healthz");
  EXPECT_EQ(health.status, 200);
  HttpResponse ready = Get("/readyz");
  EXPECT_EQ(ready.status, 200) << ready.body;
  HttpResponse metrics = Get("/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_TRUE(absl::StartsWith(metrics.content_type, "text/plain; version=0.0.4"))
      << metrics.content_type;
  EXPECT_NE(metrics.body.find("# TYPE kvtier_tier_used_bytes gauge\n"), std::string::npos);
  EXPECT_NE(metrics.body.find("# TYPE kvtier_request_duration_seconds histogram\n"),
            std::string::npos);
  // A single node: no cluster series.
  EXPECT_EQ(metrics.body.find("kvtier_remote_pulls_total"), std::string::npos);
}

TEST_F(MetricsTest, CountersMoveWithTraffic) {
  const std::string dram = "{tier=\"dram\"}";
  EXPECT_EQ(Scrape("kvtier_tier_capacity_bytes" + dram), 64 << 20);
  const double used_before = Scrape("kvtier_tier_used_bytes" + dram);
  const double hits_before = Scrape("kvtier_tier_hits_total" + dram);
  const double in_before = Scrape("kvtier_tier_bytes_in_total" + dram);
  const double lookups_before = Scrape("kvtier_request_duration_seconds_count{method=\"lookup\"}");
  const double acquires_before =
      Scrape("kvtier_request_duration_seconds_count{method=\"acquire\"}");

  Namespace ns = Register(64 << 10);
  auto keys = RandomKeys(8);
  auto data = RandomBytes(ns.block_bytes, 7);
  std::vector<const void*> src(keys.size(), data.data());
  size_t saved = 0;
  ASSERT_TRUE(client_->Save(ns, keys, src, &saved).ok());
  ASSERT_EQ(saved, 8u);

  EXPECT_GE(Scrape("kvtier_tier_used_bytes" + dram), used_before + 8 * ns.block_bytes);
  EXPECT_EQ(Scrape("kvtier_tier_blocks" + dram), 8);
  EXPECT_GE(Scrape("kvtier_tier_bytes_in_total" + dram), in_before + 8 * ns.block_bytes);
  EXPECT_EQ(Scrape("kvtier_namespaces"), 1);

  LookupResult lookup;
  ASSERT_TRUE(client_->Lookup(ns.id, keys, &lookup).ok());
  std::vector<std::byte> sink(ns.block_bytes * keys.size());
  std::vector<void*> dst;
  for (size_t i = 0; i < keys.size(); ++i) dst.push_back(sink.data() + i * ns.block_bytes);
  size_t loaded = 0;
  ASSERT_TRUE(client_->Load(ns, keys, dst, &loaded).ok());
  ASSERT_EQ(loaded, 8u);

  EXPECT_EQ(Scrape("kvtier_tier_hits_total" + dram), hits_before + 8);
  EXPECT_GE(Scrape("kvtier_lookups_total"), 1);
  EXPECT_GE(Scrape("kvtier_lookup_hit_keys_total"), 8);
  EXPECT_EQ(Scrape("kvtier_leases"), 0);
  EXPECT_GE(Scrape("kvtier_request_duration_seconds_count{method=\"lookup\"}"), lookups_before + 1);
  EXPECT_GE(Scrape("kvtier_request_duration_seconds_count{method=\"acquire\"}"),
            acquires_before + 1);
  // The +Inf bucket holds every observation.
  EXPECT_EQ(Scrape("kvtier_request_duration_seconds_bucket{method=\"acquire\",le=\"+Inf\"}"),
            Scrape("kvtier_request_duration_seconds_count{method=\"acquire\"}"));
  EXPECT_GT(Scrape("kvtier_request_duration_seconds_sum{method=\"acquire\"}"), 0);
}

// Runs kvtierd with `args` (and a socket in a fresh directory, removed after) to its exit.
ProcessResult RunDaemonToExit(const std::vector<std::string>& args) {
  char dir[] = "/tmp/kvtier-ops-XXXXXX";
  EXPECT_NE(mkdtemp(dir), nullptr);
  std::vector<std::string> argv = {BinPath("kvtierd"), "--socket",
                                   std::string(dir) + "/kvtier.sock", "--dram-capacity", "16MiB"};
  argv.insert(argv.end(), args.begin(), args.end());
  ProcessResult r = RunProgram(argv, 20);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  return r;
}

TEST(OperationsFlagsTest, BadMetricsListenFailsAtStartNamingTheFlag) {
  for (const char* bad : {"nonsense", "127.0.0.1:70000", "192.0.2.1:0"}) {
    ProcessResult r = RunDaemonToExit({"--metrics-listen", bad});
    EXPECT_EQ(r.exit_code, 1) << bad << ": " << r.output;
    EXPECT_NE(r.output.find("--metrics-listen"), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("ready"), std::string::npos) << r.output;
  }
}

TEST(OperationsFlagsTest, MetricsPortInUseFailsAtStart) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  ProcessResult r =
      RunDaemonToExit({"--metrics-listen", absl::StrCat("127.0.0.1:", ntohs(addr.sin_port))});
  close(fd);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--metrics-listen: cannot listen"), std::string::npos) << r.output;
}

mode_t ModeOf(const std::string& path, gid_t* gid = nullptr) {
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  if (gid != nullptr) *gid = st.st_gid;
  return st.st_mode & 07777;
}

TEST_F(DaemonTest, ClientSocketsAreOwnerAndGroupOnly) {
  EXPECT_EQ(ModeOf(daemon_->socket_path()), 0660u);
  EXPECT_EQ(ModeOf(daemon_->socket_path() + ".arena"), 0660u);
}

// A group this process may give files to other than its own: any group when root, else a
// supplementary one; nullopt when there is none.
std::optional<std::pair<std::string, gid_t>> AnotherGroup() {
  std::vector<gid_t> candidates;
  if (geteuid() == 0) {
    for (gid_t g : {gid_t{1}, gid_t{4}, gid_t{65534}})
      candidates.push_back(g);  // daemon adm nogroup
  } else {
    std::vector<gid_t> groups(256);
    const int n = getgroups(static_cast<int>(groups.size()), groups.data());
    for (int i = 0; i < n; ++i) candidates.push_back(groups[i]);
  }
  for (gid_t g : candidates) {
    if (g == getegid()) continue;
    if (const group* gr = getgrgid(g); gr != nullptr) return std::make_pair(gr->gr_name, g);
  }
  return std::nullopt;
}

TEST(SocketGroupTest, SocketsGoToTheGroup) {
  std::vector<std::pair<std::string, gid_t>> groups;
  const group* own = getgrgid(getegid());
  ASSERT_NE(own, nullptr);
  groups.emplace_back(own->gr_name, getegid());
  if (auto other = AnotherGroup()) groups.push_back(*other);
  for (const auto& [name, gid] : groups) {
    auto daemon = LocalDaemon::Start(BinPath("kvtierd"),
                                     {"--dram-capacity", "16MiB", "--socket-group", name});
    ASSERT_TRUE(daemon.ok()) << name << ": " << daemon.status();
    for (const std::string& path :
         {(*daemon)->socket_path(), (*daemon)->socket_path() + ".arena"}) {
      gid_t got = 0;
      EXPECT_EQ(ModeOf(path, &got), 0660u) << path;
      EXPECT_EQ(got, gid) << path << " should belong to group " << name;
    }
    // Still usable by its owner.
    ClientOptions options;
    options.socket_path = (*daemon)->socket_path();
    std::unique_ptr<Client> client;
    Status s = Client::Connect(options, &client);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
}

TEST(SocketGroupTest, UnknownGroupFailsAtStartNamingTheFlag) {
  ProcessResult r = RunDaemonToExit({"--socket-group", "kvtier-no-such-group"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--socket-group"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("kvtier-no-such-group"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace kvtier::testing
