// The DRAM arena: one shared-memory region (memfd) that engines map, so a block's bytes are
// copied once into or out of it and never travel through gRPC.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/huge_map.h"

namespace kvtier {

// The pages behind the arena. Every copy into or out of the arena (the kernel's TCP copies, UCX's
// shared-memory copies, io_uring, an engine's loads) walks its page tables: 2 MiB pages cut those
// walks 512-fold, and on a VM they also spare the hypervisor one fault per 4 KiB page at first
// touch (docs/benchmarks.md: TCP loopback from a 1 GiB arena went from 4.3-5.1 to 8.6 GB/s).
enum class ArenaPages {
  kAuto,         // hugetlb when enough 2 MiB pages are reserved, else thp when the kernel allows
                 // it for shared memory, else 4k
  kSmall,        // 4 KiB pages
  kTransparent,  // transparent huge pages (needs shmem_enabled = advise, always or within_size)
  kHugeTlb,      // reserved huge pages (needs vm.nr_hugepages); the size rounds down to 2 MiB
};

// "auto", "4k", "thp", "hugetlb"; INVALID_ARGUMENT naming --arena-pages otherwise.
absl::StatusOr<ArenaPages> ParseArenaPages(absl::string_view text);

class Arena {
 public:
  // Alignment of every slot: 4 KiB, so a slot can go to NVMe with O_DIRECT unchanged.
  static constexpr uint64_t kAlign = 4096;
  static constexpr uint64_t kHugePage = kHugePageBytes;

  // Creates a memfd of `capacity` bytes (rounded down to kAlign, or to kHugePage for hugetlb;
  // at least one page), allocates its pages up front (so running out of memory is a start-up
  // error, not a SIGBUS later) and maps it. Huge pages are mapped at a 2 MiB-aligned address;
  // 4 KiB arenas ask for no THP. `pages` chooses the page size (see ArenaPages); a
  // kind asked for by name that the machine cannot give is an error naming --arena-pages, except
  // thp, which the kernel may decline silently: pages_in_use() tells what was given.
  static absl::StatusOr<std::unique_ptr<Arena>> Create(uint64_t capacity, const std::string& name,
                                                       ArenaPages pages = ArenaPages::kSmall);
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  std::byte* base() const { return base_; }
  uint64_t size() const { return size_; }
  int fd() const { return fd_; }  // owned by the arena; dup it to hand out
  // Random per process start: clients check it to notice a restarted daemon.
  uint64_t generation() const { return generation_; }
  // What backs the arena: kSmall, kTransparent or kHugeTlb (never kAuto).
  ArenaPages pages_in_use() const { return pages_; }
  // For the log and `kvtier status`: "2 MiB (thp)", "4 KiB (thp declined: shmem_enabled is
  // never)", ...
  const std::string& pages_detail() const { return pages_detail_; }

 private:
  Arena(int fd, std::byte* base, uint64_t size, uint64_t generation, ArenaPages pages,
        std::string pages_detail)
      : fd_(fd),
        base_(base),
        size_(size),
        generation_(generation),
        pages_(pages),
        pages_detail_(std::move(pages_detail)) {}

  int fd_;
  std::byte* base_;
  uint64_t size_;
  uint64_t generation_;
  ArenaPages pages_;
  std::string pages_detail_;
};

}  // namespace kvtier
