#include "bench/ucx_perftest.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/local_daemon.h"

extern char** environ;

namespace kvtier::bench {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

// A TCP port on 127.0.0.1 that was free a moment ago (the server may still lose a race for it;
// the caller retries with another).
absl::StatusOr<int> FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return absl::InternalError(absl::StrCat("bind 127.0.0.1:0: ", std::strerror(errno)));
  }
  close(fd);
  return ntohs(addr.sin_port);
}

// The ucx_perftest server: started with its own environment, output to a file, killed (SIGKILL)
// if it has not exited by destruction.
class PerftestServer {
 public:
  static absl::StatusOr<PerftestServer> Start(const std::string& binary, int port,
                                              const std::vector<std::string>& env) {
    char log_path[] = "/tmp/kvtier-ucx-perftest-XXXXXX";
    const int log_fd = mkstemp(log_path);
    if (log_fd < 0) return absl::InternalError(absl::StrCat("mkstemp: ", std::strerror(errno)));
    // Everything the child needs is built before fork: only async-signal-safe calls after it.
    std::vector<std::string> args = {binary, "-p", std::to_string(port)};
    std::vector<char*> argv, envp;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_strings = env;
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string_view kv(*e);
      const bool overridden = std::any_of(env.begin(), env.end(), [&](const std::string& o) {
        return kv.substr(0, kv.find('=') + 1) == std::string_view(o).substr(0, o.find('=') + 1);
      });
      if (!overridden) env_strings.emplace_back(kv);
    }
    for (std::string& e : env_strings) envp.push_back(e.data());
    envp.push_back(nullptr);
    const pid_t pid = fork();
    if (pid < 0) {
      close(log_fd);
      unlink(log_path);
      return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
    }
    if (pid == 0) {
      dup2(log_fd, STDOUT_FILENO);
      dup2(log_fd, STDERR_FILENO);
      const int null_fd = open("/dev/null", O_RDONLY);
      if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
      execve(argv[0], argv.data(), envp.data());
      _exit(127);
    }
    close(log_fd);
    return PerftestServer(pid, log_path);
  }

  PerftestServer(PerftestServer&& other) noexcept
      : pid_(std::exchange(other.pid_, -1)), log_path_(std::move(other.log_path_)) {}
  PerftestServer& operator=(PerftestServer&&) = delete;
  ~PerftestServer() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (!log_path_.empty()) unlink(log_path_.c_str());
  }

  bool Alive() {
    if (pid_ <= 0) return false;
    if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    return true;
  }
  // Waits up to `timeout` for the server to exit by itself (it does after one test).
  void AwaitExit(std::chrono::milliseconds timeout) {
    const auto give_up = std::chrono::steady_clock::now() + timeout;
    while (Alive() && std::chrono::steady_clock::now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  std::string Log() const {
    std::ifstream in(log_path_);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

 private:
  PerftestServer(pid_t pid, std::string log_path) : pid_(pid), log_path_(std::move(log_path)) {}
  pid_t pid_;
  std::string log_path_;
};

std::string Tail(const std::string& text, size_t n = 400) {
  return text.size() <= n ? text : "..." + text.substr(text.size() - n);
}

UcxPerftestFigure RunOne(const std::string& binary, const std::vector<std::string>& env,
                         const std::string& test, uint64_t bytes, uint64_t iterations,
                         int timeout_s) {
  UcxPerftestFigure figure;
  figure.test = test;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  auto seconds_left = [&] {
    return static_cast<int>(std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::seconds>(
                                                     deadline - std::chrono::steady_clock::now())
                                                     .count()));
  };
  for (int attempt = 0; attempt < 3; ++attempt) {  // a new port if the server lost its port
    absl::StatusOr<int> port = FreeLoopbackPort();
    if (!port.ok()) {
      figure.error = port.status().ToString();
      return figure;
    }
    absl::StatusOr<PerftestServer> server = PerftestServer::Start(binary, *port, env);
    if (!server.ok()) {
      figure.error = server.status().ToString();
      return figure;
    }
    const std::vector<std::string> argv = {
        binary, "127.0.0.1",
        "-p",   std::to_string(*port),
        "-t",   test,
        "-s",   std::to_string(bytes),
        "-n",   std::to_string(iterations),
        "-w",   std::to_string(std::max<uint64_t>(10, iterations / 20))};
    figure.command = absl::StrCat(absl::StrJoin(env, " "), " ", absl::StrJoin(argv, " "));
    // The client fails at once while the server is not listening yet: try again meanwhile.
    ProcessResult run;
    while (true) {
      run = RunProgram(argv, seconds_left(), env);
      const bool refused =
          run.exit_code != 0 && run.output.find("Connection refused") != std::string::npos;
      if (!refused || !server->Alive() || std::chrono::steady_clock::now() >= deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    // After a test the server exits by itself; after a failed client it may wait for another.
    server->AwaitExit(run.exit_code == 0 ? std::chrono::milliseconds(3000)
                                         : std::chrono::milliseconds(200));
    if (run.exit_code == 0) {
      absl::StatusOr<double> gbps = ParseUcxPerftestGbps(run.output);
      if (gbps.ok()) {
        figure.gbps = *gbps;
      } else {
        figure.error = gbps.status().ToString();
      }
      return figure;
    }
    const std::string server_log = server->Log();
    const bool port_lost = server_log.find("Address already in use") != std::string::npos;
    figure.error = absl::StrCat("ucx_perftest client exited with ", run.exit_code, ": ",
                                Tail(run.output), "; server: ", Tail(server_log));
    if (!port_lost || std::chrono::steady_clock::now() >= deadline) return figure;
  }
  return figure;
}

}  // namespace

absl::StatusOr<std::string> FindUcxPerftest() {
  const char* path = std::getenv("PATH");
  const std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  for (absl::string_view dir : absl::StrSplit(absl::string_view(dirs), ':')) {
    if (dir.empty()) continue;
    const std::string candidate = absl::StrCat(dir, "/ucx_perftest");
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return absl::NotFoundError("ucx_perftest not found on $PATH (Debian: apt-get install ucx-utils)");
}

absl::StatusOr<double> ParseUcxPerftestGbps(const std::string& output) {
  // "Final:  <iters> <lat 50%> <lat avg> <lat overall> <bw avg> <bw overall> <rate avg> <rate>"
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    const size_t at = line.find("Final:");
    if (at == absl::string_view::npos) continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(line.substr(at + 6), ' ', absl::SkipWhitespace());
    double mb_per_s = 0;
    if (fields.size() < 8 || !absl::SimpleAtod(fields[5], &mb_per_s) || mb_per_s <= 0) {
      return absl::InternalError(absl::StrCat("ucx_perftest: unreadable result line '", line, "'"));
    }
    return mb_per_s * kMiB / 1e9;
  }
  return absl::InternalError(absl::StrCat("ucx_perftest printed no 'Final:' line: ", Tail(output)));
}

absl::StatusOr<UcxPerftestResult> RunUcxPerftest(const UcxPerftestOptions& options) {
  if (options.bytes == 0 || options.tests.empty()) {
    return absl::InvalidArgumentError("ucx_perftest: message size and tests must be set");
  }
  absl::StatusOr<std::string> binary = FindUcxPerftest();
  if (!binary.ok()) return binary.status();
  std::string tls = options.tls;
  if (!tls.empty() && tls[0] != '^') {
    const std::vector<std::string> tls_list = absl::StrSplit(tls, ',');
    if (std::find(tls_list.begin(), tls_list.end(), "self") == tls_list.end()) tls += ",self";
  }
  std::vector<std::string> env = {"UCX_NET_DEVICES=lo"};  // loopback only, whatever the tls
  if (!tls.empty()) env.push_back("UCX_TLS=" + tls);
  const uint64_t iterations =
      options.iterations != 0
          ? options.iterations
          : std::clamp<uint64_t>((uint64_t{1} << 30) / options.bytes, 200, 200'000);
  UcxPerftestResult result;
  for (const std::string& test : options.tests) {
    result.figures.push_back(
        RunOne(*binary, env, test, options.bytes, iterations, options.timeout_s));
    const UcxPerftestFigure& f = result.figures.back();
    if (!f.error.empty()) continue;
    if (f.gbps > result.best_gbps) {
      result.best_gbps = f.gbps;
      result.best_test = f.test;
    }
    if ((test == "tag_bw" || test == "ucp_am_bw") && f.gbps > result.best_two_sided_gbps) {
      result.best_two_sided_gbps = f.gbps;
      result.best_two_sided_test = f.test;
    }
  }
  if (result.best_test.empty()) {
    return absl::UnavailableError(absl::StrCat("ucx_perftest: no test succeeded; first error: ",
                                               result.figures.front().error));
  }
  return result;
}

absl::StatusOr<UcxPerftestResult> MeasureUcxPerftestBest(const std::string& tls, uint64_t bytes) {
  UcxPerftestOptions options;
  options.tls = tls;
  options.bytes = bytes;
  return RunUcxPerftest(options);
}

}  // namespace kvtier::bench
