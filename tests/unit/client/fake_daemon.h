// FakeDaemon: a small in-process stand-in for kvtierd that speaks the real kvtier.v1 proto on a
// unix socket and hands out a memfd arena on <socket>.arena, so the client's data path can be
// tested without the server. One DRAM tier, fixed-size slots, no eviction.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace kvtier::testing {

class FakeDaemon {
 public:
  // Serves on `socket_path` (and `socket_path`.arena) until destroyed. `generation` is the arena
  // generation it reports (a "restarted" daemon uses a new one).
  static std::unique_ptr<FakeDaemon> Start(const std::string& socket_path, uint64_t arena_bytes,
                                           uint64_t generation);
  ~FakeDaemon();

  // Live leases (reads and writes).
  size_t leases() const;
  // Bytes at an arena offset, as the daemon sees them.
  const unsigned char* arena() const;

  class Impl;

 private:
  explicit FakeDaemon(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvtier::testing
