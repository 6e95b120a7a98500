#include "server/dram/arena.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "common/size.h"

namespace kvtier {

absl::StatusOr<std::unique_ptr<Arena>> Arena::Create(uint64_t capacity, const std::string& name) {
  const uint64_t size = capacity / kAlign * kAlign;
  if (size == 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--dram-capacity: %d bytes is below one 4 KiB page", capacity));
  }
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) {
    return absl::InternalError(absl::StrFormat("memfd_create: %s", std::strerror(errno)));
  }
  // fallocate reserves the pages now: an arena larger than free memory fails here, clearly.
  if (int err = posix_fallocate(fd, 0, static_cast<off_t>(size)); err != 0) {
    close(fd);
    return absl::ResourceExhaustedError(
        absl::StrFormat("--dram-capacity: cannot reserve %s of shared memory: %s",
                        FormatBytes(size), std::strerror(err)));
  }
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (p == MAP_FAILED) {
    int err = errno;
    close(fd);
    return absl::ResourceExhaustedError(
        absl::StrFormat("mmap of the %s arena: %s", FormatBytes(size), std::strerror(err)));
  }
  madvise(p, size, MADV_NOHUGEPAGE);  // advisory; failure is harmless
  std::random_device rd;
  uint64_t generation =
      (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ static_cast<uint64_t>(getpid());
  if (generation == 0) generation = 1;
  return std::unique_ptr<Arena>(new Arena(fd, static_cast<std::byte*>(p), size, generation));
}

Arena::~Arena() {
  munmap(base_, size_);
  close(fd_);
}

}  // namespace kvtier
