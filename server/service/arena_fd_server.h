// Hands the DRAM arena's file descriptor to local clients: a unix stream socket; each connection
// receives one message with the arena generation (8 bytes, little-endian) and the memfd
// (SCM_RIGHTS), then is closed. Access control is the socket file's permissions, like the gRPC
// socket beside it.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"

namespace kvtier {

class ArenaFdServer {
 public:
  static absl::StatusOr<std::unique_ptr<ArenaFdServer>> Start(const std::string& path, int arena_fd,
                                                              uint64_t generation);
  ~ArenaFdServer();  // stops the thread, removes the socket file

  const std::string& path() const { return path_; }

 private:
  ArenaFdServer(std::string path, int listen_fd, int arena_fd, uint64_t generation);
  void Serve();

  std::string path_;
  int listen_fd_;
  int arena_fd_;
  uint64_t generation_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace kvtier
