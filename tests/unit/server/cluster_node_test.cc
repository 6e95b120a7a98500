// ClusterNode logic with several nodes in one process: each has its own BlockStore and arena;
// peer calls go straight to the other node's handlers (checking roster versions as the gRPC
// service does) and pulls are memcpys between arenas. The real gRPC + UCX path is covered by
// tests/integration/cluster_test.cc.
#include "server/cluster/cluster_node.h"

#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstring>
#include <map>
#include <random>

#include "absl/synchronization/notification.h"
#include "server/cluster/segments.h"

namespace kvtier {
namespace {

using KeyList = std::vector<Key128>;
constexpr uint64_t kBlock = 4096;
constexpr uint64_t kArena = 4096 * kBlock;  // 16 MiB per node

struct Node;
using Registry = std::map<std::string, Node*>;

// Moves bytes between the arenas of nodes in this process; can flip a byte on the way.
class MemcpyPuller final : public ArenaPuller {
 public:
  MemcpyPuller(std::string id, std::byte* arena, Registry* nodes)
      : id_(std::move(id)), arena_(arena), nodes_(nodes) {}
  const std::string& LocalInfo() const override { return id_; }
  std::string Mode() const override { return "memcpy (test)"; }
  void Pull(const std::string& peer_info, std::vector<PullOp> ops, int,
            std::function<void(absl::Status)> done) override;
  bool corrupt_next = false;

 private:
  std::string id_;
  std::byte* arena_;
  Registry* nodes_;
};

struct Node {
  Node(const std::string& id, Registry* nodes)
      : arena(kArena), store(kArena, Options()), puller(id, arena.data(), nodes) {
    NamespaceLayout layout;
    layout.model_id = "cluster-test";
    layout.block_bytes = kBlock;
    bool created = false;
    ns = (*store.RegisterNamespace(layout, &created))->id;
    ClusterOptions options;
    options.self_id = id;
    options.announce_period_ms = 1000000;  // tests flush by hand
    options.hello_period_ms = 1000000;
    cluster = std::make_unique<ClusterNode>(options, &store, &puller, arena.data(), kArena,
                                            Connector(id, nodes));
    store.SetListener(cluster.get());
  }
  ~Node() { store.SetListener(nullptr); }
  static StoreOptions Options() {
    StoreOptions o;
    o.now_ms = [] { return int64_t{1'000'000}; };
    return o;
  }
  static PeerConnector Connector(const std::string& self, Registry* nodes);

  // Saves `keys` as one chain (parent: the key before keys[0], if any) with random bytes.
  void Save(const KeyList& keys, std::optional<Key128> parent, std::mt19937_64& rng) {
    auto grant = store.Allocate(ns, keys, parent, 0);
    ASSERT_TRUE(grant.ok()) << grant.status();
    for (uint64_t off : grant->offsets) {
      if (off == kExistsOffset) continue;
      for (uint64_t i = 0; i < kBlock; i += 8) {
        const uint64_t v = rng();
        std::memcpy(arena.data() + off + i, &v, 8);
      }
    }
    ASSERT_TRUE(store.Commit(grant->lease_id, {}, {}).ok());
  }
  // A hash of the bytes of a present key (0 when absent): compared across nodes.
  uint64_t Bytes(const Key128& key) {
    auto g = store.Acquire(ns, KeyList{key}, 0);
    if (!g.ok() || g->offsets.empty()) return 0;
    const uint64_t h = XXH3_64bits(arena.data() + g->offsets[0], kBlock);
    (void)store.Release(std::vector<uint64_t>{g->lease_id});
    return h;
  }
  LookupAnswer PoolLookup(const KeyList& keys) {
    LookupAnswer local = *store.Peek(ns, keys);
    LookupAnswer out;
    bool called = false;
    cluster->Lookup(ns, keys, local, [&](LookupAnswer a) {
      out = std::move(a);
      called = true;
    });
    EXPECT_TRUE(called);  // the in-process peers answer inline
    return out;
  }
  void Pull(const KeyList& keys) {
    // Chunks are verified and committed on the node's worker threads: wait for the end.
    auto done = std::make_shared<absl::Notification>();
    cluster->PullMissing(ns, keys, store.Peek(ns, keys)->prefix_blocks, [done] { done->Notify(); });
    EXPECT_TRUE(done->WaitForNotificationWithTimeout(absl::Seconds(10)));
  }
  uint32_t LocalPrefix(const KeyList& keys) { return store.Peek(ns, keys)->prefix_blocks; }

