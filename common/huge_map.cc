#include "common/huge_map.h"

#include <sys/mman.h>

#include <cerrno>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14
#endif

namespace kvtier {

void* MapSharedHugeAligned(int fd, uint64_t bytes, int extra_flags) {
  // Reserve 2 MiB more address space than needed, map at its first aligned address, give back
  // the rest.
  void* reserve = mmap(nullptr, bytes + kHugePageBytes, PROT_NONE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (reserve == MAP_FAILED) return MAP_FAILED;
  const uintptr_t start = reinterpret_cast<uintptr_t>(reserve);
  const uintptr_t aligned = (start + kHugePageBytes - 1) & ~(kHugePageBytes - 1);
  void* p = mmap(reinterpret_cast<void*>(aligned), bytes, PROT_READ | PROT_WRITE,
                 MAP_SHARED | MAP_FIXED | extra_flags, fd, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    munmap(reserve, bytes + kHugePageBytes);
    errno = err;
    return MAP_FAILED;
  }
  if (aligned > start) munmap(reserve, aligned - start);
  const uintptr_t end = aligned + bytes, reserve_end = start + bytes + kHugePageBytes;
  if (reserve_end > end) munmap(reinterpret_cast<void*>(end), reserve_end - end);
  madvise(p, bytes, MADV_HUGEPAGE);  // advisory: refused where THP is off, and that is fine
  return p;
}

int PopulateWrite(void* p, uint64_t bytes) {
  return madvise(p, bytes, MADV_POPULATE_WRITE) == 0 ? 0 : errno;
}

}  // namespace kvtier
