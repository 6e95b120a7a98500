// ArenaMapping: this process's shared mapping of the daemon's DRAM arena.
//
// The daemon hands the arena's file descriptor out on a side unix socket: one message carrying
// the arena generation (uint64, little-endian) and the descriptor (SCM_RIGHTS). The mapping lives
// until the object is destroyed; leases that point into it hold a shared_ptr to keep it alive.
//
// It also remembers which process handed the arena out (SO_PEERCRED, held as a pidfd), so the
// client can tell cheaply, without a thread, when that daemon has exited and its arena is stale.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "kvtier/client.h"

namespace kvtier::client_internal {

class ArenaMapping {
 public:
  // Receives the descriptor from `fd_socket_path`, checks that its generation is `generation`
  // (FAILED_PRECONDITION otherwise: the daemon restarted in between) and maps `arena_bytes` of it
  // read-write, shared (`prefault`: MAP_POPULATE). Waits at most `timeout_ms` for the descriptor.
  static Status Create(const std::string& fd_socket_path, uint64_t generation, uint64_t arena_bytes,
                       bool prefault, int timeout_ms, std::unique_ptr<ArenaMapping>* out);

  ~ArenaMapping();
  ArenaMapping(const ArenaMapping&) = delete;
  ArenaMapping& operator=(const ArenaMapping&) = delete;

  std::byte* base() const { return base_; }
  uint64_t size() const { return size_; }
  uint64_t generation() const { return generation_; }
  // False once the daemon process that handed out this arena has exited. True when that cannot be
  // known (no pidfd: old kernel, or the daemon in another PID namespace). One poll(2), no wait.
  bool OwnerAlive() const;
  // Whether [offset, offset + length) lies inside the mapping.
  bool Contains(uint64_t offset, uint64_t length) const {
    return offset <= size_ && length <= size_ - offset;
  }

 private:
  ArenaMapping(std::byte* base, uint64_t size, uint64_t generation, int owner_pidfd)
      : base_(base), size_(size), generation_(generation), owner_pidfd_(owner_pidfd) {}

  std::byte* base_;
  uint64_t size_;
  uint64_t generation_;
  int owner_pidfd_;  // -1: unknown owner
};

}  // namespace kvtier::client_internal
