// Soak: client processes (kvtier-test-peer soak, tests/support/soak_worker.cc) do random saves,
// loads, lookups, zero-copy reads and writes, and drops for a bounded time against one daemon
// (DRAM + NVMe) and against three (static peers on loopback, UCX over tcp). Each worker checks
// every byte it reads against the key's bytes and fails on any error a healthy daemon would not
// give. Meanwhile this process checks every daemon's books every 100 ms: every tier within its
// capacity, leases bounded by what the workers can hold. A third of the way in, one daemon is
// killed with SIGKILL and restarted on the same socket, address and NVMe file, while the workers
// keep going (their clients reconnect and remap the new arena). At the end: every worker exited 0,
// every daemon holds no lease, every tier is within its capacity, and every block any daemon
// still answers (including those recovered from NVMe and those pulled from peers) has its key's
// bytes. A killed daemon loses only cache.
//
// Bounded: KVTIER_SOAK_SECONDS (default 20) of load per test; workers and daemons are always
// stopped (SIGKILL on a deadline) and their directories removed.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/free_port.h"
#include "common/local_daemon.h"
#include "kvtier/client.h"
#include "tests/support/bin_path.h"
#include "tests/support/soak_keys.h"
#include "tests/support/wait.h"

namespace kvtier::testing {
namespace {

constexpr uint64_t kBlock = 16 << 10;
constexpr uint64_t kChains = 512;            // 4096 blocks, 64 MiB: four times each daemon's DRAM
constexpr uint32_t kMaxLeasesPerWorker = 2;  // a Save's write lease, or one zero-copy lease

double SoakSeconds() {
  const char* env = std::getenv("KVTIER_SOAK_SECONDS");
  const double s = env ? std::strtod(env, nullptr) : 20;
  return s > 0 ? s : 20;
}

struct WorkerProcess {
  pid_t pid = -1;
  std::string output;  // its stdout and stderr
  int status = -1;
  bool exited = false;
};

struct Daemon {
  std::unique_ptr<LocalDaemon> process;
  std::unique_ptr<Client> monitor;  // control calls only (Stats)
};

class SoakTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::current_path() / ("soak-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
  }

  void TearDown() override {
    for (WorkerProcess& w : workers_) {
      if (!w.exited && w.pid > 0) {
        kill(w.pid, SIGKILL);
        waitpid(w.pid, &w.status, 0);
      }
    }
    daemons_.clear();
    std::filesystem::remove_all(dir_);
  }

  void StartDaemon(const std::vector<std::string>& args) {
    auto d = LocalDaemon::Start(BinPath("kvtierd"), args);
    ASSERT_TRUE(d.ok()) << d.status();
    Daemon daemon;
    daemon.process = std::move(*d);
    ClientOptions options;
    options.socket_path = daemon.process->socket_path();
    options.map_arena = false;
    options.timeout_ms = 2000;
    ASSERT_TRUE(Client::Connect(options, &daemon.monitor).ok());
    daemons_.push_back(std::move(daemon));
  }

  void SpawnWorker(const std::string& socket, uint64_t seed) {
    WorkerProcess w;
    w.output = (dir_ / absl::StrFormat("worker-%d.out", workers_.size())).string();
    const std::vector<std::string> argv = {BinPath("kvtier-test-peer"),
                                           "soak",
                                           socket,
                                           std::to_string(kBlock),
                                           absl::StrFormat("%.1f", SoakSeconds()),
                                           std::to_string(seed),
                                           std::to_string(kChains)};
    std::vector<char*> cargs;
    for (const std::string& a : argv) cargs.push_back(const_cast<char*>(a.c_str()));
    cargs.push_back(nullptr);
    w.pid = fork();
    ASSERT_GE(w.pid, 0);
    if (w.pid == 0) {
      int fd = open(w.output.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, STDOUT_FILENO);
      dup2(fd, STDERR_FILENO);
      execv(cargs[0], cargs.data());
      _exit(127);
    }
    workers_.push_back(w);
  }

  bool Reap() {
    bool all = true;
    for (WorkerProcess& w : workers_) {
      if (!w.exited && waitpid(w.pid, &w.status, WNOHANG) == w.pid) w.exited = true;
      all = all && w.exited;
    }
    return all;
  }

