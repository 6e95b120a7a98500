// The DRAM arena: one shared-memory region (memfd) that engines map, so a block's bytes are
// copied once into or out of it and never travel through gRPC.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace kvtier {

class Arena {
 public:
  // Alignment of every slot: 4 KiB, so a slot can go to NVMe with O_DIRECT unchanged.
  static constexpr uint64_t kAlign = 4096;

  // Creates a memfd of `capacity` bytes (rounded down to kAlign; must be at least one page),
  // allocates its pages up front (so running out of memory is a start-up error, not a SIGBUS
  // later), maps it and asks for no transparent huge pages (THP breaks long-term pinning).
  static absl::StatusOr<std::unique_ptr<Arena>> Create(uint64_t capacity, const std::string& name);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  std::byte* base() const { return base_; }
  uint64_t size() const { return size_; }
  int fd() const { return fd_; }  // owned by the arena; dup it to hand out
  // Random per process start: clients check it to notice a restarted daemon.
  uint64_t generation() const { return generation_; }

 private:
  Arena(int fd, std::byte* base, uint64_t size, uint64_t generation)
      : fd_(fd), base_(base), size_(size), generation_(generation) {}

  int fd_;
  std::byte* base_;
  uint64_t size_;
  uint64_t generation_;
};

}  // namespace kvtier
