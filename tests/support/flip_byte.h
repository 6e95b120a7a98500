// Corrupting a file on purpose: FlipByte inverts one byte, so it always changes (writing a fixed
// value would leave a byte that already held it untouched, one time in 256).
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <string>

namespace kvtier::testing {

// Inverts the byte at `offset` of `path` and syncs. False when it cannot.
inline bool FlipByte(const std::string& path, off_t offset) {
  const int fd = open(path.c_str(), O_RDWR);
  if (fd < 0) return false;
  unsigned char b = 0;
  bool ok = pread(fd, &b, 1, offset) == 1;
  b = static_cast<unsigned char>(~b);
  ok = ok && pwrite(fd, &b, 1, offset) == 1 && fsync(fd) == 0;
  close(fd);
  return ok;
}

}  // namespace kvtier::testing
