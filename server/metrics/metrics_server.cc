#include "server/metrics/metrics_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <chrono>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace kvtier {
namespace {

// Prometheus text format, version 0.0.4.
constexpr char kExpositionType[] = "text/plain; version=0.0.4; charset=utf-8";

// Scrapes and probes are rare and small: two threads answer them.
constexpr size_t kThreads = 2;

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& listen,
                                                                    Handlers handlers) {
  const size_t colon = listen.rfind(':');
  uint32_t port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port > 65535) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--metrics-listen: '%s' is not HOST:PORT (e.g. 127.0.0.1:9400; port 0 picks a free one)",
        listen));
  }
  std::string host = listen.substr(0, colon);
  // [::1]:9400 names an IPv6 host; getaddrinfo wants it without the brackets.
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }

  auto server = std::make_unique<httplib::Server>();
  server->new_task_queue = [] { return new httplib::ThreadPool(kThreads); };
  // Short idle keep-alive so Stop does not wait long on an idle scraper connection.
  server->set_keep_alive_timeout(1);
  server->set_read_timeout(5);
  server->set_write_timeout(5);
  // cpp-httplib sets SO_REUSEPORT by default, which would let a second daemon bind the same port
  // and take half the scrapes; SO_REUSEADDR alone still allows a quick restart.
  server->set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server->Get("/metrics",
              [metrics = handlers.metrics](const httplib::Request&, httplib::Response& res) {
                res.set_content(metrics(), kExpositionType);
              });
  server->Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", "text/plain");
  });
  server->Get("/readyz", [ready = handlers.ready](const httplib::Request&, httplib::Response& res) {
    const absl::Status status = ready();
    if (status.ok()) {
      res.set_content("ready\n", "text/plain");
    } else {
      res.status = 503;
      res.set_content(absl::StrFormat("not ready: %s\n", status.message()), "text/plain");
    }
  });

  const int bound =
      port == 0
          ? server->bind_to_any_port(host)
          : (server->bind_to_port(host, static_cast<int>(port)) ? static_cast<int>(port) : -1);
  if (bound <= 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "--metrics-listen: cannot listen on %s (in use, not an address of this host, or no "
        "permission)",
        listen));
  }
  auto out =
      std::unique_ptr<MetricsServer>(new MetricsServer(std::move(host), bound, std::move(server)));
  // Stop only takes effect once the accept loop runs: wait for it, so a Stop right after Start
  // cannot be lost (the loop starts at once; the bound is a safety net).
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (!out->server_->is_running() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  if (!out->server_->is_running()) {
    out->Stop();
    return absl::InternalError(
        absl::StrFormat("--metrics-listen: the HTTP server on %s did not start", listen));
  }
  return out;
}

MetricsServer::MetricsServer(std::string host, int port, std::unique_ptr<httplib::Server> server)
    : host_(std::move(host)), port_(port), server_(std::move(server)) {
  thread_ = std::thread([this] { server_->listen_after_bind(); });
}

MetricsServer::~MetricsServer() { Stop(); }

void MetricsServer::Stop() {
  if (!thread_.joinable()) return;
  // Closes the listening socket; the accept loop then ends and shuts its pool down, which waits
  // for the requests in progress.
  server_->stop();
  thread_.join();
}

}  // namespace kvtier
