// Security of kvtierd against real daemons: mutual TLS on the TCP listener (--tls-*), and
// namespace restrictions (--allow-models) by unix peer credentials and by TLS client identity.
// Certificates are made for each test with the openssl command line (tests/support/test_certs).
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/local_daemon.h"
#include "kvtier/client.h"
#include "kvtier/v1/kvtier.grpc.pb.h"
#include "tests/support/bin_path.h"
#include "tests/support/random_bytes.h"
#include "tests/support/test_certs.h"
#include "tests/unit/client/temp_dir.h"

namespace kvtier::testing {
namespace {

// The TCP port in a ready line's " listen=127.0.0.1:PORT".
int ListenPort(const std::string& ready_line) {
  const std::string tag = " listen=127.0.0.1:";
  const size_t at = ready_line.find(tag);
  if (at == std::string::npos) return -1;
  const size_t start = at + tag.size();
  int port = -1;
  if (!absl::SimpleAtoi(ready_line.substr(start, ready_line.find(' ', start) - start), &port)) {
    return -1;
  }
  return port;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto ca = MakeTestCa(dir_.path(), "kvtier-ca");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = *ca;
    auto other_ca = MakeTestCa(dir_.path(), "other-ca");
    ASSERT_TRUE(other_ca.ok()) << other_ca.status();
    other_ca_ = *other_ca;
    for (auto [name, out] : {std::pair{"kvtierd", &server_}, std::pair{"engine-a", &client_a_},
                             std::pair{"engine-b", &client_b_}}) {
      auto cert = MakeTestCert(dir_.path(), ca_, name);
      ASSERT_TRUE(cert.ok()) << cert.status();
      *out = *cert;
    }
    auto intruder = MakeTestCert(dir_.path(), other_ca_, "intruder");
    ASSERT_TRUE(intruder.ok()) << intruder.status();
    intruder_ = *intruder;
  }

  std::vector<std::string> TlsArgs(const TestCert& cert, const TestCert& ca) {
    return {"--tls-cert", cert.cert, "--tls-key", cert.key, "--tls-ca", ca.cert};
  }

  // A daemon listening on TCP with mutual TLS (server_ signed by ca_), plus `extra` flags.
  void StartDaemon(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"--dram-capacity", "32MiB", "--listen", "127.0.0.1:0"};
    for (const std::string& a : TlsArgs(server_, ca_)) args.push_back(a);
    args.insert(args.end(), extra.begin(), extra.end());
    auto d = LocalDaemon::Start(BinPath("kvtierd"), args);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
    EXPECT_NE(daemon_->ready_line().find(" tls=mutual"), std::string::npos);
    port_ = ListenPort(daemon_->ready_line());
    ASSERT_GT(port_, 0) << daemon_->ready_line();
  }

  std::string Address() const { return "127.0.0.1:" + std::to_string(port_); }

  // Connects over TCP with `cert` (none when null), trusting `ca`.
  Status ConnectTcp(const TestCert* cert, const TestCert& ca, std::unique_ptr<Client>* out) {
    ClientOptions options;
    options.address = Address();
    options.map_arena = false;
    options.timeout_ms = 3000;
    if (cert != nullptr) {
      options.tls_cert = cert->cert;
      options.tls_key = cert->key;
      options.tls_ca = ca.cert;
    }
    return Client::Connect(options, out);
  }

  TempDir dir_;
  TestCert ca_, other_ca_, server_, client_a_, client_b_, intruder_;
  std::unique_ptr<LocalDaemon> daemon_;
  int port_ = 0;
};

TEST_F(TlsTest, ClientWithCertificateFromTheCaConnects) {
  StartDaemon();
  std::unique_ptr<Client> client;
  Status s = ConnectTcp(&client_a_, ca_, &client);
  ASSERT_TRUE(s.ok()) << s.ToString();
  DaemonStats stats;
  ASSERT_TRUE(client->Stats(&stats).ok());
  EXPECT_FALSE(stats.node_id.empty());
  // The CLI over TCP with the same files.
  ProcessResult r =
      RunProgram({BinPath("kvtier"), "--address", Address(), "--tls-cert", client_a_.cert,
                  "--tls-key", client_a_.key, "--tls-ca", ca_.cert, "status"},
                 20);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // The unix socket is unaffected.
  ClientOptions local;
  local.socket_path = daemon_->socket_path();
  std::unique_ptr<Client> unix_client;
  EXPECT_TRUE(Client::Connect(local, &unix_client).ok());
}

