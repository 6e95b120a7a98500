#include "server/security/unix_peer_listener.h"

#include <fcntl.h>
#include <grpcpp/server.h>
#include <grpcpp/server_posix.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "spdlog/spdlog.h"

#ifndef SO_PEERGROUPS
#define SO_PEERGROUPS 59  // Linux 4.13
#endif

namespace kvtier {

absl::StatusOr<std::unique_ptr<UnixPeerListener>> UnixPeerListener::Start(const std::string& path,
                                                                          grpc::Server* server) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--socket: '%s' is too long for a unix socket (%d bytes at most)", path,
                        sizeof(addr.sun_path) - 1));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrFormat("socket: %s", std::strerror(errno)));
  unlink(path.c_str());  // a stale file from a killed daemon
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 256) != 0) {
    const int err = errno;
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrFormat("--socket: cannot listen on '%s': %s", path, std::strerror(err)));
  }
  return std::unique_ptr<UnixPeerListener>(new UnixPeerListener(path, fd, server));
}

UnixPeerListener::UnixPeerListener(std::string path, int listen_fd, grpc::Server* server)
    : path_(std::move(path)), listen_fd_(listen_fd), server_(server) {
  // Rotation range: 64k numbers from 16384 (the kernel's fd table then takes ~640 KiB), or the
  // upper half of the fd limit when it is lower; the soft limit is raised toward the hard one.
  constexpr rlim_t kLow = 16384, kCount = 65536;
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    if (limit.rlim_cur < kLow + kCount && limit.rlim_max > limit.rlim_cur) {
      limit.rlim_cur = std::min<rlim_t>(limit.rlim_max, kLow + kCount);
      setrlimit(RLIMIT_NOFILE, &limit);
      getrlimit(RLIMIT_NOFILE, &limit);
    }
    if (limit.rlim_cur >= kLow + kCount) {
      rotate_low_ = static_cast<int>(kLow);
      rotate_high_ = static_cast<int>(kLow + kCount);
    } else if (limit.rlim_cur >= 8192) {
      rotate_high_ = static_cast<int>(limit.rlim_cur);
      rotate_low_ = rotate_high_ / 2;
    }
    next_fd_ = rotate_low_;
  }
  thread_ = std::thread([this] { Serve(); });
}

UnixPeerListener::~UnixPeerListener() {
  StopAccepting();
  close(listen_fd_);
  unlink(path_.c_str());
}

void UnixPeerListener::StopAccepting() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

int UnixPeerListener::Rotate(int fd) {
  if (rotate_low_ < 0) return fd;
  int moved = fcntl(fd, F_DUPFD_CLOEXEC, next_fd_);
  if (moved < 0 && next_fd_ != rotate_low_) moved = fcntl(fd, F_DUPFD_CLOEXEC, rotate_low_);
  if (moved < 0) return fd;  // every number above is taken: keep it where it is
  close(fd);
  next_fd_ = moved + 1 >= rotate_high_ ? rotate_low_ : moved + 1;
  return moved;
}

void UnixPeerListener::Serve() {
  while (!stop_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    // A short poll so the destructor's stop is seen quickly without a wake-up pipe.
    if (poll(&p, 1, 100) <= 0) continue;
    int conn = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (conn < 0) {
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
        // Out of descriptors or memory: the connection waits in the backlog; do not spin on it.
        spdlog::warn("unix socket: accept failed ({}); retrying in 100 ms", std::strerror(errno));
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      continue;
    }
    UnixPeerCredentials creds;
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      spdlog::warn("unix socket: SO_PEERCRED failed ({}): connection closed", std::strerror(errno));
      close(conn);
      continue;
    }
    creds.pid = cred.pid;
    creds.uid = cred.uid;
    creds.gid = cred.gid;
    std::vector<gid_t> groups(64);
    len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (getsockopt(conn, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) != 0 && errno == ERANGE) {
      groups.resize(len / sizeof(gid_t));
      getsockopt(conn, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len);
    }
    groups.resize(std::min<size_t>(groups.size(), len / sizeof(gid_t)));
    creds.groups = std::move(groups);
    conn = Rotate(conn);
    {
      absl::MutexLock lock(&mu_);
      by_fd_[conn] = std::move(creds);
    }
    grpc::AddInsecureChannelFromFd(server_, conn);  // gRPC owns (and closes) it from here
  }
}

std::optional<UnixPeerCredentials> UnixPeerListener::Find(std::string_view peer) const {
  absl::string_view number(peer.data(), peer.size());
  int fd = -1;
  if (!absl::ConsumePrefix(&number, "fd:") || !absl::SimpleAtoi(number, &fd)) return std::nullopt;
  absl::MutexLock lock(&mu_);
  auto it = by_fd_.find(fd);
  if (it == by_fd_.end()) return std::nullopt;
  return it->second;
}

}  // namespace kvtier
