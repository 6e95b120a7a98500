// Shared pieces of the benchmarks: finding and starting the daemon, clocks, medians, and the
// RESULT line format ("RESULT <name> <key=value>... ours=<v> baseline_<what>=<v> ratio=<r>").
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/local_daemon.h"
#include "kvtier/client.h"

namespace kvtier::bench {

// Directory of the running kvtier-bench (build/bin), where kvtierd lives too.
std::string SelfDir();

// A daemon to measure: the one at `socket` when given, else a fresh kvtierd from SelfDir() with
// `args`. `daemon` stays null in the first case.
struct Target {
  std::unique_ptr<LocalDaemon> daemon;
  std::string socket;
};
absl::StatusOr<Target> StartTarget(const std::string& socket, const std::vector<std::string>& args);

// The daemons' --log-level: $KVTIER_BENCH_LOG (e.g. debug, to see why pulls fail), else warn.
std::string DaemonLogLevel();
// UCX_TLS for a benchmark's cluster: `tls` when given, else $UCX_TLS, else tcp.
std::string ClusterTls(const std::string& tls);
// Daemons named `ids` listing each other as static peers on free 127.0.0.1 ports (README, "A
// cluster on one machine"), each started with --node-id, --peers, --ucx-tls, --log-level,
// --peer-timeout-ms 10000 and `args`, in the order of `ids`.
absl::StatusOr<std::vector<std::unique_ptr<LocalDaemon>>> StartStaticCluster(
    const std::vector<std::string>& ids, const std::string& tls,
    const std::vector<std::string>& args);

// The client library's status as an absl::Status (same code, same message).
absl::Status ToAbsl(const Status& s);

// A fresh daemon (StartTarget with `args`), a client of it (calls may take `timeout_ms`) and an
// opaque namespace `model_id` of `block_bytes` blocks registered on it.
struct ConnectedDaemon {
  Target target;
  std::unique_ptr<Client> client;
  Namespace ns;
};
// `socket` (optional): use the daemon there instead of starting one.
absl::StatusOr<ConnectedDaemon> StartConnected(const std::vector<std::string>& args,
                                               const std::string& model_id, uint64_t block_bytes,
                                               int timeout_ms = 30'000,
                                               const std::string& socket = "");

inline double Seconds(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double>(d).count();
}
inline std::chrono::steady_clock::time_point Now() { return std::chrono::steady_clock::now(); }

double Median(std::vector<double> v);
double Percentile(std::vector<double> v, double p);  // p in [0, 100]

// One headline figure; printed as a RESULT line, or collected for --json.
struct Result {
  std::string name;
  std::vector<std::pair<std::string, std::string>> params;
  double ours = 0;
  std::string baseline_name;
  double baseline = 0;
  double ratio = 0;
};
std::string FormatResult(const Result& r);
std::string ResultsJson(const std::vector<Result>& results);

// Pre-touches memory so page faults are not timed.
void Touch(std::vector<std::byte>& buf);
// Fills with pseudo-random bytes (cheap, not cryptographic).
void FillRandom(std::byte* p, size_t n, uint64_t seed);

// CPU seconds (user + system) of each thread of `pid`, keyed by "label/thread name" and summed
// over threads of one name (KVTIER_BENCH_CPU=1 in the remote and transport benches).
std::map<std::string, double> ThreadCpu(pid_t pid, const std::string& label);
// One line: the CPU each thread used between two ThreadCpu readings, over `secs` of wall time.
void PrintCpu(const std::map<std::string, double>& before,
              const std::map<std::string, double>& after, double secs);

}  // namespace kvtier::bench
