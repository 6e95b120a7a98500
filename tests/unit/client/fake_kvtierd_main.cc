// client-fake-kvtierd SOCKET ARENA_BYTES GENERATION: FakeDaemon in its own process (so a test can
// kill it like a real daemon). Prints "ready" once serving; runs until SIGTERM or SIGINT.
#include <signal.h>

#include <cstdio>
#include <cstdlib>

#include "fake_daemon.h"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: client-fake-kvtierd SOCKET ARENA_BYTES GENERATION\n");
    return 2;
  }
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);  // before any thread starts
  auto daemon = kvtier::testing::FakeDaemon::Start(argv[1], std::strtoull(argv[2], nullptr, 10),
                                                   std::strtoull(argv[3], nullptr, 10));
  if (daemon == nullptr) return 1;
  std::printf("ready\n");
  std::fflush(stdout);
  int sig = 0;
  sigwait(&stop, &sig);
  return 0;
}
