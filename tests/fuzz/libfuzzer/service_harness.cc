#include "tests/fuzz/libfuzzer/service_harness.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_format.h"
#include "common/block_key.h"
#include "server/dram/slab_allocator.h"

namespace kvtier::fuzz {
namespace {

// Pulls never succeed: the other members are unreachable.
class NoPuller final : public ArenaPuller {
 public:
  const std::string& LocalInfo() const override { return info_; }
  std::string Mode() const override { return "none (fuzz)"; }
  void Pull(const std::string&, std::vector<PullOp>, int,
            std::function<void(absl::Status)> done) override {
    done(absl::UnavailableError("no transport in the fuzzer"));
  }

 private:
  std::string info_ = "fuzz";
};

// Every call to another member fails at once, as to a dead daemon.
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
  static absl::Status Down() { return absl::UnavailableError("not reachable in the fuzzer"); }
};

std::vector<Key128> KeyRange(uint64_t from, uint64_t n) {
  std::vector<Key128> keys;
  for (uint64_t i = 0; i < n; ++i) keys.push_back(Key128{from + i, 7});
  return keys;
}

}  // namespace

void Fail(const char* method, const std::string& what) {
  std::fprintf(stderr, "kvtier fuzz check failed in %s: %s\n", method, what.c_str());
  std::fflush(stderr);
  std::abort();
}

NamespaceLayout BaselineLayout() {
  NamespaceLayout layout;
  layout.model_id = "fuzz-model";
  layout.block_bytes = kBlockBytes;
  return layout;
}

Harness& Harness::Get() {
  static Harness* harness = new Harness();  // lives until exit, as gRPC's threads do
  return *harness;
}

Harness::Harness() : arena_(kArenaBytes) {
  StoreOptions options;
  options.now_ms = [this] { return now_ms_.load(); };
  options.max_batch_keys = kMaxBatch;
  store_ = std::make_unique<BlockStore>(arena_.size(), options);
  bool created = false;
  auto record = store_->RegisterNamespace(BaselineLayout(), &created);
  if (!record.ok()) Fail("setup", record.status().ToString());
  ns_ = (*record)->id;

  puller_ = std::make_unique<NoPuller>();
  ClusterOptions copts;
  copts.self_id = "self";
  cluster_ = std::make_unique<ClusterNode>(copts, store_.get(), puller_.get(), arena_.data(),
                                           arena_.size(),
                                           [](const Member&) -> std::unique_ptr<PeerChannel> {
                                             return std::make_unique<DeadChannel>();
                                           });
  Roster roster;
  roster.version = kRosterVersion;
  roster.members.push_back(Member{"self", "127.0.0.1:1", 0});
  roster.members.push_back(Member{"peer-a", "127.0.0.1:2", 1});
  roster.members.push_back(Member{"peer-b", "127.0.0.1:3", 2});
  if (absl::Status s = cluster_->SetRoster(roster); !s.ok()) Fail("setup", s.ToString());

  kvtier_service_ = std::make_unique<KvTierService>(
      store_.get(), ServiceInfo{"fuzz", "0", "", 0, 0, 0, {}, {}, ""});
  kvtier_service_->AttachCluster(cluster_.get(), [] { return MembershipStatus{"static", "ok"}; });
  peer_service_ = std::make_unique<PeerService>(cluster_.get(), kMaxBatch);
  grpc::ServerBuilder builder;
  builder.RegisterService(kvtier_service_.get());
  builder.RegisterService(peer_service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr) Fail("setup", "the in-process gRPC server did not start");
  grpc::ChannelArguments args;
  auto channel = server_->InProcessChannel(args);
  kvtier_ = v1::KvTier::NewStub(channel);
  peer_ = v1::Peer::NewStub(channel);
  Baseline();
}

uint64_t Harness::Lease(uint64_t id) const {
  return id >= 1 && id <= kLeaseAliases ? leases_[id - 1] : id;
}

bool Harness::CheckStatus(const grpc::Status& s, const char* method) {
  if (s.ok()) return true;
  switch (s.error_code()) {
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::UNIMPLEMENTED:
    case grpc::StatusCode::CANCELLED:
      Fail(method, absl::StrFormat("unexpected status %d: %s", s.error_code(), s.error_message()));
    default:
      break;
  }
  if (s.error_message().empty()) {
    Fail(method, absl::StrFormat("status %d without a message", s.error_code()));
  }
  return false;
}

void Harness::Baseline() {
  const std::vector<Key128> base = KeyRange(0, kBaselineBlocks);
  auto present = store_->Peek(ns_, base);
  if (!present.ok() || present->prefix_blocks != base.size()) {
    auto grant = store_->Allocate(ns_, base, std::nullopt, 0);
    if (!grant.ok()) Fail("baseline", grant.status().ToString());
    if (auto c = store_->Commit(grant->lease_id, {}, {}); !c.ok()) {
      Fail("baseline", c.status().ToString());
    }
  }
  auto write = store_->Allocate(ns_, KeyRange(100, 8), std::nullopt, 0);
  if (!write.ok()) Fail("baseline", write.status().ToString());
  auto read = store_->Acquire(ns_, KeyRange(0, 8), 0);
  if (!read.ok() || read->offsets.size() != 8) Fail("baseline", "cannot pin the baseline blocks");
  leases_[0] = write->lease_id;
  leases_[1] = read->lease_id;
}

void Harness::Reset() {
  // Every lease past its deadline: the books must balance.
  now_ms_ += 100'000'000;
  store_->ExpireLeases();
  StoreStats stats = store_->Stats();
  if (stats.leases != 0) Fail("reset", absl::StrFormat("%d leases left", stats.leases));
  bool truncated = false;
  uint64_t slots = 0, blocks = 0;
  bool only_baseline = true;
  std::vector<uint64_t> namespaces;
  for (const BlockSnapshot& b : store_->ListBlocks(0, 1'000'000, &truncated)) {
    if (b.state != BlockState::kReady || b.readers != 0) {
      Fail("reset", absl::StrFormat("block %d/%d is %s with %d readers after every lease ended",
                                    b.id.key.lo, b.id.key.hi, BlockStateName(b.state), b.readers));
    }
    slots += SlabAllocator::SlotBytes(b.bytes);
    ++blocks;
    if (b.id.ns != ns_ || b.id.key.hi != 7 || b.id.key.lo >= kBaselineBlocks) only_baseline = false;
    if (namespaces.empty() || namespaces.back() != b.id.ns) namespaces.push_back(b.id.ns);
  }
  const TierCounters& dram = stats.tiers[0];
  if (blocks != dram.blocks || slots != dram.used_bytes) {
    Fail("reset", absl::StrFormat("dram counts %d blocks in %d bytes; the index has %d in %d",
                                  dram.blocks, dram.used_bytes, blocks, slots));
  }
  if (dram.used_bytes > dram.capacity_bytes) Fail("reset", "dram used above its capacity");
  if (!only_baseline || blocks != kBaselineBlocks) {
    for (uint64_t ns : namespaces) {
      if (auto d = store_->Drop(ns, {}, true); !d.ok()) Fail("reset", d.status().ToString());
    }
    stats = store_->Stats();
    if (stats.tiers[0].used_bytes != 0 || stats.tiers[0].blocks != 0) {
      Fail("reset", absl::StrFormat("%d bytes in %d blocks left after dropping everything",
                                    stats.tiers[0].used_bytes, stats.tiers[0].blocks));
    }
  }
  Baseline();
}

}  // namespace kvtier::fuzz
