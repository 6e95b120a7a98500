// MetricsServer: the operator's HTTP endpoint of kvtierd (--metrics-listen), on its own threads.
//   GET /metrics  Prometheus text exposition 0.0.4 (the body `metrics` returns)
//   GET /healthz  200 "ok" while the process serves HTTP at all (liveness)
//   GET /readyz   200 "ready" when `ready` returns OK; else 503 with its message (readiness)
// It knows HTTP and nothing of what it reports: the daemon passes the two callbacks in.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace httplib {
class Server;
}

namespace kvtier {

class MetricsServer {
 public:
  struct Handlers {
    std::function<std::string()> metrics;  // the /metrics body; called on a server thread
    std::function<absl::Status()> ready;   // OK once ready; called on a server thread
  };

  // Binds `listen` (HOST:PORT; port 0 picks a free one) and serves until Stop. The callbacks
  // must stay valid until Stop returns. Errors name --metrics-listen.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& listen,
                                                              Handlers handlers);
  ~MetricsServer();  // Stop()
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Closes the listener, waits for requests in progress and joins the threads. Idempotent; the
  // callbacks are not called after it returns.
  void Stop();

  const std::string& host() const { return host_; }
  int port() const { return port_; }  // the bound port (the real one when asked for 0)

 private:
  MetricsServer(std::string host, int port, std::unique_ptr<httplib::Server> server);

  std::string host_;
  int port_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;  // runs the accept loop; requests run on the server's small pool
};

}  // namespace kvtier