  std::vector<std::byte> arena;
  BlockStore store;
  MemcpyPuller puller;
  uint64_t ns = 0;
  std::unique_ptr<ClusterNode> cluster;
};

void MemcpyPuller::Pull(const std::string& peer_info, std::vector<PullOp> ops, int,
                        std::function<void(absl::Status)> done) {
  auto it = nodes_->find(peer_info);
  if (it == nodes_->end()) return done(absl::UnavailableError("no such peer"));
  for (const PullOp& op : ops) {
    std::memcpy(arena_ + op.local_offset, it->second->arena.data() + op.remote_offset, op.bytes);
  }
  if (corrupt_next && !ops.empty()) {
    arena_[ops[0].local_offset] = ~arena_[ops[0].local_offset];
    corrupt_next = false;
  }
  done(absl::OkStatus());
}

// Calls the target node's handlers directly, as PeerService would.
class DirectChannel final : public PeerChannel {
 public:
  DirectChannel(std::string self, std::string target, Registry* nodes)
      : self_(std::move(self)), target_(std::move(target)), nodes_(nodes) {}
  void Hello(uint64_t, uint64_t incarnation, Done<PeerHello> done) override {
    ClusterNode* t = Target();
    if (!t) return done(absl::UnavailableError("down"));
    t->NoteIncarnation(self_, incarnation);
    done(PeerHello{t->self_id(), t->roster_version(), t->transport_info(), t->incarnation()});
  }
  void UpdateDirectory(uint64_t v, std::vector<KeyBatch> gained, std::vector<KeyBatch> lost,
                       Done<uint32_t> done) override {
    ClusterNode* t = Target();
    if (!t) return done(absl::UnavailableError("down"));
    if (auto s = t->CheckRosterVersion(v); !s.ok()) return done(s);
    done(t->ApplyDirectoryUpdate(self_, gained, lost));
  }
  void LookupDirectory(uint64_t v, uint64_t ns, std::vector<Key128> keys,
                       Done<std::vector<std::vector<std::string>>> done) override {
    ClusterNode* t = Target();
    if (!t) return done(absl::UnavailableError("down"));
    if (auto s = t->CheckRosterVersion(v); !s.ok()) return done(s);
    done(t->LookupDirectory(ns, keys));
  }
  void Pin(uint64_t v, uint64_t ns, std::vector<Key128> keys, uint32_t lease_ms,
           Done<PinResult> done) override {
    ClusterNode* t = Target();
    if (!t) return done(absl::UnavailableError("down"));
    if (auto s = t->CheckRosterVersion(v); !s.ok()) return done(s);
    t->Pin(ns, std::move(keys), lease_ms, std::move(done));
  }
  void Unpin(uint64_t v, std::vector<uint64_t> ids, Done<uint32_t> done) override {
    ClusterNode* t = Target();
    if (!t) return done(absl::UnavailableError("down"));
    done(t->Unpin(ids));
  }

