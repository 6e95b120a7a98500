// A real kvtierd started as a child process in its own temporary directory (for integration tests
// and benchmarks): ready once it prints its ready line, stopped (SIGTERM, then SIGKILL) and its
// directory removed on destruction. Also small helpers to run other programs with deadlines.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kvtier {

class LocalDaemon {
 public:
  // Starts `<kvtierd> --socket <dir>/kvtier.sock <extra_args...>` and waits (at most 20 s) for its
  // ready line.
  static absl::StatusOr<std::unique_ptr<LocalDaemon>> Start(
      const std::string& kvtierd, const std::vector<std::string>& extra_args);
  ~LocalDaemon();

  const std::string& socket_path() const { return socket_path_; }
  const std::string& dir() const { return dir_; }
  // What it printed on stdout up to and including its ready line.
  const std::string& ready_line() const { return ready_line_; }
  pid_t pid() const { return pid_; }
  bool Alive();
  // SIGTERM and wait; returns the exit status (as from waitpid), or -1.
  int Stop();
  // SIGKILL and wait: a crash, as far as the daemon's files can tell.
  void Kill();
  // Starts it again with the same arguments, socket and directory (after Kill or Stop; a daemon
  // still running is killed first) and waits for its ready line. The previous log is kept as
  // kvtierd.log.<n>.
  absl::Status Restart();
  // Everything the daemon wrote to stderr so far (its log).
  std::string ReadLog();

 private:
  LocalDaemon() = default;
  pid_t pid_ = -1;
  std::string dir_;
  std::string socket_path_;
  std::string log_path_;
  std::string ready_line_;
  std::vector<std::string> argv_;
  int restarts_ = 0;
};

// Starts a program (stdout to a pipe, stderr to `stderr_path` or inherited when empty) and reads
// its stdout until `marker` appears or `timeout` passes. Returns the pid (the caller ends it) or
// an error with what it printed.
// `printed` (optional) receives what it printed up to then.
absl::StatusOr<pid_t> SpawnUntil(const std::vector<std::string>& argv, const std::string& marker,
                                 absl::Duration timeout, const std::string& stderr_path = "",
                                 std::string* printed = nullptr);

// Runs a program to completion with a deadline; returns exit code and captured stdout+stderr.
struct ProcessResult {
  int exit_code = -1;
  std::string output;
};
ProcessResult RunProgram(const std::vector<std::string>& argv, int timeout_s = 30,
                         const std::vector<std::string>& env = {});

}  // namespace kvtier
