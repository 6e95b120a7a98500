// Connect without a daemon: fails fast with UNAVAILABLE (or DEADLINE_EXCEEDED for a socket that
// never answers) and a one-line message naming the socket.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "gtest/gtest.h"
#include "kvtier/client.h"
#include "temp_dir.h"

namespace kvtier {
namespace {

using Clock = std::chrono::steady_clock;

int64_t MillisSince(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
}

// A bound unix socket: listening (accepts, never speaks) or not.
int BindUnix(const std::string& path, bool listen_too) {
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  if (listen_too) {
    EXPECT_EQ(listen(fd, 4), 0);
  }
  return fd;
}

TEST(ConnectTest, MissingSocketIsUnavailableQuickly) {
  testing::TempDir dir;
  ClientOptions options;
  options.socket_path = dir.File("nothing.sock");
  options.timeout_ms = 5000;
  std::unique_ptr<Client> client;
  const auto start = Clock::now();
  Status s = Client::Connect(options, &client);
  EXPECT_LT(MillisSince(start), 2000) << "must fail fast, not wait for the deadline";
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
  // Our words first, then gRPC's reason.
  const std::string ours = "no kvtierd answering on " + options.socket_path +
                           " (is it running? start one with scripts/serve): ";
  EXPECT_EQ(s.message().substr(0, ours.size()), ours) << s.message();
  EXPECT_GT(s.message().size(), ours.size()) << "gRPC's reason is missing";
  EXPECT_EQ(client, nullptr);
}

TEST(ConnectTest, RelativeDefaultPathIsNamedAsGiven) {
  ClientOptions options;
  options.socket_path = "./no-such-dir-kvtier/kvtier.sock";
  std::unique_ptr<Client> client;
  Status s = Client::Connect(options, &client);
  EXPECT_EQ(s.code(), Status::Code::kUnavailable);
  EXPECT_NE(s.message().find("./no-such-dir-kvtier/kvtier.sock"), std::string::npos) << s.message();
}

TEST(ConnectTest, StaleSocketFileIsUnavailable) {
  testing::TempDir dir;
  const std::string path = dir.File("stale.sock");
  close(BindUnix(path, /*listen_too=*/false));  // the file stays, nobody listens
  ClientOptions options;
  options.socket_path = path;
  std::unique_ptr<Client> client;
  const auto start = Clock::now();
  Status s = Client::Connect(options, &client);
  EXPECT_LT(MillisSince(start), 2000);
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
}

TEST(ConnectTest, NotASocketSaysSo) {
  testing::TempDir dir;
  const std::string path = dir.File("plain-file");
  FILE* f = fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fclose(f);
  ClientOptions options;
  options.socket_path = path;
  std::unique_ptr<Client> client;
  Status s = Client::Connect(options, &client);
  EXPECT_EQ(s.code(), Status::Code::kUnavailable);
  EXPECT_EQ(s.message(), path + " is not a unix socket");
}

TEST(ConnectTest, SilentListenerHitsTheDeadline) {
  testing::TempDir dir;
  const std::string path = dir.File("silent.sock");
  const int fd = BindUnix(path, /*listen_too=*/true);
  ClientOptions options;
  options.socket_path = path;
  options.timeout_ms = 300;
  std::unique_ptr<Client> client;
  const auto start = Clock::now();
  Status s = Client::Connect(options, &client);
  const int64_t took = MillisSince(start);
  close(fd);
  EXPECT_LT(took, 3000);
  EXPECT_TRUE(s.code() == Status::Code::kDeadlineExceeded || s.code() == Status::Code::kUnavailable)
      << s.ToString();
}

TEST(ConnectTest, RejectsNonPositiveTimeout) {
  ClientOptions options;
  options.socket_path = "/tmp/unused.sock";
  options.timeout_ms = 0;
  std::unique_ptr<Client> client;
  EXPECT_EQ(Client::Connect(options, &client).code(), Status::Code::kInvalidArgument);
}

TEST(ConnectTest, RejectsTooLongPath) {
  ClientOptions options;
  options.socket_path = "/tmp/" + std::string(200, 'x') + ".sock";
  std::unique_ptr<Client> client;
  Status s = Client::Connect(options, &client);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("too long"), std::string::npos);
}

}  // namespace
}  // namespace kvtier
