#include "server/service/arena_fd_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "common/fd_passing.h"
#include "spdlog/spdlog.h"

namespace kvtier {

absl::StatusOr<std::unique_ptr<ArenaFdServer>> ArenaFdServer::Start(const std::string& path,
                                                                    int arena_fd,
                                                                    uint64_t generation) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--socket: '%s' is too long for a unix socket (%d bytes at most)", path,
                        sizeof(addr.sun_path) - 1));
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(absl::StrFormat("socket: %s", std::strerror(errno)));
  unlink(path.c_str());  // a stale file from a killed daemon
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd, 64) != 0) {
    int err = errno;
    close(fd);
    return absl::FailedPreconditionError(
        absl::StrFormat("cannot listen on '%s': %s", path, std::strerror(err)));
  }
  return std::unique_ptr<ArenaFdServer>(new ArenaFdServer(path, fd, arena_fd, generation));
}

ArenaFdServer::ArenaFdServer(std::string path, int listen_fd, int arena_fd, uint64_t generation)
    : path_(std::move(path)), listen_fd_(listen_fd), arena_fd_(arena_fd), generation_(generation) {
  thread_ = std::thread([this] { Serve(); });
}

ArenaFdServer::~ArenaFdServer() {
  stop_.store(true);
  thread_.join();
  close(listen_fd_);
  unlink(path_.c_str());
}

void ArenaFdServer::Serve() {
  while (!stop_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    // A short poll so the destructor's stop is seen quickly without a wake-up pipe.
    if (poll(&p, 1, 100) <= 0) continue;
    int conn = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) continue;
    if (!SendFdWithWord(conn, arena_fd_, generation_)) {
      spdlog::debug("arena fd hand-out failed: {}", std::strerror(errno));
    }
    close(conn);
  }
}

}  // namespace kvtier
