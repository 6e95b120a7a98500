// Several real kvtierd processes on loopback forming one cluster with a static roster: blocks
// saved through one daemon are found and loaded through another, the bytes pulled over UCX.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <random>

#include "common/block_key.h"
#include "common/free_port.h"
#include "common/local_daemon.h"
#include "kvtier/client.h"
#include "kvtier/v1/peer.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/support/bin_path.h"
#include "tests/support/local_etcd.h"
#include "tests/support/random_bytes.h"
#include "tests/support/wait.h"

namespace kvtier::testing {
namespace {

constexpr uint64_t kBlock = 256 << 10;

struct Member {
  std::string id;
  std::string address;
  std::unique_ptr<LocalDaemon> daemon;
  std::unique_ptr<Client> client;
};

class ClusterTest : public ::testing::TestWithParam<std::string> {
 protected:
  // Starts `n` daemons a, b, c... that list each other as static peers.
  void StartCluster(size_t n, const std::vector<std::string>& extra = {}) {
    std::string peers;
    for (size_t i = 0; i < n; ++i) {
      Member m;
      m.id = std::string(1, static_cast<char>('a' + i));
      m.address = "127.0.0.1:" + std::to_string(FreeTcpPort());
      peers += (i ? "," : "") + m.id + "@" + m.address;
      members_.push_back(std::move(m));
    }
    peers_ = peers;
    extra_ = extra;
    for (Member& m : members_) StartMember(m);
  }

  void StartMember(Member& m) {
    std::vector<std::string> args = {"--dram-capacity",   "64MiB", "--node-id", m.id,
                                     "--peers",           peers_,  "--ucx-tls", GetParam(),
                                     "--peer-timeout-ms", "2000"};
    args.insert(args.end(), extra_.begin(), extra_.end());
    auto d = LocalDaemon::Start(BinPath("kvtierd"), args);
    ASSERT_TRUE(d.ok()) << d.status();
    m.daemon = std::move(*d);
    ClientOptions options;
    options.socket_path = m.daemon->socket_path();
    ASSERT_TRUE(Client::Connect(options, &m.client).ok());
  }

  Namespace Register(Client& client) {
    NamespaceLayout layout;
    layout.model_id = "cluster-test";
    layout.block_bytes = kBlock;
    Namespace ns;
    EXPECT_TRUE(client.RegisterNamespace(layout, &ns).ok());
    return ns;
  }

  // Saves a chain of `n` blocks with bytes from `seed` through `client`.
  std::vector<BlockKey> SaveChain(Client& client, const Namespace& ns, size_t n, uint64_t seed) {
    std::vector<BlockKey> keys(n);
    std::mt19937_64 rng(seed);
    for (BlockKey& k : keys) k = {rng(), rng()};
    std::vector<std::vector<std::byte>> data;
    std::vector<const void*> ptrs;
    for (size_t i = 0; i < n; ++i) data.push_back(RandomBytes(kBlock, seed * 1000 + i));
    for (auto& d : data) ptrs.push_back(d.data());
    size_t saved = 0;
    Status s = client.Save(ns, keys, ptrs, &saved);
    EXPECT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(saved, n);
    return keys;
  }

  size_t PoolPrefix(Client& client, const Namespace& ns, const std::vector<BlockKey>& keys,
                    LookupResult* out = nullptr) {
    LookupResult r;
    if (!client.Lookup(ns.id, keys, &r).ok()) return 0;
    if (out) *out = r;
    return r.prefix_blocks;
  }

  // Loads `keys` through `client` and checks every loaded block against its seed.
  size_t LoadAndCheck(Client& client, const Namespace& ns, const std::vector<BlockKey>& keys,
                      uint64_t seed) {
    std::vector<std::vector<std::byte>> out(keys.size(), std::vector<std::byte>(kBlock));
    std::vector<void*> ptrs;
    for (auto& o : out) ptrs.push_back(o.data());
    size_t loaded = 0;
    Status s = client.Load(ns, keys, ptrs, &loaded);
    EXPECT_TRUE(s.ok()) << s.ToString();
    for (size_t i = 0; i < loaded; ++i) {
      EXPECT_TRUE(out[i] == RandomBytes(kBlock, seed * 1000 + i)) << "block " << i;
    }
    return loaded;
  }

