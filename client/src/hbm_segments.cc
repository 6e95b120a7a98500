#include "client/src/hbm_segments.h"

#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/hbm_wire.h"
#include "cuda/ipc_handle.h"

namespace kvtier::client_internal {
namespace {

absl::Status Errno(const std::string& what) {
  return absl::FailedPreconditionError(absl::StrCat(what, ": ", std::strerror(errno)));
}

// Asks `path` for `segment`; *fd receives the descriptor that rode with the reply (-1: none).
absl::Status Fetch(const std::string& path, uint32_t segment, HbmSegmentReply* reply, int* fd) {
  *fd = -1;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(absl::StrCat("hbm socket path too long: ", path));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int sock = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return Errno("socket");
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{sock};
  if (::connect(sock, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Errno("connect to " + path);
  }
  if (::send(sock, &segment, sizeof(segment), MSG_NOSIGNAL) != sizeof(segment)) {
    return Errno("send to " + path);
  }
  size_t got = 0;
  auto* bytes = reinterpret_cast<char*>(reply);
  while (got < sizeof(*reply)) {
    pollfd p{sock, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) {
      return absl::DeadlineExceededError(absl::StrCat("no answer from ", path));
    }
    iovec iov{bytes + got, sizeof(*reply) - got};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    const ssize_t n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (*fd >= 0) ::close(*fd);
      *fd = -1;
      return n == 0 ? absl::FailedPreconditionError(absl::StrCat(path, " closed early"))
                    : Errno("recvmsg from " + path);
    }
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && *fd < 0) {
        std::memcpy(fd, CMSG_DATA(c), sizeof(int));
      }
    }
    got += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace

HbmSegments::HbmSegments(HbmTierInfo info) : info_(std::move(info)), bases_(info_.segments) {}

HbmSegments::~HbmSegments() {
  absl::MutexLock lock(&mu_);
  for (std::byte* b : bases_) {
    if (b == nullptr) continue;
    if (info_.backend == "cuda") {
      cuda::CloseIpcMemory(b);
    } else {
      ::munmap(b, info_.segment_bytes);
    }
  }
}

size_t HbmSegments::opened() const {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  for (std::byte* b : bases_) n += b != nullptr;
  return n;
}

absl::StatusOr<std::byte*> HbmSegments::Base(uint32_t segment) {
  absl::MutexLock lock(&mu_);
  if (segment >= bases_.size()) {
    return absl::FailedPreconditionError(
        absl::StrCat("hbm segment ", segment, ": the pool has ", bases_.size()));
  }
  if (bases_[segment] != nullptr) return bases_[segment];
  absl::StatusOr<std::byte*> opened = Open(segment);
  if (opened.ok()) bases_[segment] = *opened;
  return opened;
}

absl::StatusOr<std::byte*> HbmSegments::Open(uint32_t segment) {
  HbmSegmentReply reply;
  int fd = -1;
  if (absl::Status s = Fetch(info_.socket_path, segment, &reply, &fd); !s.ok()) return s;
  struct FdCloser {
    int fd;
    ~FdCloser() {
      if (fd >= 0) ::close(fd);
    }
  } closer{fd};
  if (reply.magic != kHbmWireMagic) {
    return absl::FailedPreconditionError("hbm socket: not a kvtier HBM reply");
  }
  if (reply.status != static_cast<uint32_t>(HbmWireStatus::kOk)) {
    return absl::FailedPreconditionError(
        absl::StrCat("hbm segment ", segment, ": the daemon refused (status ", reply.status, ")"));
  }
  if (reply.generation != info_.generation || reply.segment_bytes != info_.segment_bytes) {
    return absl::FailedPreconditionError("hbm segment: answered by another daemon (restarted?)");
  }
  if (reply.backend == static_cast<uint32_t>(HbmWireBackend::kCuda)) {
    if (info_.backend != "cuda") return absl::FailedPreconditionError("hbm: backend mismatch");
    return cuda::OpenIpcMemory(reply.handle, reply.handle_bytes);
  }
  if (info_.backend != "cpu" || fd < 0) {
    return absl::FailedPreconditionError("hbm segment: no descriptor for a cpu segment");
  }
  void* p = ::mmap(nullptr, info_.segment_bytes, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return Errno("mmap of an hbm segment");
  return static_cast<std::byte*>(p);
}

}  // namespace kvtier::client_internal
