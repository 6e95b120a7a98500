// kvtierd's structured logs (--log-format json) and request ids (x-request-id) on failed and slow
// calls, read back from a real daemon's stderr.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <sstream>

#include "common/local_daemon.h"
#include "kvtier/client.h"
#include "kvtier/v1/kvtier.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/support/bin_path.h"
#include "tests/support/wait.h"

namespace kvtier::testing {
namespace {

class RequestLogTest : public ::testing::Test {
 protected:
  void Start(const std::vector<std::string>& extra) {
    std::vector<std::string> args = {"--dram-capacity", "32MiB", "--log-format", "json"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto d = LocalDaemon::Start(BinPath("kvtierd"), args);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
  }

  // Every line of the daemon's log so far, each parsed (a line that is not JSON fails the test).
  std::vector<nlohmann::json> LogLines() {
    std::vector<nlohmann::json> lines;
    std::istringstream log(daemon_->ReadLog());
    for (std::string line; std::getline(log, line);) {
      if (line.empty()) continue;
      nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      EXPECT_FALSE(j.is_discarded()) << "not JSON: " << line;
      if (!j.is_discarded()) lines.push_back(std::move(j));
    }
    return lines;
  }

  // The first log line whose "request_id" is `id` (null when none within a few seconds).
  nlohmann::json WaitForRequest(const std::string& id) {
    nlohmann::json found;
    WaitUntil(
        [&] {
          for (nlohmann::json& j : LogLines()) {
            if (j.value("request_id", "") == id) {
              found = std::move(j);
              return true;
            }
          }
          return false;
        },
        absl::Seconds(5));
    return found;
  }

  std::unique_ptr<LocalDaemon> daemon_;
};

TEST_F(RequestLogTest, FailedCallIsLoggedAsJsonWithTheClientsRequestId) {
  Start({});
  ClientOptions options;
  options.socket_path = daemon_->socket_path();
  options.request_id = "test-request-42";
  std::unique_ptr<Client> client;
  ASSERT_TRUE(Client::Connect(options, &client).ok());
  // A namespace nobody registered: NOT_FOUND.
  LookupResult found;
  const std::vector<BlockKey> keys = {{1, 2}};
  Status s = client->Lookup(0x1234, keys, &found);
  ASSERT_EQ(s.code(), Status::Code::kNotFound) << s.ToString();

  nlohmann::json line = WaitForRequest("test-request-42");
  ASSERT_FALSE(line.is_null()) << daemon_->ReadLog();
  EXPECT_EQ(line["method"], "/kvtier.v1.KvTier/LookupPrefix");
  EXPECT_EQ(line["status"], "NOT_FOUND");
  EXPECT_EQ(line["level"], "warning");
  EXPECT_EQ(line["msg"], "request failed");
  EXPECT_TRUE(line["duration_ms"].is_number()) << line;
  EXPECT_NE(line.value("error", "").find("namespace_id"), std::string::npos) << line;
  EXPECT_TRUE(line["ts"].is_string());
  EXPECT_EQ(line["logger"], "kvtierd");
  // Successful, quick calls (GetArenaInfo at connect) are not logged.
  for (const nlohmann::json& j : LogLines()) {
    EXPECT_NE(j.value("method", ""), "/kvtier.v1.KvTier/GetArenaInfo") << j;
  }
}

TEST_F(RequestLogTest, DaemonMakesUpAnIdAndReturnsIt) {
  Start({});
  auto stub = v1::KvTier::NewStub(
      grpc::CreateChannel("unix:" + daemon_->socket_path(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  v1::RegisterNamespaceRequest req;  // no layout: INVALID_ARGUMENT
  v1::RegisterNamespaceResponse resp;
  grpc::Status s = stub->RegisterNamespace(&ctx, req, &resp);
  ASSERT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  auto trailer = ctx.GetServerTrailingMetadata().find("x-request-id");
  ASSERT_NE(trailer, ctx.GetServerTrailingMetadata().end());
  const std::string id(trailer->second.data(), trailer->second.size());
  EXPECT_EQ(id.size(), 16u) << id;
  nlohmann::json line = WaitForRequest(id);
  ASSERT_FALSE(line.is_null()) << daemon_->ReadLog();
  EXPECT_EQ(line["method"], "/kvtier.v1.KvTier/RegisterNamespace");
  EXPECT_EQ(line["status"], "INVALID_ARGUMENT");
}

TEST_F(RequestLogTest, SlowCallsAreLoggedAboveTheThreshold) {
  Start({"--slow-request-ms", "0"});  // every call is "slow"
  ClientOptions options;
  options.socket_path = daemon_->socket_path();
  options.request_id = "slow-stats-1";
  std::unique_ptr<Client> client;
  ASSERT_TRUE(Client::Connect(options, &client).ok());
  DaemonStats stats;
  ASSERT_TRUE(client->Stats(&stats).ok());
  nlohmann::json line;
  ASSERT_TRUE(WaitUntil(
      [&] {
        for (nlohmann::json& j : LogLines()) {
          if (j.value("method", "") == "/kvtier.v1.KvTier/Stats") {
            line = std::move(j);
            return true;
          }
        }
        return false;
      },
      absl::Seconds(5)))
      << daemon_->ReadLog();
  EXPECT_EQ(line["request_id"], "slow-stats-1");
  EXPECT_EQ(line["status"], "OK");
  EXPECT_EQ(line["msg"], "slow request");
  EXPECT_FALSE(line.contains("error"));
}

TEST(LogFormatFlag, UnknownFormatIsAStartUpError) {
  ProcessResult r = RunProgram({BinPath("kvtierd"), "--socket", "/tmp/kvtier-logfmt-test.sock",
                                "--dram-capacity", "8MiB", "--log-format", "xml"},
                               20);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--log-format: 'xml' is not text or json"), std::string::npos)
      << r.output;
}

}  // namespace
}  // namespace kvtier::testing
