// A real etcd (Debian's etcd-server, /usr/bin/etcd) for integration tests: a single member on
// loopback with free ports and a temporary data directory, killed and removed on destruction.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvtier::testing {

class LocalEtcd {
 public:
  static constexpr const char* kDefaultBinary = "/usr/bin/etcd";
  // Whether `binary` is installed (tests skip when it is not).
  static bool Available(const std::string& binary = kDefaultBinary);

  // Starts etcd and waits (at most 20 s) until it serves clients.
  static absl::StatusOr<std::unique_ptr<LocalEtcd>> Start(
      const std::string& binary = kDefaultBinary);
  ~LocalEtcd();  // Kill() and remove the data directory
  LocalEtcd(const LocalEtcd&) = delete;
  LocalEtcd& operator=(const LocalEtcd&) = delete;

  // "127.0.0.1:<client port>", for EtcdClient.
  const std::string& endpoint() const { return endpoint_; }
  bool Running() const { return pid_ > 0; }
  // SIGKILL and wait: etcd gone without a goodbye.
  void Kill();
  // Starts it again on the same ports and data directory (after Kill) and waits until it serves.
  absl::Status Restart();
  // What etcd logged since it last started.
  std::string ReadLog() const;

 private:
  LocalEtcd() = default;
  absl::Status Launch();

  std::string binary_;
  std::string dir_;
  std::string log_path_;
  int client_port_ = 0;
  int peer_port_ = 0;
  std::string endpoint_;
  pid_t pid_ = -1;
};

}  // namespace kvtier::testing
