#include "client/src/arena_mapping.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/huge_map.h"

namespace kvtier::client_internal {
namespace {

using Clock = std::chrono::steady_clock;

Status Errno(Status::Code code, const std::string& what) {
  return Status(code, what + ": " + std::strerror(errno));
}

// Closes a descriptor on scope exit unless released.
class ScopedFd {
 public:
  explicit ScopedFd(int fd = -1) : fd_(fd) {}
  ~ScopedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  ScopedFd(const ScopedFd&) = delete;
  ScopedFd& operator=(const ScopedFd&) = delete;
  int get() const { return fd_; }
  void reset(int fd) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

// Waits until `fd` is readable or the deadline passes.
Status WaitReadable(int fd, Clock::time_point deadline, const std::string& path) {
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      return Status(Status::Code::kDeadlineExceeded,
                    "no arena descriptor from " + path + " before the deadline");
    }
    pollfd pfd{fd, POLLIN, 0};
    const int n = ::poll(&pfd, 1, static_cast<int>(left));
    if (n > 0) return Status();
    if (n < 0 && errno != EINTR) return Errno(Status::Code::kUnavailable, "poll " + path);
  }
}

Status ConnectUnix(const std::string& path, ScopedFd* out) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return Status(Status::Code::kInvalidArgument,
                  "arena socket path is too long for a unix socket (" +
                      std::to_string(path.size()) + " bytes): " + path);
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  ScopedFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return Errno(Status::Code::kInternal, "socket");
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) return Errno(Status::Code::kUnavailable, "connect to arena socket " + path);
  out->reset(fd.release());
  return Status();
}

// Reads the generation (up to 8 bytes, little-endian) and the one descriptor that rides with the
// first byte. A sender that writes fewer than 8 bytes and closes is accepted; the generation is
// then compared on the bytes sent.
Status ReceiveArenaFd(int sock, Clock::time_point deadline, const std::string& path,
                      uint64_t* generation, size_t* generation_bytes, ScopedFd* arena_fd) {
  unsigned char buf[8] = {};
  size_t got = 0;
  while (got < sizeof(buf)) {
    // Once the descriptor and some generation bytes are in, the rest either follows at once or
    // never comes (a sender of a shorter generation that keeps the socket open).
    const bool have_some = got > 0 && arena_fd->get() >= 0;
    const auto wait_until =
        have_some ? std::min(deadline, Clock::now() + std::chrono::milliseconds(200)) : deadline;
    if (Status s = WaitReadable(sock, wait_until, path); !s.ok()) {
      if (have_some) break;
      return s;
    }
    iovec iov{buf + got, sizeof(buf) - got};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    const ssize_t n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return Errno(Status::Code::kUnavailable, "receive arena descriptor from " + path);
    }
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        // Keep the first descriptor; close any extra so none leak.
        if (arena_fd->get() < 0) {
          arena_fd->reset(fd);
        } else {
          ::close(fd);
        }
      }
    }
    if (msg.msg_flags & MSG_CTRUNC) {
      return Status(Status::Code::kInternal,
                    "arena descriptor message from " + path + " was truncated");
    }
    if (n == 0) break;  // sender closed
    got += static_cast<size_t>(n);
  }
  if (arena_fd->get() < 0) {
    return Status(Status::Code::kUnavailable, "kvtierd sent no arena descriptor on " + path);
  }
  if (got == 0) {
    return Status(Status::Code::kUnavailable, "kvtierd sent no arena generation on " + path);
  }
  uint64_t value = 0;
  for (size_t i = 0; i < got; ++i) value |= static_cast<uint64_t>(buf[i]) << (8 * i);
  *generation = value;
  *generation_bytes = got;
  return Status();
}

// A pidfd for the process at the other end of `sock`, or -1 when it cannot be had.
int PeerPidfd(int sock) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.pid <= 0) return -1;
  // pidfds are close-on-exec. ENOSYS before Linux 5.3: the owner stays unknown.
  const long fd = ::syscall(SYS_pidfd_open, cred.pid, 0);
  return fd >= 0 ? static_cast<int>(fd) : -1;
}

}  // namespace

Status ArenaMapping::Create(const std::string& fd_socket_path, uint64_t generation,
                            uint64_t arena_bytes, bool prefault, int timeout_ms,
                            std::unique_ptr<ArenaMapping>* out) {
  if (arena_bytes == 0) {
    return Status(Status::Code::kFailedPrecondition, "kvtierd reports an empty arena");
  }
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  ScopedFd sock;
  if (Status s = ConnectUnix(fd_socket_path, &sock); !s.ok()) return s;

  ScopedFd owner(PeerPidfd(sock.get()));
  uint64_t received = 0;
  size_t received_bytes = 0;
  ScopedFd arena_fd;
  if (Status s = ReceiveArenaFd(sock.get(), deadline, fd_socket_path, &received, &received_bytes,
                                &arena_fd);
      !s.ok()) {
    return s;
  }
  const uint64_t mask = received_bytes >= 8 ? ~0ULL : (1ULL << (8 * received_bytes)) - 1;
  if (received != (generation & mask)) {
    return Status(Status::Code::kFailedPrecondition,
                  "arena generation changed while connecting (kvtierd restarted?); retry");
  }

  struct stat st {};
  if (::fstat(arena_fd.get(), &st) != 0) return Errno(Status::Code::kInternal, "fstat arena");
  if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) < arena_bytes) {
    return Status(Status::Code::kFailedPrecondition,
                  "arena descriptor holds " + std::to_string(st.st_size) + " bytes, kvtierd said " +
                      std::to_string(arena_bytes));
  }

  // Aligned and advised for huge pages, so an arena kvtierd made of 2 MiB pages (--arena-pages)
  // is mapped with 2 MiB entries here too: fewer page walks in every copy in and out of it.
  void* base = MapSharedHugeAligned(arena_fd.get(), arena_bytes, 0);
  if (base == MAP_FAILED) return Errno(Status::Code::kResourceExhausted, "mmap arena");
  if (prefault) (void)PopulateWrite(base, arena_bytes);  // best effort, as MAP_POPULATE is
  // The mapping keeps the memory alive; the descriptor closes with arena_fd.
  out->reset(
      new ArenaMapping(static_cast<std::byte*>(base), arena_bytes, generation, owner.release()));
  return Status();
}

ArenaMapping::~ArenaMapping() {
  ::munmap(base_, size_);
  if (owner_pidfd_ >= 0) ::close(owner_pidfd_);
}

bool ArenaMapping::OwnerAlive() const {
  if (owner_pidfd_ < 0) return true;
  // A pidfd polls readable once its process has exited.
  pollfd pfd{owner_pidfd_, POLLIN, 0};
  int n;
  do {
    n = ::poll(&pfd, 1, 0);
  } while (n < 0 && errno == EINTR);
  return n <= 0;
}

}  // namespace kvtier::client_internal
