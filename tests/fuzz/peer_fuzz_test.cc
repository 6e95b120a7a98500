// Fuzzes the peer service's decoders: random, half-valid Peer requests (headers with right,
// wrong and missing roster versions, malformed key batches, pins of present and absent blocks,
// unpins of real and made-up leases) against a real PeerService over gRPC. Every call must come
// back with a status and a message (no crash, no hang), and afterwards nothing stays pinned.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <random>

#include "common/block_key.h"
#include "kvtier/v1/peer.grpc.pb.h"
#include "server/cluster/cluster_node.h"
#include "server/service/peer_service.h"

namespace kvtier {
namespace {

// Pulls never happen here (a one-member cluster); the puller only has to exist.
class NoPuller final : public ArenaPuller {
 public:
  const std::string& LocalInfo() const override { return info_; }
  std::string Mode() const override { return "none (fuzz)"; }
  void Pull(const std::string&, std::vector<PullOp>, int,
            std::function<void(absl::Status)> done) override {
    done(absl::UnavailableError("no transport in the fuzz test"));
  }

 private:
  std::string info_ = "fuzz";
};

// The other members are never called back in this test; any call fails at once.
class DeadChannel final : public PeerChannel {
 public:
  void Hello(uint64_t, uint64_t, Done<PeerHello> done) override { done(Down()); }
  void UpdateDirectory(uint64_t, std::vector<KeyBatch>, std::vector<KeyBatch>,
                       Done<uint32_t> done) override {
    done(Down());
  }
  void LookupDirectory(uint64_t, uint64_t, std::vector<Key128>,
                       Done<std::vector<std::vector<std::string>>> done) override {
    done(Down());
  }
  void Pin(uint64_t, uint64_t, std::vector<Key128>, uint32_t, Done<PinResult> done) override {
    done(Down());
  }
  void Unpin(uint64_t, std::vector<uint64_t>, Done<uint32_t> done) override { done(Down()); }

 private:
  static absl::Status Down() { return absl::UnavailableError("not reachable in the fuzz test"); }
};

class PeerFuzzTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kVersion = 77;
  static constexpr uint64_t kBlock = 4096;

