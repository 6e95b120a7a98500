// Shared mappings that can hold 2 MiB pages: the daemon's DRAM arena and every client's view of
// it. A huge page is mapped with one 2 MiB entry only where the virtual address is aligned to
// 2 MiB and the mapping asks for it; otherwise each 4 KiB of it takes an entry of its own.
#pragma once

#include <cstdint>

namespace kvtier {

inline constexpr uint64_t kHugePageBytes = 2ULL << 20;

// mmap(MAP_SHARED | extra_flags) of `bytes` of `fd` from offset 0, read-write, at an address
// aligned to 2 MiB, advised MADV_HUGEPAGE (harmless over 4 KiB pages). MAP_FAILED with errno on
// failure, as mmap.
void* MapSharedHugeAligned(int fd, uint64_t bytes, int extra_flags);

// Faults every page of [p, p + bytes) in for writing (MADV_POPULATE_WRITE, Linux 5.14): 0, or an
// errno (EINVAL on older kernels, where the pages come at first touch instead).
int PopulateWrite(void* p, uint64_t bytes);

}  // namespace kvtier