  // One look at every daemon's books; a daemon being restarted may not answer.
  void CheckBooks() {
    const uint64_t max_leases = kMaxLeasesPerWorker * workers_.size();
    for (Daemon& d : daemons_) {
      DaemonStats stats;
      if (!d.monitor->Stats(&stats).ok()) continue;
      ++checks_;
      for (const TierStats& t : stats.tiers) {
        EXPECT_LE(t.used_bytes, t.capacity_bytes) << stats.node_id << " " << t.name;
      }
      EXPECT_LE(stats.leases, max_leases) << stats.node_id;
    }
  }

  // Runs the workers to their end, checking the books, and kills + restarts daemons_[victim] a
  // third of the way in (the rest is for the workers to get back to work).
  void Soak(size_t victim) {
    const absl::Duration length = absl::Seconds(SoakSeconds());
    const absl::Time start = absl::Now();
    WaitUntil(
        [&] {
          CheckBooks();
          return absl::Now() - start >= length / 3;
        },
        length, absl::Milliseconds(100));
    LocalDaemon& d = *daemons_[victim].process;
    const pid_t old_pid = d.pid();
    d.Kill();
    ++kills_;
    const absl::Time killed = absl::Now();
    ASSERT_TRUE(d.Restart().ok());
    restart_ms_ = absl::ToInt64Milliseconds(absl::Now() - killed);
    recovery_window_ = start + length - absl::Now();
    ASSERT_NE(d.pid(), old_pid);
    DaemonStats after;
    ASSERT_TRUE(
        WaitUntil([&] { return daemons_[victim].monitor->Stats(&after).ok(); }, absl::Seconds(10)));
    for (const TierStats& t : after.tiers) {
      if (t.name == "nvme") nvme_blocks_after_restart_ = t.blocks;
    }
    // The workers stop by themselves at the end of their time; a hung one fails the test.
    const bool ended = WaitUntil(
        [&] {
          CheckBooks();
          return Reap();
        },
        length + absl::Seconds(60), absl::Milliseconds(100));
    ASSERT_TRUE(ended) << "a worker did not stop in time";
  }

  // Every worker exited 0; sums their counts.
  std::map<std::string, uint64_t> WorkerResults() {
    std::map<std::string, uint64_t> sum;
    for (const WorkerProcess& w : workers_) {
      std::ifstream in(w.output);
      std::stringstream ss;
      ss << in.rdbuf();
      const std::string out = ss.str();
      EXPECT_TRUE(WIFEXITED(w.status) && WEXITSTATUS(w.status) == 0)
          << "worker exited with " << w.status << ": " << out;
      const size_t at = out.find("soak-result ");
      if (at == std::string::npos) continue;
      std::string line = out.substr(at + 12);
      line = line.substr(0, line.find('\n'));
      std::printf("worker %d: %s\n", w.pid, line.c_str());
      std::map<std::string, uint64_t> mine;
      for (absl::string_view kv : absl::StrSplit(line, ' ')) {
        std::pair<std::string, std::string> p = absl::StrSplit(kv, '=');
        mine[p.first] = std::strtoull(p.second.c_str(), nullptr, 10);
        sum[p.first] += mine[p.first];
      }
      // A worker that lost its daemon got back to work once it was restarted.
      if (mine["transient"] > 0 && recovery_window_ >= absl::Seconds(3)) {
        EXPECT_GT(mine["recovered"], 0u) << out;
      }
    }
    return sum;
  }

  // After the soak: no lease anywhere, every tier within its capacity, and every block each
  // daemon still answers for has its key's bytes. Returns the blocks checked.
  uint64_t FinalCheck() {
    uint64_t checked = 0;
    for (Daemon& d : daemons_) {
      DaemonStats stats;
      EXPECT_TRUE(WaitUntil([&] { return d.monitor->Stats(&stats).ok() && stats.leases == 0; },
                            absl::Seconds(10)))
          << stats.node_id << " still holds " << stats.leases << " leases";
      for (const TierStats& t : stats.tiers) EXPECT_LE(t.used_bytes, t.capacity_bytes);

      ClientOptions options;
      options.socket_path = d.process->socket_path();
      std::unique_ptr<Client> client;
      EXPECT_TRUE(Client::Connect(options, &client).ok());
      if (!client) continue;
      NamespaceLayout layout;
      layout.model_id = "soak";
      layout.block_bytes = kBlock;
      Namespace ns;
      EXPECT_TRUE(client->RegisterNamespace(layout, &ns).ok());
      std::vector<std::vector<std::byte>> out(kSoakChainBlocks, std::vector<std::byte>(kBlock));
      std::vector<void*> dst;
      for (auto& o : out) dst.push_back(o.data());
      for (uint64_t c = 0; c < kChains; ++c) {
        std::vector<BlockKey> keys;
        for (size_t i = 0; i < kSoakChainBlocks; ++i) keys.push_back(SoakKey(c, i));
        size_t loaded = 0;
        Status s = client->Load(ns, keys, dst, &loaded);
        EXPECT_TRUE(s.ok() || s.code() == Status::Code::kResourceExhausted) << s.ToString();
        for (size_t i = 0; i < loaded; ++i) {
          EXPECT_EQ(FirstWrongSoakByte(keys[i], out[i].data(), kBlock), -1)
              << "chain " << c << " block " << i << " on " << stats.node_id;
        }
        checked += loaded;
      }
      EXPECT_TRUE(WaitUntil([&] { return d.monitor->Stats(&stats).ok() && stats.leases == 0; },
                            absl::Seconds(10)));
    }
    return checked;
  }

