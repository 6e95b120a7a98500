#include "server/metrics/metrics_server.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>

#include "absl/strings/match.h"
#include "tests/support/http_get.h"

namespace kvtier {
namespace {

using ::kvtier::testing::HttpGet;

class MetricsServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    MetricsServer::Handlers handlers;
    handlers.metrics = [this] {
      ++scrapes_;
      return std::string("# HELP up Up.\n# TYPE up gauge\nup 1\n");
    };
    handlers.ready = [this]() -> absl::Status {
      if (ready_.load()) return absl::OkStatus();
      return absl::UnavailableError("the gRPC server is not serving yet");
    };
    auto started = MetricsServer::Start("127.0.0.1:0", std::move(handlers));
    ASSERT_TRUE(started.ok()) << started.status();
    server_ = std::move(*started);
    ASSERT_GT(server_->port(), 0);
    EXPECT_EQ(server_->host(), "127.0.0.1");
  }

  std::atomic<int> scrapes_{0};
  std::atomic<bool> ready_{false};
  std::unique_ptr<MetricsServer> server_;
};

TEST_F(MetricsServerTest, ServesMetricsInTheTextFormat) {
  auto r = HttpGet("127.0.0.1", server_->port(), "/metrics");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(absl::StartsWith(r->content_type, "text/plain; version=0.0.4")) << r->content_type;
  EXPECT_EQ(r->body, "# HELP up Up.\n# TYPE up gauge\nup 1\n");
  EXPECT_EQ(scrapes_.load(), 1);
}

TEST_F(MetricsServerTest, HealthzAlwaysReadyzWhenReady) {
  auto health = HttpGet("127.0.0.1", server_->port(), "/healthz");
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(health->status, 200);

  auto not_ready = HttpGet("127.0.0.1", server_->port(), "/readyz");
  ASSERT_TRUE(not_ready.ok()) << not_ready.status();
  EXPECT_EQ(not_ready->status, 503);
  EXPECT_NE(not_ready->body.find("the gRPC server is not serving yet"), std::string::npos)
      << not_ready->body;

  ready_ = true;
  auto ready = HttpGet("127.0.0.1", server_->port(), "/readyz");
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_EQ(ready->status, 200);
}

TEST_F(MetricsServerTest, UnknownPathIs404) {
  auto r = HttpGet("127.0.0.1", server_->port(), "/nope");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 404);
}

TEST_F(MetricsServerTest, StopClosesThePortAndIsIdempotent) {
  const int port = server_->port();
  server_->Stop();
  server_->Stop();
  auto r = HttpGet("127.0.0.1", port, "/healthz", absl::Seconds(1));
  EXPECT_FALSE(r.ok());
  server_.reset();
}

TEST(MetricsServerStartTest, BadAddressesNameTheFlag) {
  for (const char* bad : {"nonsense", ":9400", "127.0.0.1:99999", "127.0.0.1:port"}) {
    auto s = MetricsServer::Start(bad, {});
    ASSERT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_TRUE(absl::StrContains(s.status().message(), "--metrics-listen")) << s.status();
  }
  // An address of no interface here.
  auto s = MetricsServer::Start("192.0.2.1:0", {});
  ASSERT_FALSE(s.ok());
  EXPECT_TRUE(absl::StrContains(s.status().message(), "--metrics-listen")) << s.status();
}

TEST_F(MetricsServerTest, ASecondServerCannotShareThePort) {
  auto second = MetricsServer::Start("127.0.0.1:" + std::to_string(server_->port()), {});
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(absl::StrContains(second.status().message(), "--metrics-listen")) << second.status();
}

TEST(MetricsServerStartTest, PortInUseIsAnError) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);
  auto s = MetricsServer::Start("127.0.0.1:" + std::to_string(port), {});
  close(fd);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(s.status().message(), "--metrics-listen")) << s.status();
}

}  // namespace
}  // namespace kvtier