TEST_F(TlsTest, ClientWithoutCertificateIsRefused) {
  StartDaemon();
  // TLS with the right CA but no client certificate: the daemon ends the handshake.
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = [&] {
    std::ifstream in(ca_.cert);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  auto call = [&](const grpc::SslCredentialsOptions& options, v1::ArenaInfoResponse* info) {
    auto stub = v1::KvTier::NewStub(grpc::CreateChannel(Address(), grpc::SslCredentials(options)));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    return stub->GetArenaInfo(&ctx, v1::ArenaInfoRequest(), info);
  };
  v1::ArenaInfoResponse info;
  grpc::Status s = call(ssl, &info);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_TRUE(info.node_id().empty());
  // The same channel with a client certificate gets through: it was the certificate.
  auto read = [](const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  ssl.pem_cert_chain = read(client_a_.cert);
  ssl.pem_private_key = read(client_a_.key);
  s = call(ssl, &info);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_FALSE(info.node_id().empty());
}

TEST_F(TlsTest, ClientWithCertificateFromAnotherCaIsRefused) {
  StartDaemon();
  std::unique_ptr<Client> client;
  // Our certificate is not signed by the daemon's CA (we trust the right CA for the daemon).
  Status s = ConnectTcp(&intruder_, ca_, &client);
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("mutual TLS"), std::string::npos) << s.message();
  // The CLI says so too, and exits with "unreachable" (2) rather than hanging.
  ProcessResult r = RunProgram(
      {BinPath("kvtier"), "--address", Address(), "--tls-cert", intruder_.cert, "--tls-key",
       intruder_.key, "--tls-ca", ca_.cert, "--timeout-ms", "3000", "status"},
      20);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("mutual TLS"), std::string::npos) << r.output;
  // Trusting another CA than the one that signed the daemon's certificate fails as well.
  s = ConnectTcp(&client_a_, other_ca_, &client);
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
}

TEST_F(TlsTest, PlaintextToTlsListenerFailsCleanly) {
  StartDaemon();
  std::unique_ptr<Client> client;
  const auto start = std::chrono::steady_clock::now();
  Status s = ConnectTcp(nullptr, ca_, &client);
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("--tls-cert"), std::string::npos) << s.message();
  // It fails, not waits: well inside the call's deadline (3 s) plus slack.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_TRUE(daemon_->Alive());
}

TEST_F(TlsTest, BadTlsFilesAreStartUpErrorsNamingTheFlag) {
  const std::string socket = dir_.File("bad.sock");
  auto start = [&](std::vector<std::string> tls) {
    std::vector<std::string> argv = {BinPath("kvtierd"), "--socket", socket,
                                     "--dram-capacity",  "8MiB",     "--listen",
                                     "127.0.0.1:0"};
    argv.insert(argv.end(), tls.begin(), tls.end());
    return RunProgram(argv, 20);
  };
  ProcessResult r = start(
      {"--tls-cert", dir_.File("missing.pem"), "--tls-key", server_.key, "--tls-ca", ca_.cert});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--tls-cert: cannot read '" + dir_.File("missing.pem") + "'"),
            std::string::npos)
      << r.output;
  r = start({"--tls-cert", server_.cert, "--tls-key", client_a_.key, "--tls-ca", ca_.cert});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--tls-key: '" + client_a_.key + "' is not the private key"),
            std::string::npos)
      << r.output;
  r = start({"--tls-cert", server_.cert, "--tls-key", server_.key, "--tls-ca", server_.key});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--tls-ca: '" + server_.key + "' holds no PEM certificate"),
            std::string::npos)
      << r.output;
  r = start({"--tls-cert", server_.cert, "--tls-key", server_.key});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--tls-ca: missing"), std::string::npos) << r.output;
}

// --- namespace restrictions -------------------------------------------------------------------

NamespaceLayout Layout(const std::string& model) {
  NamespaceLayout layout;
  layout.model_id = model;
  layout.block_bytes = 64 << 10;
  return layout;
}

TEST_F(TlsTest, NamespacesAreOpenByDefault) {
  StartDaemon();
  std::unique_ptr<Client> tcp;
  ASSERT_TRUE(ConnectTcp(&client_b_, ca_, &tcp).ok());
  Namespace ns;
  EXPECT_TRUE(tcp->RegisterNamespace(Layout("anything-7b"), &ns).ok());
  LookupResult found;
  const std::vector<BlockKey> keys = {{1, 2}};
  EXPECT_TRUE(tcp->Lookup(ns.id, keys, &found).ok());
}