  nlohmann::json ClusterJson(const Member& m) {
    ProcessResult r = RunProgram(
        {BinPath("kvtier"), "--socket", m.daemon->socket_path(), "cluster", "--json"}, 20);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    return nlohmann::json::parse(r.output, nullptr, false);
  }

  std::vector<Member> members_;
  std::string peers_;
  std::vector<std::string> extra_;
};

TEST_P(ClusterTest, ChainSavedOnOneDaemonIsLoadedThroughAnother) {
  StartCluster(3);
  Client& a = *members_[0].client;
  Client& b = *members_[1].client;
  const Namespace ns = Register(a);
  ASSERT_EQ(Register(b).id, ns.id);  // namespace ids are a function of the layout
  const std::vector<BlockKey> keys = SaveChain(a, ns, 40, 7);

  // Announcements to the directories are asynchronous (batched every few ms).
  LookupResult found;
  ASSERT_TRUE(
      WaitUntil([&] { return PoolPrefix(b, ns, keys, &found) == keys.size(); }, absl::Seconds(10)));
  for (Tier t : found.tiers) EXPECT_EQ(t, Tier::kRemote);

  EXPECT_EQ(LoadAndCheck(b, ns, keys, 7), keys.size());
  // Now local to b as well.
  ASSERT_TRUE(b.Lookup(ns.id, keys, &found).ok());
  EXPECT_EQ(found.tiers[0], Tier::kDram);
  DaemonStats stats;
  ASSERT_TRUE(b.Stats(&stats).ok());
  EXPECT_EQ(stats.remote_pulls, keys.size());
  EXPECT_EQ(stats.remote_pull_bytes, keys.size() * kBlock);
  EXPECT_EQ(stats.remote_pull_failures, 0u);

  // The CLI shows the members, their state and what was pulled from whom.
  nlohmann::json j = ClusterJson(members_[1]);
  ASSERT_TRUE(j.is_object());
  ASSERT_EQ(j["members"].size(), 3u);
  EXPECT_EQ(j["self"], "b");
  for (const auto& m : j["members"]) {
    if (m["id"] == "a") {
      EXPECT_EQ(m["state"], "alive");
      EXPECT_EQ(m["bytes_in"], keys.size() * kBlock);
      EXPECT_EQ(m["address"], members_[0].address);
    }
    if (m["id"] == "b") {
      EXPECT_EQ(m["state"], "self");
    }
  }
  EXPECT_NE(j["transport"].get<std::string>().find("tls="), std::string::npos) << j.dump();
  // Holder a keeps nothing pinned after the pull.
  ASSERT_TRUE(WaitUntil(
      [&] {
        DaemonStats s;
        return a.Stats(&s).ok() && s.leases == 0;
      },
      absl::Seconds(5)));
}

TEST_P(ClusterTest, KilledDaemonCostsMissesNeverHangs) {
  StartCluster(3);
  Client& a = *members_[0].client;
  Client& b = *members_[1].client;
  Client& c = *members_[2].client;
  const Namespace ns = Register(a);
  Register(b);
  Register(c);
  const std::vector<BlockKey> on_a = SaveChain(a, ns, 20, 11);
  const std::vector<BlockKey> on_c = SaveChain(c, ns, 20, 12);
  ASSERT_TRUE(
      WaitUntil([&] { return PoolPrefix(b, ns, on_a) == 20 && PoolPrefix(b, ns, on_c) == 20; },
                absl::Seconds(10)));

  members_[2].daemon->Kill();  // kill -9: no goodbye
  // Blocks c held are misses now; lookups and loads answer within the peer deadline.
  const absl::Time start = absl::Now();
  EXPECT_EQ(LoadAndCheck(b, ns, on_c, 12), 0u);
  EXPECT_LT(absl::Now() - start, absl::Seconds(8));
  // Blocks a holds still load (bytes checked), up to the first segment whose directory was c
  // (a static roster has no failure detection: that segment is a miss until c is back).
  EXPECT_LE(LoadAndCheck(b, ns, on_a, 11), on_a.size());
  // b's own and local blocks are unaffected.
  const std::vector<BlockKey> on_b = SaveChain(b, ns, 5, 13);
  EXPECT_EQ(LoadAndCheck(b, ns, on_b, 13), 5u);
  nlohmann::json j = ClusterJson(members_[1]);
  ASSERT_TRUE(WaitUntil(
      [&] {
        j = ClusterJson(members_[1]);
        for (const auto& m : j["members"]) {
          if (m["id"] == "c") return m["state"] == "unreachable";
        }
        return false;
      },
      absl::Seconds(10)))
      << j.dump();
}

TEST_P(ClusterTest, RestartedDaemonGetsItsDirectoryEntriesBack) {
  StartCluster(3);
  Client& a = *members_[0].client;
  Client& b = *members_[1].client;
  const Namespace ns = Register(a);
  Register(b);
  // 40 blocks with a segment boundary every 4: 10 segments, whose directories are spread over
  // a, b and c.
  std::vector<BlockKey> keys(40);
  std::mt19937_64 rng(31);
  for (size_t i = 0; i < keys.size(); ++i) {
    keys[i] = {rng(), rng()};
    keys[i].lo = i % 4 == 0 ? keys[i].lo & ~uint64_t{255} : keys[i].lo | 1;
  }
  std::vector<std::byte> data = RandomBytes(kBlock, 41);
  std::vector<const void*> src(keys.size(), data.data());
  ASSERT_TRUE(a.Save(ns, keys, src).ok());
  ASSERT_TRUE(WaitUntil([&] { return PoolPrefix(b, ns, keys) == keys.size(); }, absl::Seconds(10)));

  // c dies and comes back on the same address with an empty directory; a notices its new
  // incarnation on its next probe (every second) and re-announces what c is the directory of.
  members_[2].daemon->Kill();
  StartMember(members_[2]);
  EXPECT_TRUE(WaitUntil([&] { return PoolPrefix(b, ns, keys) == keys.size(); }, absl::Seconds(10)));
}

TEST_P(ClusterTest, BadPeerRequestsGetCleanErrors) {
  StartCluster(2);
  auto channel = grpc::CreateChannel(members_[0].address, grpc::InsecureChannelCredentials());
  auto stub = v1::Peer::NewStub(channel);
  auto deadline = [](grpc::ClientContext* ctx) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  };
  // Learn the roster version the honest way.
  v1::HelloResponse hello;
  {
    grpc::ClientContext ctx;
    deadline(&ctx);
    ASSERT_TRUE(stub->Hello(&ctx, v1::HelloRequest(), &hello).ok());
    EXPECT_EQ(hello.node_id(), "a");
    EXPECT_FALSE(hello.transport_info().empty());
  }
  {  // no header
    grpc::ClientContext ctx;
    deadline(&ctx);
    v1::LookupDirectoryResponse resp;
    grpc::Status s = stub->LookupDirectory(&ctx, v1::LookupDirectoryRequest(), &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("header"), std::string::npos) << s.error_message();
  }
  {  // wrong roster version
    grpc::ClientContext ctx;
    deadline(&ctx);
    v1::PinRequest req;
    req.mutable_header()->set_roster_version(hello.roster_version() + 1);
    req.mutable_header()->set_from_id("intruder");
    v1::PinResponse resp;
    grpc::Status s = stub->Pin(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_NE(s.error_message().find("roster_version"), std::string::npos) << s.error_message();
  }
  {  // keys of a bad length
    grpc::ClientContext ctx;
    deadline(&ctx);
    v1::PinRequest req;
    req.mutable_header()->set_roster_version(hello.roster_version());
    req.mutable_header()->set_from_id("b");
    req.set_keys(std::string(17, 'x'));
    v1::PinResponse resp;
    grpc::Status s = stub->Pin(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("keys"), std::string::npos) << s.error_message();
  }
  {  // unknown namespace / unknown block: an error, or nothing pinned
    const Namespace ns = Register(*members_[0].client);
    for (uint64_t ns_id : {uint64_t{12345}, ns.id}) {
      grpc::ClientContext ctx;
      deadline(&ctx);
      v1::PinRequest req;
      req.mutable_header()->set_roster_version(hello.roster_version());
      req.mutable_header()->set_from_id("b");
      req.set_namespace_id(ns_id);
      const Key128 k{1, 2};
      req.set_keys(EncodeKeys(&k, 1));
      v1::PinResponse resp;
      grpc::Status s = stub->Pin(&ctx, req, &resp);
      if (ns_id == 12345) {
        EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
      } else {
        ASSERT_TRUE(s.ok()) << s.error_message();
        EXPECT_EQ(resp.lease_id(), 0u);
        EXPECT_EQ(resp.offsets_size(), 0);
      }
    }
  }
  {  // a directory update with a bad batch changes nothing and names the field
    grpc::ClientContext ctx;
    deadline(&ctx);
    v1::UpdateDirectoryRequest req;
    req.mutable_header()->set_roster_version(hello.roster_version());
    req.mutable_header()->set_from_id("b");
    req.add_gained()->set_keys(std::string(5, 'x'));
    v1::UpdateDirectoryResponse resp;
    grpc::Status s = stub->UpdateDirectory(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("gained[0].keys"), std::string::npos) << s.error_message();
  }
  {  // a directory update from a daemon that is not a member is refused
    grpc::ClientContext ctx;
    deadline(&ctx);
    v1::UpdateDirectoryRequest req;
    req.mutable_header()->set_roster_version(hello.roster_version());
    req.mutable_header()->set_from_id("intruder");
    const Key128 k{3, 4};
    req.add_gained()->set_keys(EncodeKeys(&k, 1));
    v1::UpdateDirectoryResponse resp;
    grpc::Status s = stub->UpdateDirectory(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
    EXPECT_NE(s.error_message().find("header.from_id"), std::string::npos) << s.error_message();
  }
  // The daemon is still serving.
  DaemonStats stats;
  EXPECT_TRUE(members_[0].client->Stats(&stats).ok());
}

TEST(ClusterSingleNodeTest, SaysSoInClusterCommand) {
  auto d = LocalDaemon::Start(BinPath("kvtierd"), {"--dram-capacity", "16MiB"});
  ASSERT_TRUE(d.ok()) << d.status();
  ProcessResult r =
      RunProgram({BinPath("kvtier"), "--socket", (*d)->socket_path(), "cluster", "--json"}, 20);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  nlohmann::json j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["enabled"], false);
  EXPECT_TRUE(j["members"].empty());
}

// Membership through a real etcd: daemons find each other, a killed one leaves every view
// within its lease TTL, and etcd going away keeps the last view.
TEST(ClusterEtcdTest, MembershipFailoverAndEtcdOutage) {
  if (!LocalEtcd::Available()) GTEST_SKIP() << "etcd is not installed (scripts/deps installs it)";
  constexpr uint64_t kSmall = 16 << 10;  // long chains: several segments, several directories
  auto etcd = LocalEtcd::Start();
  ASSERT_TRUE(etcd.ok()) << etcd.status();
  struct Node {
    std::unique_ptr<LocalDaemon> daemon;
    std::unique_ptr<Client> client;
  };
  std::vector<Node> nodes(3);
  for (size_t i = 0; i < nodes.size(); ++i) {
    auto d = LocalDaemon::Start(
        BinPath("kvtierd"),
        {"--dram-capacity", "64MiB", "--node-id", std::string(1, static_cast<char>('a' + i)),
         "--listen", "127.0.0.1:0", "--etcd", (*etcd)->endpoint(), "--cluster", "itest",
         "--etcd-ttl", "2", "--ucx-tls", "tcp", "--peer-timeout-ms", "1000"});
    ASSERT_TRUE(d.ok()) << d.status();
    nodes[i].daemon = std::move(*d);
    ClientOptions options;
    options.socket_path = nodes[i].daemon->socket_path();
    ASSERT_TRUE(Client::Connect(options, &nodes[i].client).ok());
  }
  auto view = [](Node& n) {
    ClusterInfo info;
    EXPECT_TRUE(n.client->Cluster(&info).ok());
    return info;
  };
  ASSERT_TRUE(WaitUntil(
      [&] {
        const ClusterInfo a = view(nodes[0]), b = view(nodes[1]), c = view(nodes[2]);
        return a.members.size() == 3 && a.roster_version == b.roster_version &&
               b.roster_version == c.roster_version && c.members.size() == 3;
      },
      absl::Seconds(10)));
  EXPECT_EQ(view(nodes[0]).membership, "etcd " + (*etcd)->endpoint());

  NamespaceLayout layout;
  layout.model_id = "cluster-etcd-test";
  layout.block_bytes = kSmall;
  Namespace ns;
  for (Node& n : nodes) ASSERT_TRUE(n.client->RegisterNamespace(layout, &ns).ok());
  auto save = [&](Client& c, size_t n, uint64_t seed) {
    std::vector<BlockKey> keys(n);
    std::mt19937_64 rng(seed);
    for (BlockKey& k : keys) k = {rng(), rng()};
    std::vector<std::vector<std::byte>> data;
    std::vector<const void*> ptrs;
    for (size_t i = 0; i < n; ++i) data.push_back(RandomBytes(kSmall, seed * 1000 + i));
    for (auto& d : data) ptrs.push_back(d.data());
    EXPECT_TRUE(c.Save(ns, keys, ptrs).ok());
    return keys;
  };
  auto prefix = [&](Client& c, const std::vector<BlockKey>& keys) {
    LookupResult r;
    return c.Lookup(ns.id, keys, &r).ok() ? r.prefix_blocks : 0;
  };
  auto load = [&](Client& c, const std::vector<BlockKey>& keys, uint64_t seed) {
    std::vector<std::vector<std::byte>> out(keys.size(), std::vector<std::byte>(kSmall));
    std::vector<void*> ptrs;
    for (auto& o : out) ptrs.push_back(o.data());
    size_t loaded = 0;
    EXPECT_TRUE(c.Load(ns, keys, ptrs, &loaded).ok());
    for (size_t i = 0; i < loaded; ++i) {
      EXPECT_TRUE(out[i] == RandomBytes(kSmall, seed * 1000 + i)) << "block " << i;
    }
    return loaded;
  };
  const auto on_a = save(*nodes[0].client, 30, 21);
  const auto on_c = save(*nodes[2].client, 30, 22);
  ASSERT_TRUE(WaitUntil([&] { return prefix(*nodes[1].client, on_a) == 30; }, absl::Seconds(10)));
  EXPECT_EQ(load(*nodes[1].client, on_a, 21), 30u);
  ASSERT_TRUE(WaitUntil([&] { return prefix(*nodes[1].client, on_c) == 30; }, absl::Seconds(10)));
  // Saved on a, not read by b: segments whose directory was c must be re-announced to their new
  // directories after c leaves.
  const auto on_a2 = save(*nodes[0].client, 1000, 23);
  ASSERT_TRUE(
      WaitUntil([&] { return prefix(*nodes[1].client, on_a2) == 1000; }, absl::Seconds(10)));

  // kill -9 c: within its TTL (2 s) it leaves every view, and nothing hangs meanwhile.
  nodes[2].daemon->Kill();
  const absl::Time killed = absl::Now();
  ASSERT_TRUE(WaitUntil(
      [&] { return view(nodes[0]).members.size() == 2 && view(nodes[1]).members.size() == 2; },
      absl::Seconds(8)));
  EXPECT_LT(absl::Now() - killed, absl::Seconds(6));
  EXPECT_EQ(prefix(*nodes[1].client, on_c), 0u);  // what only c held is a miss
  // a's blocks are found again once their directories moved off c (re-announced).
  ASSERT_TRUE(
      WaitUntil([&] { return prefix(*nodes[1].client, on_a2) == 1000; }, absl::Seconds(10)));
  EXPECT_EQ(load(*nodes[1].client, on_a2, 23), 1000u);

  // etcd goes away: the daemons keep their last view and keep serving, and say so.
  (*etcd)->Kill();
  ASSERT_TRUE(WaitUntil(
      [&] { return view(nodes[1]).membership_status.find("unreachable") != std::string::npos; },
      absl::Seconds(10)));
  EXPECT_EQ(view(nodes[1]).members.size(), 2u);
  const auto on_a3 = save(*nodes[0].client, 10, 24);
  ASSERT_TRUE(WaitUntil([&] { return prefix(*nodes[1].client, on_a3) == 10; }, absl::Seconds(10)));
  EXPECT_EQ(load(*nodes[1].client, on_a3, 24), 10u);
}

std::string TlsName(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = info.param;
  for (char& c : name) {
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

// Over TCP (active-message rendezvous) and over shared memory (RMA get).
INSTANTIATE_TEST_SUITE_P(Transports, ClusterTest, ::testing::Values("tcp", "posix,cma"), TlsName);

}  // namespace
}  // namespace kvtier::testing
