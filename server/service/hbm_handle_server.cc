#include "server/service/hbm_handle_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "spdlog/spdlog.h"

namespace kvtier {

absl::StatusOr<std::unique_ptr<HbmHandleServer>> HbmHandleServer::Start(const std::string& path,
                                                                        DevicePool* pool,
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
  return std::unique_ptr<HbmHandleServer>(new HbmHandleServer(path, fd, pool, generation));
}

HbmHandleServer::HbmHandleServer(std::string path, int listen_fd, DevicePool* pool,
                                 uint64_t generation)
    : path_(std::move(path)), listen_fd_(listen_fd), pool_(pool), generation_(generation) {
  thread_ = std::thread([this] { Serve(); });
}

HbmHandleServer::~HbmHandleServer() {
  stop_.store(true);
  thread_.join();
  close(listen_fd_);
  unlink(path_.c_str());
}

void HbmHandleServer::Serve() {
  while (!stop_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    // A short poll so the destructor's stop is seen quickly without a wake-up pipe.
    if (poll(&p, 1, 100) <= 0) continue;
    int conn = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) continue;
    Answer(conn);
    close(conn);
  }
}

void HbmHandleServer::Answer(int conn) {
  // One 4-byte request; a client that sends nothing within a second is dropped.
  uint32_t segment = 0;
  size_t got = 0;
  while (got < sizeof(segment)) {
    pollfd p{conn, POLLIN, 0};
    if (poll(&p, 1, 1000) <= 0) return;
    const ssize_t n = recv(conn, reinterpret_cast<char*>(&segment) + got, sizeof(segment) - got, 0);
    if (n <= 0) return;
    got += static_cast<size_t>(n);
  }
  HbmSegmentReply reply;
  reply.generation = generation_;
  reply.segment = segment;
  reply.segment_bytes = pool_->segment_bytes();
  reply.device = pool_->device();
  SegmentExport exported;
  int fd = -1;
  if (segment >= pool_->num_segments()) {
    reply.status = static_cast<uint32_t>(HbmWireStatus::kNoSuchSegment);
  } else if (absl::Status s = pool_->Export(segment, &exported); !s.ok()) {
    spdlog::warn("hbm: export of segment {} failed: {}", segment, s.ToString());
    reply.status = static_cast<uint32_t>(HbmWireStatus::kExportFailed);
  } else {
    reply.status = static_cast<uint32_t>(HbmWireStatus::kOk);
    reply.backend = static_cast<uint32_t>(exported.backend);
    reply.handle_bytes = exported.handle_bytes;
    std::memcpy(reply.handle, exported.handle, sizeof(reply.handle));
    fd = exported.fd;
  }
  iovec iov{&reply, sizeof(reply)};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cm), &fd, sizeof(int));
  }
  if (sendmsg(conn, &msg, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof(reply))) {
    spdlog::debug("hbm segment hand-out failed: {}", std::strerror(errno));
  }
}

}  // namespace kvtier