// Unix clients of this test run as our uid: allowed llama-* (and, by our gid, qwen-*); the TLS
// client "engine-a" mistral-*, "kvtierd" (used as an admin certificate here) everything;
// "engine-b" is named by no rule.
class RestrictedTest : public TlsTest {
 protected:
  void SetUp() override {
    TlsTest::SetUp();
    if (HasFatalFailure()) return;
    StartDaemon({"--allow-models", absl::StrCat("uid:", getuid(), "=llama-*"), "--allow-models",
                 absl::StrCat("uid:", getuid() + 1, "=secret-*"), "--allow-models",
                 absl::StrCat("gid:", getgid(), "=qwen-*"), "--allow-models",
                 "cert:engine-a=mistral-*", "--allow-models", "cert:kvtierd=*"});
    ASSERT_NE(daemon_->ready_line().find(" namespaces=restricted"), std::string::npos);
    ClientOptions local;
    local.socket_path = daemon_->socket_path();
    Status s = Client::Connect(local, &local_);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_TRUE(ConnectTcp(&server_, ca_, &admin_).ok());
  }

  std::unique_ptr<Client> local_, admin_;
};

TEST_F(RestrictedTest, UnixCallerUsesItsModelsAndIsRefusedOthers) {
  Namespace llama, qwen, denied;
  ASSERT_TRUE(local_->RegisterNamespace(Layout("llama-3-8b"), &llama).ok());
  ASSERT_TRUE(local_->RegisterNamespace(Layout("qwen-2-7b"), &qwen).ok());  // by gid
  // Data moves as usual in an allowed namespace.
  const std::vector<BlockKey> keys = {{11, 12}, {13, 14}};
  std::vector<std::vector<std::byte>> data = {RandomBytes(64 << 10, 1), RandomBytes(64 << 10, 2)};
  std::vector<const void*> in = {data[0].data(), data[1].data()};
  size_t saved = 0;
  ASSERT_TRUE(local_->Save(llama, keys, in, &saved).ok());
  EXPECT_EQ(saved, 2u);
  std::vector<std::vector<std::byte>> back(2, std::vector<std::byte>(64 << 10));
  std::vector<void*> outp = {back[0].data(), back[1].data()};
  size_t loaded = 0;
  ASSERT_TRUE(local_->Load(llama, keys, outp, &loaded).ok());
  EXPECT_EQ(loaded, 2u);
  EXPECT_EQ(back, data);

  // Another model: refused at registration, naming it.
  Status s = local_->RegisterNamespace(Layout("secret-70b"), &denied);
  EXPECT_EQ(s.code(), Status::Code::kPermissionDenied) << s.ToString();
  EXPECT_NE(s.message().find("layout.model_id"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("'secret-70b'"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find(absl::StrCat("uid ", getuid())), std::string::npos) << s.message();

  // A namespace someone else registered: every call naming it is refused.
  Namespace secret;
  ASSERT_TRUE(admin_->RegisterNamespace(Layout("secret-70b"), &secret).ok());
  LookupResult found;
  s = local_->Lookup(secret.id, keys, &found);
  EXPECT_EQ(s.code(), Status::Code::kPermissionDenied) << s.ToString();
  EXPECT_NE(s.message().find(absl::StrFormat("namespace %016x", secret.id)), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("'secret-70b'"), std::string::npos) << s.message();
  EXPECT_EQ(local_->Save(secret, keys, in, &saved).code(), Status::Code::kPermissionDenied);
  EXPECT_EQ(local_->Load(secret, keys, outp, &loaded).code(), Status::Code::kPermissionDenied);
  DropResult dropped;
  EXPECT_EQ(local_->DropAll(secret.id, &dropped).code(), Status::Code::kPermissionDenied);
  EXPECT_EQ(local_->Prefetch(secret.id, keys).code(), Status::Code::kPermissionDenied);
  std::vector<BlockEntry> blocks;
  EXPECT_EQ(local_->ListBlocks(secret.id, 0, &blocks).code(), Status::Code::kPermissionDenied);
  // Every namespace's blocks at once: only for callers allowed every model.
  EXPECT_EQ(local_->ListBlocks(0, 0, &blocks).code(), Status::Code::kPermissionDenied);
  EXPECT_TRUE(admin_->ListBlocks(0, 0, &blocks).ok());
  // Listing shows the allowed namespaces only.
  std::vector<NamespaceEntry> listed;
  ASSERT_TRUE(local_->ListNamespaces(&listed).ok());
  ASSERT_EQ(listed.size(), 2u);
  for (const NamespaceEntry& e : listed) EXPECT_NE(e.layout.model_id, "secret-70b");
  ASSERT_TRUE(admin_->ListNamespaces(&listed).ok());
  EXPECT_EQ(listed.size(), 3u);
}

TEST_F(RestrictedTest, LeasesOfAnotherModelCannotBeCommittedOrReleased) {
  Namespace secret;
  ASSERT_TRUE(admin_->RegisterNamespace(Layout("secret-70b"), &secret).ok());
  // A write lease in the secret namespace, taken over TCP by the admin (raw calls: the client
  // library does not hand out lease ids).
  grpc::SslCredentialsOptions ssl;
  auto read = [](const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  ssl.pem_root_certs = read(ca_.cert);
  ssl.pem_cert_chain = read(server_.cert);
  ssl.pem_private_key = read(server_.key);
  auto admin = v1::KvTier::NewStub(grpc::CreateChannel(Address(), grpc::SslCredentials(ssl)));
  v1::AllocateRequest alloc;
  alloc.set_namespace_id(secret.id);
  alloc.set_keys(std::string(16, '\x07'));
  v1::AllocateResponse grant;
  {
    grpc::ClientContext ctx;
    grpc::Status s = admin->Allocate(&ctx, alloc, &grant);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  auto local = v1::KvTier::NewStub(
      grpc::CreateChannel("unix:" + daemon_->socket_path(), grpc::InsecureChannelCredentials()));
  {
    grpc::ClientContext ctx;
    v1::CommitRequest commit;
    commit.set_lease_id(grant.lease_id());
    v1::CommitResponse resp;
    grpc::Status s = local->Commit(&ctx, commit, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
    EXPECT_TRUE(absl::StartsWith(s.error_message(), "lease_id: ")) << s.error_message();
  }
  {
    grpc::ClientContext ctx;
    v1::ReleaseRequest release;
    release.add_lease_ids(grant.lease_id());
    v1::ReleaseResponse resp;
    grpc::Status s = local->Release(&ctx, release, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  }
  // The owner still ends it.
  grpc::ClientContext ctx;
  v1::ReleaseRequest release;
  release.add_lease_ids(grant.lease_id());
  v1::ReleaseResponse resp;
  ASSERT_TRUE(admin->Release(&ctx, release, &resp).ok());
  EXPECT_EQ(resp.released(), 1u);
}

TEST_F(RestrictedTest, TlsClientsAreRestrictedByCertificateName) {
  Namespace mistral, llama;
  std::unique_ptr<Client> a, b;
  ASSERT_TRUE(ConnectTcp(&client_a_, ca_, &a).ok());
  ASSERT_TRUE(ConnectTcp(&client_b_, ca_, &b).ok());
  ASSERT_TRUE(a->RegisterNamespace(Layout("mistral-7b"), &mistral).ok());
  ASSERT_TRUE(local_->RegisterNamespace(Layout("llama-3-8b"), &llama).ok());
  const std::vector<BlockKey> keys = {{1, 2}};
  LookupResult found;
  EXPECT_TRUE(a->Lookup(mistral.id, keys, &found).ok());
  Status s = a->Lookup(llama.id, keys, &found);
  EXPECT_EQ(s.code(), Status::Code::kPermissionDenied) << s.ToString();
  EXPECT_NE(s.message().find("TLS client 'engine-a'"), std::string::npos) << s.message();
  // The unix caller (uid rule) may not use engine-a's model.
  EXPECT_EQ(local_->Lookup(mistral.id, keys, &found).code(), Status::Code::kPermissionDenied);
  // engine-b is named by no rule: nothing is allowed.
  Namespace any;
  s = b->RegisterNamespace(Layout("mistral-7b"), &any);
  EXPECT_EQ(s.code(), Status::Code::kPermissionDenied) << s.ToString();
  EXPECT_NE(s.message().find("'mistral-7b'"), std::string::npos) << s.message();
  // Calls that name no namespace stay open.
  DaemonStats stats;
  EXPECT_TRUE(b->Stats(&stats).ok());
}

TEST(AllowModelsFlag, BadRulesAreStartUpErrors) {
  TempDir dir;
  auto start = [&](const std::string& rule) {
    return RunProgram({BinPath("kvtierd"), "--socket", dir.File("k.sock"), "--dram-capacity",
                       "8MiB", "--allow-models", rule},
                      20);
  };
  ProcessResult r = start("llama-*");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--allow-models: 'llama-*': not PRINCIPAL=PATTERN"), std::string::npos)
      << r.output;
  r = start("user:no-such-user-kvtier=llama-*");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("no user named 'no-such-user-kvtier'"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace kvtier::testing
