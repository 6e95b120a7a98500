// Serves a gRPC server on a unix socket through our own accept loop, so that the credentials of
// each connection's process are known: SO_PEERCRED (uid, gid) and SO_PEERGROUPS (supplementary
// groups), read when the connection is accepted. Each accepted socket is handed to gRPC with
// AddInsecureChannelFromFd; gRPC names such a connection "fd:N" (ServerContext::peer()), which is
// how a call finds its caller here.
//
// Used only when namespaces are restricted (--allow-models): otherwise gRPC listens on the socket
// itself. A closed connection's fd number can be reused by a new one; accepted sockets are moved
// to ever-increasing fd numbers (64k of them, wrapping around, far above the daemon's own) so that
// a call still finishing on a closed connection does not see the next connection's credentials.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace grpc {
class Server;
}

namespace kvtier {

struct UnixPeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups (empty where SO_PEERGROUPS is missing)
};

class UnixPeerListener {
 public:
  // Binds and listens on `path` (a stale file is removed first; the caller sets the umask) and
  // serves `server` (started, with no port of its own on `path`) on every accepted connection.
  static absl::StatusOr<std::unique_ptr<UnixPeerListener>> Start(const std::string& path,
                                                                 grpc::Server* server);
  // Stops accepting; removes the socket file. Destroy it only after the server has shut down
  // (calls in flight still look their caller up here).
  ~UnixPeerListener();
  // Stops handing new connections to the server (call before it shuts down). Idempotent.
  void StopAccepting();

  // The credentials of the connection gRPC calls `peer` ("fd:N"), if it is one of ours.
  std::optional<UnixPeerCredentials> Find(std::string_view peer) const;

 private:
  UnixPeerListener(std::string path, int listen_fd, grpc::Server* server);
  void Serve();
  // Moves `fd` to the next number of the rotation; returns the fd to use.
  int Rotate(int fd);

  const std::string path_;
  const int listen_fd_;
  grpc::Server* const server_;
  int rotate_low_ = -1;  // -1: no rotation (the fd limit is too low for it)
  int rotate_high_ = -1;
  int next_fd_ = -1;  // accept thread only
  std::atomic<bool> stop_{false};
  mutable absl::Mutex mu_;
  absl::flat_hash_map<int, UnixPeerCredentials> by_fd_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace kvtier
