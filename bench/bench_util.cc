#include "bench/bench_util.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "common/free_port.h"

namespace kvtier::bench {

std::string SelfDir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? "." : exe.parent_path().string();
}

absl::StatusOr<Target> StartTarget(const std::string& socket,
                                   const std::vector<std::string>& args) {
  Target t;
  if (!socket.empty()) {
    t.socket = socket;
    return t;
  }
  auto d = LocalDaemon::Start(SelfDir() + "/kvtierd", args);
  if (!d.ok()) return d.status();
  t.daemon = std::move(*d);
  t.socket = t.daemon->socket_path();
  return t;
}

std::string DaemonLogLevel() {
  const char* level = std::getenv("KVTIER_BENCH_LOG");
  return level != nullptr && level[0] != '\0' ? level : "warn";
}

std::string ClusterTls(const std::string& tls) {
  if (!tls.empty()) return tls;
  const char* env = std::getenv("UCX_TLS");
  return env != nullptr && env[0] != '\0' ? env : "tcp";
}

absl::StatusOr<std::vector<std::unique_ptr<LocalDaemon>>> StartStaticCluster(
    const std::vector<std::string>& ids, const std::string& tls,
    const std::vector<std::string>& args) {
  std::string peers;
  for (const std::string& id : ids) {
    absl::StrAppend(&peers, peers.empty() ? "" : ",", id, "@127.0.0.1:", FreeTcpPort());
  }
  std::vector<std::unique_ptr<LocalDaemon>> daemons;
  for (const std::string& id : ids) {
    std::vector<std::string> a = {"--node-id",         id,     "--peers",     peers,
                                  "--ucx-tls",         tls,    "--log-level", DaemonLogLevel(),
                                  "--peer-timeout-ms", "10000"};
    a.insert(a.end(), args.begin(), args.end());
    auto d = LocalDaemon::Start(SelfDir() + "/kvtierd", a);
    if (!d.ok()) return d.status();
    daemons.push_back(std::move(*d));
  }
  return daemons;
}

absl::Status ToAbsl(const Status& s) {
  return s.ok() ? absl::OkStatus()
                : absl::Status(static_cast<absl::StatusCode>(s.code()), s.message());
}

absl::StatusOr<ConnectedDaemon> StartConnected(const std::vector<std::string>& args,
                                               const std::string& model_id, uint64_t block_bytes,
                                               int timeout_ms, const std::string& socket) {
  ConnectedDaemon d;
  auto target = StartTarget(socket, args);
  if (!target.ok()) return target.status();
  d.target = std::move(*target);
  ClientOptions options;
  options.socket_path = d.target.socket;
  options.timeout_ms = timeout_ms;
  if (Status s = Client::Connect(options, &d.client); !s.ok()) return ToAbsl(s);
  NamespaceLayout layout;
  layout.model_id = model_id;
  layout.layout_tag = "opaque";
  layout.block_bytes = block_bytes;
  if (Status s = d.client->RegisterNamespace(layout, &d.ns); !s.ok()) return ToAbsl(s);
  return d;
}

double Median(std::vector<double> v) { return Percentile(std::move(v), 50); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const double rank = p / 100.0 * static_cast<double>(v.size() - 1);
  const size_t lo = static_cast<size_t>(rank);
  const size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - static_cast<double>(lo));
}

static std::string Num(double v) { return absl::StrFormat("%.3g", v); }

std::string FormatResult(const Result& r) {
  std::string line = "RESULT " + r.name;
  for (const auto& [k, v] : r.params) absl::StrAppend(&line, " ", k, "=", v);
  absl::StrAppend(&line, " ours=", Num(r.ours), " baseline_", r.baseline_name, "=", Num(r.baseline),
                  " ratio=", absl::StrFormat("%.2f", r.ratio));
  return line;
}

std::string ResultsJson(const std::vector<Result>& results) {
  nlohmann::json out = nlohmann::json::array();
  for (const Result& r : results) {
    nlohmann::json j = {{"name", r.name},
                        {"ours", r.ours},
                        {"baseline_name", r.baseline_name},
                        {"baseline", r.baseline},
                        {"ratio", r.ratio}};
    for (const auto& [k, v] : r.params) j["params"][k] = v;
    out.push_back(j);
  }
  return out.dump(2);
}

void Touch(std::vector<std::byte>& buf) {
  for (size_t i = 0; i < buf.size(); i += 4096) buf[i] = std::byte{1};
}

void FillRandom(std::byte* p, size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t x = rng();
    std::memcpy(p + i, &x, 8);
  }
  for (; i < n; ++i) p[i] = static_cast<std::byte>(rng());
}

// CPU seconds (user + system) of each thread of `pid`, keyed by "pid/thread name" and summed
// over threads of one name. For KVTIER_BENCH_CPU=1: who used the cores during a round.
std::map<std::string, double> ThreadCpu(pid_t pid, const std::string& label) {
  std::map<std::string, double> out;
  const long ticks = sysconf(_SC_CLK_TCK);
  std::error_code ec;
  for (const auto& e :
       std::filesystem::directory_iterator(absl::StrCat("/proc/", pid, "/task"), ec)) {
    std::ifstream in(e.path() / "stat");
    std::string line;
    std::getline(in, line);
    const size_t open = line.find('('), close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    const std::string name = line.substr(open + 1, close - open - 1);
    std::vector<std::string> f = absl::StrSplit(line.substr(close + 2), ' ');
    if (f.size() < 13) continue;
    double utime = 0, stime = 0;
    if (!absl::SimpleAtod(f[11], &utime) || !absl::SimpleAtod(f[12], &stime)) continue;
    out[absl::StrCat(label, "/", name)] += (utime + stime) / static_cast<double>(ticks);
  }
  return out;
}

void PrintCpu(const std::map<std::string, double>& before,
              const std::map<std::string, double>& after, double secs) {
  std::vector<std::pair<double, std::string>> used;
  double total = 0;
  for (const auto& [k, v] : after) {
    auto it = before.find(k);
    const double d = v - (it == before.end() ? 0 : it->second);
    total += d;
    if (d >= 0.01) used.emplace_back(d, k);
  }
  std::sort(used.rbegin(), used.rend());
  std::printf("    cpu in %.2f s of wall: %.2f cpu-s;", secs, total);
  for (const auto& [d, k] : used) std::printf(" %s %.2f", k.c_str(), d);
  std::printf("\n");
}

}  // namespace kvtier::bench
