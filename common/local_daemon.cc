#include "common/local_daemon.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace kvtier {
namespace {

std::vector<char*> CArgs(const std::vector<std::string>& args) {
  std::vector<char*> out;
  for (const std::string& a : args) out.push_back(const_cast<char*>(a.c_str()));
  out.push_back(nullptr);
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LocalDaemon>> LocalDaemon::Start(
    const std::string& kvtierd, const std::vector<std::string>& extra_args) {
  char tmpl[] = "/tmp/kvtier-test-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
  auto d = std::unique_ptr<LocalDaemon>(new LocalDaemon());
  d->dir_ = tmpl;
  d->socket_path_ = d->dir_ + "/kvtier.sock";
  d->log_path_ = d->dir_ + "/kvtierd.log";
  std::vector<std::string> args = {kvtierd, "--socket", d->socket_path_};
  args.insert(args.end(), extra_args.begin(), extra_args.end());

  auto pid = SpawnUntil(args, "kvtierd ready", absl::Seconds(20), d->log_path_, &d->ready_line_);
  if (!pid.ok()) {
    return absl::Status(pid.status().code(),
                        absl::StrCat(pid.status().message(), "; log: ", d->ReadLog()));
  }
  d->pid_ = *pid;
  d->argv_ = std::move(args);
  return d;
}

absl::Status LocalDaemon::Restart() {
  Kill();
  std::error_code ec;
  std::filesystem::rename(log_path_, absl::StrCat(log_path_, ".", ++restarts_), ec);
  auto pid = SpawnUntil(argv_, "kvtierd ready", absl::Seconds(20), log_path_, &ready_line_);
  if (!pid.ok()) {
    return absl::Status(pid.status().code(),
                        absl::StrCat(pid.status().message(), "; log: ", ReadLog()));
  }
  pid_ = *pid;
  return absl::OkStatus();
}

absl::StatusOr<pid_t> SpawnUntil(const std::vector<std::string>& argv, const std::string& marker,
                                 absl::Duration timeout, const std::string& stderr_path,
                                 std::string* printed) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    if (!stderr_path.empty()) {
      int log = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (log >= 0) dup2(log, STDERR_FILENO);
    }
    auto cargs = CArgs(argv);
    execv(cargs[0], cargs.data());
    _exit(127);
  }
  close(out[1]);
  std::string got;
  const absl::Time deadline = absl::Now() + timeout;
  while (got.find(marker) == std::string::npos) {
    const int left = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    pollfd p{out[0], POLLIN, 0};
    char buf[512];
    ssize_t n = 0;
    if (left > 0 && poll(&p, 1, left) > 0) n = read(out[0], buf, sizeof(buf));
    if (n <= 0) {
      close(out[0]);
      kill(pid, SIGKILL);
      int status;
      waitpid(pid, &status, 0);
      return absl::UnavailableError(
          absl::StrCat(argv[0], " did not print '", marker, "' in time; stdout: ", got));
    }
    got.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  if (printed != nullptr) *printed = got;
  return pid;
}

bool LocalDaemon::Alive() {
  if (pid_ <= 0) return false;
  int status;
  return waitpid(pid_, &status, WNOHANG) == 0;
}

int LocalDaemon::Stop() {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = -1;
  bool exited = false;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (!(exited = waitpid(pid_, &status, WNOHANG) == pid_) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  if (!exited) {
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
  }
  pid_ = -1;
  return status;
}

void LocalDaemon::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

std::string LocalDaemon::ReadLog() {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

LocalDaemon::~LocalDaemon() {
  Stop();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

ProcessResult RunProgram(const std::vector<std::string>& argv, int timeout_s,
                         const std::vector<std::string>& env) {
  ProcessResult result;
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return result;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(out[1], STDOUT_FILENO);
    dup2(out[1], STDERR_FILENO);
    for (const std::string& kv : env) putenv(const_cast<char*>(kv.c_str()));
    auto cargs = CArgs(argv);
    execv(cargs[0], cargs.data());
    _exit(127);
  }
  close(out[1]);
  const absl::Time deadline = absl::Now() + absl::Seconds(timeout_s);
  while (true) {
    const int left = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
    pollfd p{out[0], POLLIN, 0};
    if (left <= 0 || poll(&p, 1, left) <= 0) {
      kill(pid, SIGKILL);
      result.output += "\n[killed: timeout]";
      break;
    }
    char buf[4096];
    ssize_t n = read(out[0], buf, sizeof(buf));
    if (n <= 0) break;
    result.output.append(buf, static_cast<size_t>(n));
  }
  close(out[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

}  // namespace kvtier
