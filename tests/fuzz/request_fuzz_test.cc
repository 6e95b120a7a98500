// Fuzzes the request decoders: thousands of random, half-valid requests of every method go to a
// real KvTierService over gRPC. Every call must come back with a status (no crash, no hang), and
// afterwards the store's books must balance: once every lease has expired, the bytes in use are
// exactly the slots of the ready blocks.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "common/block_key.h"
#include "kvtier/v1/kvtier.grpc.pb.h"
#include "server/dram/slab_allocator.h"
#include "server/service/kvtier_service.h"
#include "server/store/block_store.h"

namespace kvtier {
namespace {

class RequestFuzzTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* env = std::getenv("KVTIER_FUZZ_SEED");
    seed_ = env ? std::strtoull(env, nullptr, 10) : std::random_device{}();
    std::printf("KVTIER_FUZZ_SEED=%llu\n", static_cast<unsigned long long>(seed_));
    rng_.seed(seed_);
    StoreOptions options;
    options.now_ms = [this] { return now_ms_.load(); };
    options.max_batch_keys = 256;
    store_ = std::make_unique<BlockStore>(64ULL << 20, options);
    service_ = std::make_unique<KvTierService>(store_.get(),
                                               ServiceInfo{"fuzz", "0", "", 0, 0, 0, {}, {}, ""});
    dir_ = std::filesystem::temp_directory_path() / ("kvtier-fuzz-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    const std::string socket = "unix:" + (dir_ / "s.sock").string();
    grpc::ServerBuilder builder;
    builder.AddListeningPort(socket, grpc::InsecureServerCredentials());
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::KvTier::NewStub(grpc::CreateChannel(socket, grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    server_->Shutdown();
    std::filesystem::remove_all(dir_);
  }

  // Random bytes; the length is biased to small values and multiples of 16.
  std::string Bytes() {
    size_t n;
    switch (rng_() % 4) {
      case 0:
        n = rng_() % 40;
        break;
      case 1:
        n = 16 * (rng_() % 8);
        break;
      case 2:
        n = 16 * (rng_() % 300);  // around the batch limit of 256
        break;
      default:
        n = rng_() % 5000;
    }
    std::string s(n, '\0');
    for (char& c : s) c = static_cast<char>(rng_());
    return s;
  }
  // Keys that exist sometimes: drawn from a small pool.
  std::string PoolKeys() {
    std::string s;
    const size_t n = rng_() % 12;
    for (size_t i = 0; i < n; ++i) AppendKey(Key128{rng_() % 24, 7}, &s);
    return s;
  }
  uint64_t Namespace() {
    if (!namespaces_.empty() && rng_() % 4 != 0) return namespaces_[rng_() % namespaces_.size()];
    return rng_();
  }
  uint64_t LeaseId() {
    if (!leases_.empty() && rng_() % 3 != 0) return leases_[rng_() % leases_.size()];
    return rng_() % 3 == 0 ? 0 : rng_();
  }
  uint32_t Small() { return rng_() % 3 == 0 ? static_cast<uint32_t>(rng_()) : rng_() % 70; }
  std::string Text() {
    static const char* kWords[] = {"", "bf16", "fp16", "flash", "mla", "opaque", "x", "fp8"};
    return rng_() % 5 == 0 ? Bytes().substr(0, 600) : kWords[rng_() % 8];
  }

  grpc::Status Call(int method) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    switch (method) {
      case 0: {
        v1::RegisterNamespaceRequest req;
        if (rng_() % 8 != 0) {
          auto* l = req.mutable_layout();
          l->set_model_id(rng_() % 2 ? "fuzz-model" : Text());
          if (rng_() % 2) {
            l->set_block_bytes(rng_() % 2 ? 4096 * (1 + rng_() % 64) : rng_());
          } else {
            l->set_num_layers(Small());
            l->set_kv_heads(Small());
            l->set_head_size(Small());
            l->set_dtype(Text());
            l->set_tokens_per_block(Small());
          }
          l->set_tp_rank(rng_() % 3);
          l->set_tp_size(rng_() % 3);
          l->set_layout_tag(rng_() % 2 ? "" : Text());
        }
        v1::RegisterNamespaceResponse resp;
        grpc::Status s = stub_->RegisterNamespace(&ctx, req, &resp);
        if (s.ok()) namespaces_.push_back(resp.namespace_id());
        return s;
      }
      case 1: {
        v1::LookupRequest req;
        req.set_namespace_id(Namespace());
        req.set_keys(rng_() % 2 ? PoolKeys() : Bytes());
        v1::LookupResponse resp;
        return stub_->LookupPrefix(&ctx, req, &resp);
      }
      case 2: {
        v1::AllocateRequest req;
        req.set_namespace_id(Namespace());
        req.set_keys(rng_() % 2 ? PoolKeys() : Bytes());
        if (rng_() % 3 == 0) req.set_parent_key(rng_() % 2 ? Bytes().substr(0, 16) : Bytes());
        req.set_lease_ms(rng_() % 4 == 0 ? static_cast<uint32_t>(rng_()) : rng_() % 5000);
        v1::AllocateResponse resp;
        grpc::Status s = stub_->Allocate(&ctx, req, &resp);
        if (s.ok() && resp.lease_id()) leases_.push_back(resp.lease_id());
        return s;
      }
      case 3: {
        v1::CommitRequest req;
        req.set_lease_id(LeaseId());
        if (rng_() % 2) req.set_keys(rng_() % 2 ? PoolKeys() : Bytes());
        const size_t n = rng_() % 3 == 0 ? rng_() % 10 : 0;
        for (size_t i = 0; i < n; ++i) req.add_checksums(rng_());
        v1::CommitResponse resp;
        return stub_->Commit(&ctx, req, &resp);
      }
      case 4: {
        v1::AcquireRequest req;
        req.set_namespace_id(Namespace());
        req.set_keys(rng_() % 2 ? PoolKeys() : Bytes());
        req.set_lease_ms(rng_() % 4 == 0 ? static_cast<uint32_t>(rng_()) : rng_() % 5000);
        v1::AcquireResponse resp;
        grpc::Status s = stub_->Acquire(&ctx, req, &resp);
        if (s.ok() && resp.lease_id()) leases_.push_back(resp.lease_id());
        return s;
      }
      case 5: {
        v1::ReleaseRequest req;
        const size_t n = rng_() % 4;
        for (size_t i = 0; i < n; ++i) req.add_lease_ids(LeaseId());
        v1::ReleaseResponse resp;
        return stub_->Release(&ctx, req, &resp);
      }
      case 6: {
        v1::DropRequest req;
        req.set_namespace_id(Namespace());
        if (rng_() % 4 != 0) req.set_keys(rng_() % 2 ? PoolKeys() : Bytes());
        req.set_all(rng_() % 5 == 0);
        v1::DropResponse resp;
        return stub_->Drop(&ctx, req, &resp);
      }
      default: {
        v1::ListBlocksRequest req;
        req.set_namespace_id(rng_() % 2 ? 0 : Namespace());
        req.set_limit(rng_() % 3 == 0 ? static_cast<uint32_t>(rng_()) : rng_() % 50);
        v1::ListBlocksResponse resp;
        return stub_->ListBlocks(&ctx, req, &resp);
      }
    }
  }

  uint64_t seed_ = 0;
  std::mt19937_64 rng_;
  std::atomic<int64_t> now_ms_{1'000'000};
  std::unique_ptr<BlockStore> store_;
  std::unique_ptr<KvTierService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::KvTier::Stub> stub_;
  std::filesystem::path dir_;
  std::vector<uint64_t> namespaces_;
  std::vector<uint64_t> leases_;
};

TEST_F(RequestFuzzTest, RandomRequestsGetStatusesAndTheBooksBalance) {
  constexpr int kCalls = 4000;
  int ok = 0;
  for (int i = 0; i < kCalls; ++i) {
    grpc::Status s = Call(static_cast<int>(rng_() % 8));
    ASSERT_NE(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << "call " << i;
    ASSERT_NE(s.error_code(), grpc::StatusCode::UNAVAILABLE) << "call " << i;
    ASSERT_NE(s.error_code(), grpc::StatusCode::INTERNAL)
        << "call " << i << ": " << s.error_message();
    if (s.ok()) {
      ++ok;
    } else {
      EXPECT_FALSE(s.error_message().empty()) << "call " << i << " failed without a message";
    }
    if (i % 500 == 0) now_ms_ += 1000;  // some leases run out along the way
  }
  EXPECT_GT(ok, kCalls / 10) << "the fuzzer hardly ever made a valid request";

  now_ms_ += 10'000'000;  // every lease is past its deadline
  store_->ExpireLeases();
  StoreStats stats = store_->Stats();
  EXPECT_EQ(stats.leases, 0u);
  bool truncated = false;
  uint64_t slots = 0, ready = 0;
  for (const BlockSnapshot& b : store_->ListBlocks(0, 1'000'000, &truncated)) {
    EXPECT_EQ(b.state, BlockState::kReady);
    EXPECT_EQ(b.readers, 0u);
    slots += SlabAllocator::SlotBytes(b.bytes);
    ++ready;
  }
  EXPECT_EQ(ready, stats.tiers[0].blocks);
  EXPECT_EQ(slots, stats.tiers[0].used_bytes);
}

}  // namespace
}  // namespace kvtier