  void SetUp() override {
    const char* env = std::getenv("KVTIER_FUZZ_SEED");
    seed_ = env ? std::strtoull(env, nullptr, 10) : std::random_device{}();
    std::printf("KVTIER_FUZZ_SEED=%llu\n", static_cast<unsigned long long>(seed_));
    rng_.seed(seed_);
    StoreOptions options;
    options.now_ms = [this] { return now_ms_.load(); };
    options.max_batch_keys = 256;
    arena_.resize(16ULL << 20);
    store_ = std::make_unique<BlockStore>(arena_.size(), options);
    NamespaceLayout layout;
    layout.model_id = "peer-fuzz";
    layout.block_bytes = kBlock;
    bool created = false;
    ns_ = (*store_->RegisterNamespace(layout, &created))->id;
    // Blocks 0..23 of the key pool exist, so pins find some.
    std::vector<Key128> present;
    for (uint64_t i = 0; i < 24; ++i) present.push_back(Key128{i, 7});
    auto grant = store_->Allocate(ns_, present, std::nullopt, 0);
    ASSERT_TRUE(grant.ok());
    ASSERT_TRUE(store_->Commit(grant->lease_id, {}, {}).ok());

    ClusterOptions copts;
    copts.self_id = "self";
    cluster_ =
        std::make_unique<ClusterNode>(copts, store_.get(), &puller_, arena_.data(), arena_.size(),
                                      [](const Member&) -> std::unique_ptr<PeerChannel> {
                                        return std::make_unique<DeadChannel>();
                                      });
    Roster roster;
    roster.version = kVersion;
    roster.members.push_back(Member{"self", "127.0.0.1:1", 0});
    roster.members.push_back(Member{"peer-a", "127.0.0.1:2", 1});
    roster.members.push_back(Member{"peer-b", "127.0.0.1:3", 2});
    ASSERT_TRUE(cluster_->SetRoster(roster).ok());
    service_ = std::make_unique<PeerService>(cluster_.get(), 256);

    dir_ =
        std::filesystem::temp_directory_path() / ("kvtier-peer-fuzz-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    const std::string socket = "unix:" + (dir_ / "p.sock").string();
    grpc::ServerBuilder builder;
    builder.AddListeningPort(socket, grpc::InsecureServerCredentials());
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::Peer::NewStub(grpc::CreateChannel(socket, grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    server_->Shutdown();
    cluster_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::string Bytes() {
    const size_t n = rng_() % 3 == 0 ? 16 * (rng_() % 20) : rng_() % 400;
    std::string s(n, '\0');
    for (char& c : s) c = static_cast<char>(rng_());
    return s;
  }
  std::string PoolKeys() {
    std::string s;
    const size_t n = rng_() % 12;
    for (size_t i = 0; i < n; ++i) AppendKey(Key128{rng_() % 32, 7}, &s);
    return s;
  }
  std::string Keys() { return rng_() % 3 == 0 ? Bytes() : PoolKeys(); }
  uint64_t Ns() { return rng_() % 4 == 0 ? rng_() : ns_; }
  // A header that is right most of the time: otherwise missing, empty-sender or stale.
  void FillHeader(bool* has, v1::PeerHeader* h) {
    switch (rng_() % 8) {
      case 0:
        *has = false;
        return;
      case 1:
        h->set_roster_version(kVersion + 1 + rng_() % 5);
        break;
      case 2:
        h->set_roster_version(0);
        break;
      default:
        h->set_roster_version(kVersion);
    }
    *has = true;
    static const char* kFrom[] = {"", "peer-a", "peer-b", "stranger"};
    h->set_from_id(kFrom[rng_() % 10 == 0 ? (rng_() % 2 ? 0 : 3) : 1 + rng_() % 2]);
  }

  grpc::Status Call(int method) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    bool has = true;
    switch (method) {
      case 0: {
        v1::HelloRequest req;
        FillHeader(&has, req.mutable_header());
        if (!has) req.clear_header();
        v1::HelloResponse resp;
        return stub_->Hello(&ctx, req, &resp);
      }
      case 1: {
        v1::UpdateDirectoryRequest req;
        FillHeader(&has, req.mutable_header());
        if (!has) req.clear_header();
        for (size_t i = rng_() % 4; i > 0; --i) {
          auto* b = rng_() % 2 ? req.add_gained() : req.add_lost();
          b->set_namespace_id(Ns());
          b->set_keys(Keys());
        }
        v1::UpdateDirectoryResponse resp;
        return stub_->UpdateDirectory(&ctx, req, &resp);
      }
      case 2: {
        v1::LookupDirectoryRequest req;
        FillHeader(&has, req.mutable_header());
        if (!has) req.clear_header();
        req.set_namespace_id(Ns());
        req.set_keys(rng_() % 20 == 0 ? std::string(16 * 300, 'k') : Keys());
        v1::LookupDirectoryResponse resp;
        grpc::Status s = stub_->LookupDirectory(&ctx, req, &resp);
        if (s.ok() && resp.holders_size() * 16 != static_cast<int>(req.keys().size())) {
          return grpc::Status(grpc::StatusCode::INTERNAL, "holders not one per key");
        }
        return s;
      }
      case 3: {
        v1::PinRequest req;
        FillHeader(&has, req.mutable_header());
        if (!has) req.clear_header();
        req.set_namespace_id(Ns());
        req.set_keys(Keys());
        req.set_lease_ms(rng_() % 4 == 0 ? static_cast<uint32_t>(rng_()) : rng_() % 5000);
        v1::PinResponse resp;
        grpc::Status s = stub_->Pin(&ctx, req, &resp);
        if (s.ok() && resp.lease_id() != 0) leases_.push_back(resp.lease_id());
        if (s.ok() && resp.offsets_size() != resp.checksums_size()) {
          return grpc::Status(grpc::StatusCode::INTERNAL, "a checksum per offset expected");
        }
        return s;
      }
      default: {
        v1::UnpinRequest req;
        FillHeader(&has, req.mutable_header());
        if (!has) req.clear_header();
        for (size_t i = rng_() % 3; i > 0; --i) {
          req.add_lease_ids(!leases_.empty() && rng_() % 2 ? leases_[rng_() % leases_.size()]
                                                           : rng_());
        }
        v1::UnpinResponse resp;
        return stub_->Unpin(&ctx, req, &resp);
      }
    }
  }

  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  std::atomic<int64_t> now_ms_{1'000'000};
  std::vector<std::byte> arena_;
  std::unique_ptr<BlockStore> store_;
  NoPuller puller_;
  uint64_t ns_ = 0;
  std::unique_ptr<ClusterNode> cluster_;
  std::unique_ptr<PeerService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Peer::Stub> stub_;
  std::filesystem::path dir_;
  std::vector<uint64_t> leases_;
};

TEST_F(PeerFuzzTest, RandomPeerRequestsGetStatusesAndNothingStaysPinned) {
  constexpr int kCalls = 3000;
  int ok = 0;
  for (int i = 0; i < kCalls; ++i) {
    grpc::Status s = Call(static_cast<int>(rng_() % 5));
    ASSERT_NE(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << "call " << i;
    ASSERT_NE(s.error_code(), grpc::StatusCode::UNAVAILABLE) << "call " << i;
    ASSERT_NE(s.error_code(), grpc::StatusCode::INTERNAL)
        << "call " << i << ": " << s.error_message();
    if (s.ok()) {
      ++ok;
    } else {
      EXPECT_FALSE(s.error_message().empty()) << "call " << i << " failed without a message";
    }
  }
  EXPECT_GT(ok, kCalls / 5) << "the fuzzer hardly ever made a valid request";
  EXPECT_GT(leases_.size(), 0u) << "no pin ever succeeded";
  // Every pin ends: by Unpin or by its deadline.
  now_ms_ += 100'000'000;
  store_->ExpireLeases();
  EXPECT_EQ(store_->Stats().leases, 0u);
  // The 24 blocks are still there and readable.
  std::vector<Key128> present;
  for (uint64_t i = 0; i < 24; ++i) present.push_back(Key128{i, 7});
  EXPECT_EQ(store_->Peek(ns_, present)->prefix_blocks, 24u);
}

}  // namespace
}  // namespace kvtier