 private:
  ClusterNode* Target() {
    auto it = nodes_->find(target_);
    return it == nodes_->end() ? nullptr : it->second->cluster.get();
  }
  std::string self_, target_;
  Registry* nodes_;
};

PeerConnector Node::Connector(const std::string& self, Registry* nodes) {
  return [self, nodes](const Member& m) -> std::unique_ptr<PeerChannel> {
    return std::make_unique<DirectChannel>(self, m.id, nodes);
  };
}

class ClusterNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* id : {"a", "b", "c"}) AddNode(id);
    ASSERT_TRUE(SetRosterAll({"a", "b", "c"}, 7).ok());
  }

  void AddNode(const std::string& id) {
    owned_.push_back(std::make_unique<Node>(id, &nodes_));
    nodes_[id] = owned_.back().get();
  }
  absl::Status SetRosterAll(const std::vector<std::string>& ids, uint64_t version) {
    Roster r;
    r.version = version;
    for (size_t i = 0; i < ids.size(); ++i) {
      r.members.push_back(
          Member{ids[i], "127.0.0.1:" + std::to_string(7000 + i), static_cast<uint32_t>(i)});
    }
    for (const std::string& id : ids) {
      if (auto s = nodes_[id]->cluster->SetRoster(r); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
  void FlushAll() {
    for (auto& [id, node] : nodes_) node->cluster->FlushAnnouncements();
  }
  // A chain of n random keys with a segment boundary every `every` keys (and nowhere else).
  KeyList Chain(size_t n, size_t every) {
    KeyList keys(n);
    for (size_t i = 0; i < n; ++i) {
      keys[i] = {rng_(), rng_()};
      if (i % every == 0) {
        keys[i].lo -= keys[i].lo % kSegmentBlocks;
      } else if (StartsSegment(keys[i])) {
        keys[i].lo += 1;
      }
    }
    return keys;
  }

  Registry nodes_;
  std::vector<std::unique_ptr<Node>> owned_;
  std::mt19937_64 rng_{std::random_device{}()};
};

TEST_F(ClusterNodeTest, ChainSavedOnOneNodeIsFoundAndPulledByAnother) {
  Node& a = *nodes_["a"];
  Node& b = *nodes_["b"];
  const KeyList chain = Chain(300, 40);  // 8 segments, spread over the 3 directories
  a.Save(chain, std::nullopt, rng_);
  FlushAll();

  EXPECT_EQ(b.LocalPrefix(chain), 0u);
  LookupAnswer found = b.PoolLookup(chain);
  ASSERT_EQ(found.prefix_blocks, chain.size());
  for (TierId t : found.tiers) EXPECT_EQ(t, TierId::kRemote);

  b.Pull(chain);
  ASSERT_EQ(b.LocalPrefix(chain), chain.size());
  for (size_t i = 0; i < chain.size(); i += 37) {
    EXPECT_NE(a.Bytes(chain[i]), 0u);
    EXPECT_EQ(b.Bytes(chain[i]), a.Bytes(chain[i])) << "block " << i;
  }
  ClusterView v = b.cluster->View();
  EXPECT_EQ(v.remote_pulls, chain.size());
  EXPECT_EQ(v.remote_pull_bytes, chain.size() * kBlock);
  EXPECT_EQ(v.remote_pull_failures, 0u);
  // Nothing stays pinned on the holder once the pull is done.
  EXPECT_EQ(a.store.Stats().leases, 0u);

  // B now holds copies too: after its announcements, the directories list both.
  FlushAll();
  size_t both = 0;
  for (auto& [id, node] : nodes_) {
    for (const auto& holders : node->cluster->LookupDirectory(a.ns, chain)) {
      if (holders.size() == 2) ++both;
    }
  }
  EXPECT_EQ(both, chain.size());
}

TEST_F(ClusterNodeTest, LaterPartOfALookedUpChainIsPulledFromTheRightDirectories) {
  Node& a = *nodes_["a"];
  Node& b = *nodes_["b"];
  const KeyList chain = Chain(400, 25);  // 16 segments
  a.Save(chain, std::nullopt, rng_);
  FlushAll();
  const KeyList middle(chain.begin() + 130, chain.begin() + 260);  // starts inside a segment
  ASSERT_EQ(b.PoolLookup(chain).prefix_blocks, chain.size());      // engines look up first
  b.Pull(middle);
  EXPECT_EQ(b.LocalPrefix(middle), middle.size());
  EXPECT_EQ(b.Bytes(middle[7]), a.Bytes(middle[7]));
  EXPECT_EQ(b.LocalPrefix(chain), 0u);  // only the part asked for was pulled
}

TEST_F(ClusterNodeTest, ReadsSpreadOverTheHoldersOfACopy) {
  Node& a = *nodes_["a"];
  Node& b = *nodes_["b"];
  Node& c = *nodes_["c"];
  const KeyList chain = Chain(200, 50);
  a.Save(chain, std::nullopt, rng_);
  FlushAll();
  c.Pull(chain);  // c now holds a copy as well
  FlushAll();
  ASSERT_EQ(c.LocalPrefix(chain), chain.size());
  ASSERT_EQ(b.PoolLookup(chain).prefix_blocks, chain.size());
  // b reads the chain piece by piece; each piece may come from a or from c.
  for (size_t i = 0; i < chain.size(); i += 10) {
    b.Pull(KeyList(chain.begin() + i, chain.begin() + i + 10));
  }
  ASSERT_EQ(b.LocalPrefix(chain), chain.size());
  uint64_t from_a = 0, from_c = 0;
  for (const MemberView& m : b.cluster->View().members) {
    if (m.member.id == "a") from_a = m.pulls;
    if (m.member.id == "c") from_c = m.pulls;
  }
  EXPECT_EQ(from_a + from_c, chain.size());
  // 20 pieces, each from a or c at random: both serve some (all from one: 2 in a million).
  EXPECT_GT(from_a, 0u);
  EXPECT_GT(from_c, 0u);
}

TEST_F(ClusterNodeTest, LookupStopsAtTheFirstBlockNobodyHolds) {
  Node& a = *nodes_["a"];
  Node& c = *nodes_["c"];
  const KeyList chain = Chain(120, 30);
  a.Save(KeyList(chain.begin(), chain.begin() + 70), std::nullopt, rng_);
  a.Save(KeyList(chain.begin() + 71, chain.end()), chain[70], rng_);  // a hole at 70
  FlushAll();
  EXPECT_EQ(c.PoolLookup(chain).prefix_blocks, 70u);
  // The local prefix comes first; the pool extends it.
  c.Save(KeyList(chain.begin(), chain.begin() + 10), std::nullopt, rng_);
  FlushAll();
  LookupAnswer mixed = c.PoolLookup(chain);
  ASSERT_EQ(mixed.prefix_blocks, 70u);
  EXPECT_EQ(mixed.tiers[9], TierId::kDram);
  EXPECT_EQ(mixed.tiers[10], TierId::kRemote);
}

TEST_F(ClusterNodeTest, CorruptTransferIsAMissNeverServed) {
  Node& a = *nodes_["a"];
  Node& b = *nodes_["b"];
  const KeyList chain = Chain(8, 100);
  a.Save(chain, std::nullopt, rng_);
  FlushAll();
  b.puller.corrupt_next = true;
  b.Pull(chain);
  EXPECT_EQ(b.LocalPrefix(chain), 0u);  // the first block failed its checksum: not committed
  EXPECT_GE(b.cluster->View().remote_pull_failures, 1u);
  EXPECT_EQ(b.store.Stats().leases, 0u);  // its write lease was released
  EXPECT_EQ(a.store.Stats().leases, 0u);
  b.Pull(chain);  // a clean retry works
  EXPECT_EQ(b.LocalPrefix(chain), chain.size());
  EXPECT_EQ(b.Bytes(chain[0]), a.Bytes(chain[0]));
}

TEST_F(ClusterNodeTest, DifferentRosterVersionIsRefusedAndCostsOnlyMisses) {
  Node& a = *nodes_["a"];
  Node& b = *nodes_["b"];
  const KeyList chain = Chain(60, 5);  // 12 segments: some have other directories than b
  a.Save(chain, std::nullopt, rng_);
  FlushAll();
  Roster stale;
  stale.version = 99;
  for (uint32_t i = 0; i < 3; ++i) {
    stale.members.push_back(Member{std::string(1, static_cast<char>('a' + i)),
                                   "127.0.0.1:" + std::to_string(7000 + i), i});
  }
  ASSERT_TRUE(b.cluster->SetRoster(stale).ok());
  const LookupAnswer found = b.PoolLookup(chain);
  // Only segments whose directory is b itself can still be answered; every refusal is counted.
  uint64_t rejects = 0;
  for (auto& [id, node] : nodes_) rejects += node->cluster->View().stale_roster_rejects;
  EXPECT_LT(found.prefix_blocks, chain.size());
  EXPECT_GT(rejects, 0u);
  EXPECT_EQ(a.cluster->CheckRosterVersion(99).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(a.cluster->CheckRosterVersion(0).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(ClusterNodeTest, BlocksOfAMemberThatLeftBecomeMisses) {
  Node& a = *nodes_["a"];
  Node& b = *nodes_["b"];
  const KeyList chain = Chain(90, 30);
  a.Save(chain, std::nullopt, rng_);
  FlushAll();
  ASSERT_EQ(b.PoolLookup(chain).prefix_blocks, chain.size());
  nodes_.erase("a");  // a is gone: its calls fail
  ASSERT_TRUE(SetRosterAll({"b", "c"}, 8).ok());
  FlushAll();
  EXPECT_EQ(b.PoolLookup(chain).prefix_blocks, 0u);
  b.Pull(chain);
  EXPECT_EQ(b.LocalPrefix(chain), 0u);
}

TEST_F(ClusterNodeTest, DroppedBlocksLeaveTheDirectory) {
  Node& a = *nodes_["a"];
  Node& c = *nodes_["c"];
  const KeyList chain = Chain(50, 25);
  a.Save(chain, std::nullopt, rng_);
  FlushAll();
  ASSERT_EQ(c.PoolLookup(chain).prefix_blocks, chain.size());
  ASSERT_TRUE(a.store.Drop(a.ns, KeyList(chain.begin() + 20, chain.end()), false).ok());
  FlushAll();
  EXPECT_EQ(c.PoolLookup(chain).prefix_blocks, 20u);
}

TEST_F(ClusterNodeTest, JoiningMemberTakesOverDirectoriesByReannouncement) {
  Node& a = *nodes_["a"];
  const KeyList chain = Chain(400, 10);  // 40 segments: some move to the new member
  a.Save(chain, std::nullopt, rng_);
  FlushAll();
  AddNode("d");
  ASSERT_TRUE(SetRosterAll({"a", "b", "c", "d"}, 9).ok());
  FlushAll();
  EXPECT_GT(nodes_["d"]->cluster->View().directory_entries, 0u);
  Node& d = *nodes_["d"];
  EXPECT_EQ(d.PoolLookup(chain).prefix_blocks, chain.size());
  EXPECT_EQ(nodes_["b"]->PoolLookup(chain).prefix_blocks, chain.size());
}

TEST_F(ClusterNodeTest, RestartedDirectoryGetsItsEntriesBackFromTheHolders) {
  Node& a = *nodes_["a"];
  const KeyList chain = Chain(300, 10);  // 30 segments: some have c as their directory
  a.Save(chain, std::nullopt, rng_);
  FlushAll();
  for (auto& [id, node] : nodes_) node->cluster->ProbeMembersNow();  // incarnations learned
  ASSERT_EQ(nodes_["b"]->PoolLookup(chain).prefix_blocks, chain.size());
  ASSERT_GT(nodes_["c"]->cluster->View().directory_entries, 0u);

  // c restarts (same id, same roster): a new process with an empty directory.
  owned_.push_back(std::make_unique<Node>("c", &nodes_));
  nodes_["c"] = owned_.back().get();
  Roster r;
  r.version = 7;
  for (uint32_t i = 0; i < 3; ++i) {
    r.members.push_back(Member{std::string(1, static_cast<char>('a' + i)),
                               "127.0.0.1:" + std::to_string(7000 + i), i});
  }
  ASSERT_TRUE(nodes_["c"]->cluster->SetRoster(r).ok());
  EXPECT_EQ(nodes_["c"]->cluster->View().directory_entries, 0u);
  EXPECT_LT(nodes_["b"]->PoolLookup(chain).prefix_blocks, chain.size());  // c's segments: misses

  // a's next probe sees c's new incarnation and re-announces what c is the directory of.
  a.cluster->ProbeMembersNow();
  FlushAll();
  EXPECT_GT(nodes_["c"]->cluster->View().directory_entries, 0u);
  EXPECT_EQ(nodes_["b"]->PoolLookup(chain).prefix_blocks, chain.size());
}

TEST_F(ClusterNodeTest, RosterWithoutThisNodeIsRefused) {
  Roster r;
  r.version = 5;
  r.members.push_back(Member{"x", "127.0.0.1:1", 0});
  EXPECT_EQ(nodes_["a"]->cluster->SetRoster(r).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kvtier
