// Every bad request gets a clear status naming the field, and the daemon keeps serving.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/block_key.h"
#include "kvtier/v1/kvtier.grpc.pb.h"
#include "tests/integration/daemon_fixture.h"

namespace kvtier::testing {
namespace {

class BadInputTest : public DaemonTest {
 protected:
  std::vector<std::string> DaemonArgs() override {
    return {"--dram-capacity", "64MiB", "--max-batch", "1024"};
  }

  void SetUp() override {
    DaemonTest::SetUp();
    channel_ =
        grpc::CreateChannel("unix:" + daemon_->socket_path(), grpc::InsecureChannelCredentials());
    stub_ = v1::KvTier::NewStub(channel_);
    ns_ = Register(64 << 10);
  }

  void TearDown() override {
    // Whatever happened, the daemon still answers.
    DaemonStats stats;
    EXPECT_TRUE(client_->Stats(&stats).ok());
    EXPECT_TRUE(daemon_->Alive());
  }

  std::unique_ptr<grpc::ClientContext> Ctx() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    return ctx;
  }

  std::string Keys(size_t n) {
    std::string out;
    for (const BlockKey& k : RandomKeys(n)) AppendKey({k.lo, k.hi}, &out);
    return out;
  }

  static void ExpectError(const grpc::Status& s, grpc::StatusCode code, const std::string& field) {
    EXPECT_EQ(s.error_code(), code) << s.error_message();
    EXPECT_NE(s.error_message().find(field), std::string::npos)
        << "'" << s.error_message() << "' does not name " << field;
  }

  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::KvTier::Stub> stub_;
  Namespace ns_;
};

TEST_F(BadInputTest, UnknownNamespace) {
  v1::LookupRequest req;
  req.set_namespace_id(ns_.id ^ 1);
  req.set_keys(Keys(2));
  v1::LookupResponse resp;
  ExpectError(stub_->LookupPrefix(Ctx().get(), req, &resp), grpc::StatusCode::NOT_FOUND,
              "namespace_id");
}

TEST_F(BadInputTest, WrongBlockSize) {
  v1::RegisterNamespaceRequest req;
  auto* l = req.mutable_layout();
  l->set_model_id("m");
  l->set_num_layers(2);
  l->set_kv_heads(2);
  l->set_head_size(64);
  l->set_dtype("bf16");
  l->set_tokens_per_block(16);
  l->set_block_bytes(1000);
  v1::RegisterNamespaceResponse resp;
  ExpectError(stub_->RegisterNamespace(Ctx().get(), req, &resp), grpc::StatusCode::INVALID_ARGUMENT,
              "layout.block_bytes");
  v1::RegisterNamespaceRequest empty;
  ExpectError(stub_->RegisterNamespace(Ctx().get(), empty, &resp),
              grpc::StatusCode::INVALID_ARGUMENT, "layout");

  // The client refuses to copy blocks of a size the daemon did not register.
  Namespace wrong = ns_;
  wrong.block_bytes = ns_.block_bytes * 2;
  std::vector<std::byte> data(wrong.block_bytes);
  std::vector<const void*> src = {data.data()};
  Status s = client_->Save(wrong, RandomKeys(1), src);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
  EXPECT_NE(s.message().find("block"), std::string::npos) << s.ToString();
}

TEST_F(BadInputTest, DuplicateCommit) {
  v1::AllocateRequest alloc;
  alloc.set_namespace_id(ns_.id);
  alloc.set_keys(Keys(2));
  v1::AllocateResponse grant;
  ASSERT_TRUE(stub_->Allocate(Ctx().get(), alloc, &grant).ok());
  v1::CommitRequest commit;
  commit.set_lease_id(grant.lease_id());
  v1::CommitResponse done;
  ASSERT_TRUE(stub_->Commit(Ctx().get(), commit, &done).ok());
  EXPECT_EQ(done.committed(), 2u);
  ExpectError(stub_->Commit(Ctx().get(), commit, &done), grpc::StatusCode::NOT_FOUND, "lease_id");
}

TEST_F(BadInputTest, CommitOfASlotNotAllocated) {
  v1::AllocateRequest alloc;
  alloc.set_namespace_id(ns_.id);
  alloc.set_keys(Keys(1));
  v1::AllocateResponse grant;
  ASSERT_TRUE(stub_->Allocate(Ctx().get(), alloc, &grant).ok());
  v1::CommitRequest commit;
  commit.set_lease_id(grant.lease_id());
  commit.set_keys(Keys(1));  // a key this lease never allocated
  v1::CommitResponse done;
  ExpectError(stub_->Commit(Ctx().get(), commit, &done), grpc::StatusCode::FAILED_PRECONDITION,
              "keys[0]");
  commit.set_lease_id(0xdeadbeef);
  ExpectError(stub_->Commit(Ctx().get(), commit, &done), grpc::StatusCode::NOT_FOUND, "lease_id");
}

TEST_F(BadInputTest, ReleaseOfALeaseNotHeld) {
  v1::ReleaseRequest req;
  req.add_lease_ids(42);
  v1::ReleaseResponse resp;
  ExpectError(stub_->Release(Ctx().get(), req, &resp), grpc::StatusCode::NOT_FOUND, "lease_ids[0]");
}

TEST_F(BadInputTest, OversizeBatch) {
  v1::AcquireRequest req;
  req.set_namespace_id(ns_.id);
  req.set_keys(Keys(1025));
  v1::AcquireResponse resp;
  ExpectError(stub_->Acquire(Ctx().get(), req, &resp), grpc::StatusCode::INVALID_ARGUMENT,
              "keys: 1025 keys is over the batch limit");
  v1::ListBlocksRequest list;
  list.set_limit(1000000);
  v1::ListBlocksResponse blocks;
  ExpectError(stub_->ListBlocks(Ctx().get(), list, &blocks), grpc::StatusCode::INVALID_ARGUMENT,
              "limit");
}

TEST_F(BadInputTest, MalformedKeys) {
  v1::AllocateRequest req;
  req.set_namespace_id(ns_.id);
  req.set_keys(std::string(17, 'x'));
  v1::AllocateResponse resp;
  ExpectError(stub_->Allocate(Ctx().get(), req, &resp), grpc::StatusCode::INVALID_ARGUMENT,
              "keys: length 17");
  req.set_keys(Keys(1));
  req.set_parent_key(Keys(2));
  ExpectError(stub_->Allocate(Ctx().get(), req, &resp), grpc::StatusCode::INVALID_ARGUMENT,
              "parent_key");
  v1::DropRequest drop;
  drop.set_namespace_id(ns_.id);
  drop.set_all(true);
  drop.set_keys(Keys(1));
  v1::DropResponse dropped;
  ExpectError(stub_->Drop(Ctx().get(), drop, &dropped), grpc::StatusCode::INVALID_ARGUMENT, "keys");
}

TEST_F(BadInputTest, GarbageOnTheSocket) {
  for (const std::string& path : {daemon_->socket_path(), daemon_->socket_path() + ".arena"}) {
    for (int round = 0; round < 3; ++round) {
      int fd = socket(AF_UNIX, SOCK_STREAM, 0);
      ASSERT_GE(fd, 0);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
      ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
      std::string junk = round == 0 ? "GET / HTTP/1.1\r\n\r\n" : std::string(4096, '\xff');
      if (round == 2) junk = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + std::string(64, '\x07');
      // The daemon may already have closed it: no SIGPIPE for us.
      (void)!send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
      close(fd);
    }
  }
  // TearDown checks the daemon still answers.
}

TEST(ListenTest, AdminCallsOverTcpOnLoopback) {
  auto daemon = LocalDaemon::Start(BinPath("kvtierd"),
                                   {"--dram-capacity", "8MiB", "--listen", "127.0.0.1:0"});
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  const std::string& line = (*daemon)->ready_line();
  const size_t at = line.find("listen=127.0.0.1:");
  ASSERT_NE(at, std::string::npos) << line;
  const int port = std::atoi(line.c_str() + at + std::strlen("listen=127.0.0.1:"));
  ASSERT_GT(port, 0) << line;
  auto stub = v1::KvTier::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::StatsResponse stats;
  ASSERT_TRUE(stub->Stats(&ctx, v1::StatsRequest(), &stats).ok());
  ASSERT_EQ(stats.tiers_size(), 1);
  EXPECT_EQ(stats.tiers(0).capacity_bytes(), 8u << 20);
}

}  // namespace
}  // namespace kvtier::testing