  void Report(const std::string& name) {
    std::map<std::string, uint64_t> r = WorkerResults();
    const uint64_t checked = FinalCheck();
    EXPECT_GT(r["saved_blocks"] + r["writes"], 0u) << "nothing was saved";
    EXPECT_GT(r["loaded_blocks"] + r["read_blocks"], 0u) << "nothing was read back";
    EXPECT_GT(checks_, 0u);
    std::printf(
        "RESULT soak %s: %zu workers, %.0f s, %llu ops (%llu saves, %llu loads of %llu blocks, "
        "%llu zero-copy reads of %llu blocks, %llu zero-copy writes, %llu aborted, %llu lookups, "
        "%llu drops), %llu cache-full answers, %llu transient errors, %llu re-registrations, %llu "
        "ops "
        "after them, %d kill -9 + restart (ready again in %lld ms, nvme blocks after it: %llu), "
        "%llu book checks, "
        "%llu blocks "
        "checked at the end, 0 wrong bytes\n",
        name.c_str(), workers_.size(), SoakSeconds(), U(r["ops"]), U(r["saves"]), U(r["loads"]),
        U(r["loaded_blocks"]), U(r["reads"]), U(r["read_blocks"]), U(r["writes"]), U(r["aborts"]),
        U(r["lookups"]), U(r["drops"]), U(r["full"]), U(r["transient"]), U(r["reregistered"]),
        U(r["recovered"]), kills_, static_cast<long long>(restart_ms_),
        U(nvme_blocks_after_restart_), U(checks_), U(checked));
  }

  static unsigned long long U(uint64_t v) { return v; }

  std::filesystem::path dir_;
  std::vector<Daemon> daemons_;
  std::vector<WorkerProcess> workers_;
  uint64_t checks_ = 0;
  int kills_ = 0;
  uint64_t nvme_blocks_after_restart_ = 0;
  int64_t restart_ms_ = 0;          // from the kill to the new daemon's ready line
  absl::Duration recovery_window_;  // from then to the workers' end
};

TEST_F(SoakTest, OneDaemonWithNvme) {
  // DRAM holds a quarter of the key space; NVMe takes the rest and survives the kill.
  StartDaemon({"--dram-capacity", "16MiB", "--nvme-path", (dir_ / "nvme.dat").string(),
               "--nvme-capacity", "64MiB"});
  for (uint64_t i = 0; i < 4; ++i) SpawnWorker(daemons_[0].process->socket_path(), 100 + i);
  Soak(0);
  Report("one daemon (16 MiB DRAM + 64 MiB NVMe)");
}

TEST_F(SoakTest, ThreeDaemons) {
  std::vector<std::string> ids = {"a", "b", "c"}, addresses;
  std::string peers;
  for (const std::string& id : ids) {
    addresses.push_back("127.0.0.1:" + std::to_string(FreeTcpPort()));
    peers += (peers.empty() ? "" : ",") + id + "@" + addresses.back();
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    StartDaemon({"--dram-capacity", "16MiB", "--node-id", ids[i], "--peers", peers, "--ucx-tls",
                 "tcp", "--peer-timeout-ms", "2000"});
  }
  for (uint64_t i = 0; i < 6; ++i) SpawnWorker(daemons_[i % 3].process->socket_path(), 200 + i);
  Soak(2);
  Report("three daemons (16 MiB DRAM each, static peers, UCX tcp)");
}

}  // namespace
}  // namespace kvtier::testing
