#include "server/weights/file_origin.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"

namespace kvtier {
namespace {

std::string Version(const struct stat& st) {
  const int64_t ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  return absl::StrFormat("mtime:%d", ns);
}

absl::Status Errno(const std::string& what, const std::string& path, int err) {
  const std::string msg = absl::StrFormat("uri: %s %s: %s", what, path, std::strerror(err));
  if (err == ENOENT || err == ENOTDIR) return absl::NotFoundError(msg);
  if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
  return absl::UnavailableError(msg);
}

absl::Status Changed(const FileIdentity& expected, const struct stat& st) {
  return absl::FailedPreconditionError(absl::StrFormat(
      "origin changed: %s is now %d bytes, %s (opened as %d bytes, %s); open it again to read the "
      "new version",
      expected.uri, st.st_size, Version(st), expected.size, expected.version));
}

}  // namespace

absl::StatusOr<FileIdentity> FileOrigin::Stat() {
  struct stat st {};
  if (stat(path_.c_str(), &st) != 0) return Errno("cannot stat", path_, errno);
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrFormat("uri: %s is not a regular file", path_));
  }
  FileIdentity f;
  f.uri = uri_;
  f.size = static_cast<uint64_t>(st.st_size);
  f.version = Version(st);
  return f;
}

absl::Status FileOrigin::Read(const FileIdentity& expected, uint64_t offset, uint64_t length,
                              std::byte* dst) {
  const int fd = open(path_.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Errno("cannot open", path_, errno);
  struct stat st {};
  absl::Status status;
  if (fstat(fd, &st) != 0) {
    status = Errno("cannot stat", path_, errno);
  } else if (static_cast<uint64_t>(st.st_size) != expected.size ||
             Version(st) != expected.version) {
    status = Changed(expected, st);
  }
  uint64_t done = 0;
  while (status.ok() && done < length) {
    const ssize_t n = pread(fd, dst + done, length - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      status = Errno("cannot read", path_, errno);
    } else if (n == 0) {
      status = absl::FailedPreconditionError(absl::StrFormat(
          "origin changed: %s ended at %d while reading [%d, %d) of a %d-byte version", uri_,
          offset + done, offset, offset + length, expected.size));
    } else {
      done += static_cast<uint64_t>(n);
    }
  }
  // Checked again after reading: a write while we read changes the mtime.
  if (status.ok()) {
    if (fstat(fd, &st) != 0) {
      status = Errno("cannot stat", path_, errno);
    } else if (static_cast<uint64_t>(st.st_size) != expected.size ||
               Version(st) != expected.version) {
      status = Changed(expected, st);
    }
  }
  close(fd);
  return status;
}

}  // namespace kvtier
