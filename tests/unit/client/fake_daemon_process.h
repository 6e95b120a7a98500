// FakeDaemonProcess: client-fake-kvtierd started with fork+exec (the child runs no gRPC before
// exec), ready when it prints "ready", SIGKILLed and reaped on Kill() or destruction.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

namespace kvtier::testing {

class FakeDaemonProcess {
 public:
  static std::unique_ptr<FakeDaemonProcess> Start(const std::string& socket_path,
                                                  uint64_t arena_bytes, uint64_t generation) {
    int out[2];
    if (pipe(out) != 0) return nullptr;
    const std::string bytes = std::to_string(arena_bytes), gen = std::to_string(generation);
    const pid_t pid = fork();
    if (pid < 0) return nullptr;
    if (pid == 0) {
      dup2(out[1], STDOUT_FILENO);
      close(out[0]);
      close(out[1]);
      execl(KVTIER_FAKE_DAEMON, KVTIER_FAKE_DAEMON, socket_path.c_str(), bytes.c_str(), gen.c_str(),
            static_cast<char*>(nullptr));
      _exit(127);
    }
    close(out[1]);
    std::unique_ptr<FakeDaemonProcess> p(new FakeDaemonProcess(pid));
    char line[16] = {};
    FILE* f = fdopen(out[0], "r");
    const bool ready =
        f != nullptr && fgets(line, sizeof(line), f) != nullptr && std::string(line) == "ready\n";
    if (f != nullptr) fclose(f);
    return ready ? std::move(p) : nullptr;
  }

  ~FakeDaemonProcess() { Kill(); }

  void Kill() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    int status;
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  explicit FakeDaemonProcess(pid_t pid) : pid_(pid) {}
  pid_t pid_;
};

}  // namespace kvtier::testing
