#include "tests/support/local_etcd.h"

#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/local_daemon.h"
#include "tests/support/wait.h"

namespace kvtier::testing {
namespace {

// A port nothing listens on right now (the kernel's pick); 0 on failure.
int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

}  // namespace

bool LocalEtcd::Available(const std::string& binary) { return access(binary.c_str(), X_OK) == 0; }

absl::StatusOr<std::unique_ptr<LocalEtcd>> LocalEtcd::Start(const std::string& binary) {
  if (!Available(binary)) return absl::NotFoundError(absl::StrCat(binary, " is not installed"));
  char tmpl[] = "/tmp/kvtier-etcd-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
  auto etcd = std::unique_ptr<LocalEtcd>(new LocalEtcd());
  etcd->binary_ = binary;
  etcd->dir_ = tmpl;
  etcd->log_path_ = etcd->dir_ + "/etcd.log";
  // A port picked free may be taken before etcd binds it: then try other ports.
  absl::Status status;
  for (int attempt = 0; attempt < 3; ++attempt) {
    etcd->client_port_ = FreeLoopbackPort();
    etcd->peer_port_ = FreeLoopbackPort();
    if (etcd->client_port_ == 0 || etcd->peer_port_ == 0 ||
        etcd->client_port_ == etcd->peer_port_) {
      status = absl::InternalError("no free loopback port");
      continue;
    }
    etcd->endpoint_ = absl::StrCat("127.0.0.1:", etcd->client_port_);
    status = etcd->Launch();
    if (status.ok()) return etcd;
    std::error_code ec;
    std::filesystem::remove_all(etcd->dir_ + "/data", ec);
  }
  return status;
}

absl::Status LocalEtcd::Launch() {
  const std::string client_url = absl::StrCat("http://127.0.0.1:", client_port_);
  const std::string peer_url = absl::StrCat("http://127.0.0.1:", peer_port_);
  // SpawnUntil waits for a line on stdout and then closes its end of the pipe; etcd logs on
  // stderr only (to the log file), so a shell prints the line and then becomes etcd.
  const std::vector<std::string> argv = {"/bin/sh",
                                         "-c",
                                         "echo spawned; exec \"$0\" \"$@\" 1>&2",
                                         binary_,
                                         "--name",
                                         "t",
                                         "--data-dir",
                                         dir_ + "/data",
                                         "--listen-client-urls",
                                         client_url,
                                         "--advertise-client-urls",
                                         client_url,
                                         "--listen-peer-urls",
                                         peer_url,
                                         "--initial-advertise-peer-urls",
                                         peer_url,
                                         "--initial-cluster",
                                         absl::StrCat("t=", peer_url)};
  absl::StatusOr<pid_t> pid = SpawnUntil(argv, "spawned", absl::Seconds(10), log_path_);
  if (!pid.ok()) return pid.status();
  pid_ = *pid;
  bool exited = false;
  const bool serving = WaitUntil(
      [&] {
        int wstatus;
        if (waitpid(pid_, &wstatus, WNOHANG) == pid_) {
          exited = true;
          return true;
        }
        return ReadLog().find("serving insecure client requests") != std::string::npos;
      },
      absl::Seconds(20), absl::Milliseconds(20));
  if (exited) pid_ = -1;
  if (!serving || exited) {
    Kill();
    return absl::UnavailableError(
        absl::StrCat("etcd did not start serving on ", endpoint_, "; log:\n", ReadLog()));
  }
  return absl::OkStatus();
}

void LocalEtcd::Kill() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int wstatus;
  waitpid(pid_, &wstatus, 0);
  pid_ = -1;
}

absl::Status LocalEtcd::Restart() {
  Kill();
  return Launch();
}

std::string LocalEtcd::ReadLog() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

LocalEtcd::~LocalEtcd() {
  Kill();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

}  // namespace kvtier::testing
