// The BlockStore with an NVMe tier under DRAM: demotion, promotion, corruption, warm restart.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <random>

#include "absl/time/clock.h"
#include "server/dram/arena.h"
#include "server/nvme/nvme_format.h"
#include "server/store/block_store.h"
#include "tests/support/flip_byte.h"

namespace kvtier {
namespace {

using KeyList = std::vector<Key128>;
constexpr uint64_t kBlock = 1 << 20;

class TieredStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::current_path() / ("tiers-test-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    auto arena = Arena::Create(4 * kBlock, "tiers-test");  // four 1 MiB blocks of DRAM
    ASSERT_TRUE(arena.ok());
    arena_ = std::move(*arena);
    Start();
  }
  void TearDown() override {
    // The device first: its destructor waits for writes in flight, whose callbacks use the store.
    nvme_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // (Re)starts the store on the same device: what a daemon restart does.
  void Start(uint64_t nvme_bytes = 32 << 20, uint64_t fail_after = 0,
             StoreOptions::Admit admit = StoreOptions::Admit::kAll) {
    nvme_.reset();
    store_.reset();
    NvmeOptions o;
    o.path = (dir_ / "nvme.dat").string();
    o.capacity = nvme_bytes;
    o.fail_writes_after = fail_after;
    std::vector<RecoveredBlock> found;
    auto nvme = NvmeStore::Open(o, arena_->base(), arena_->size(), &found);
    ASSERT_TRUE(nvme.ok()) << nvme.status();
    nvme_ = std::move(*nvme);
    StoreOptions options;
    options.nvme_admit = admit;
    store_ = std::make_unique<BlockStore>(arena_->size(), options);
    store_->AttachNvme(nvme_.get(), arena_->base());
    store_->AdoptRecovered(found);
    NamespaceLayout layout;
    layout.model_id = "tiers";
    layout.block_bytes = kBlock;
    bool created;
    auto ns = store_->RegisterNamespace(layout, &created);
    ASSERT_TRUE(ns.ok());
    ns_ = (*ns)->id;
  }

  // Saves blocks whose bytes are derived from their key.
  void Save(const KeyList& keys) {
    auto grant = store_->Allocate(ns_, keys, std::nullopt, 0);
    ASSERT_TRUE(grant.ok()) << grant.status();
    for (size_t i = 0; i < keys.size(); ++i) {
      if (grant->offsets[i] != kExistsOffset) Fill(keys[i], arena_->base() + grant->offsets[i]);
    }
    ASSERT_TRUE(store_->Commit(grant->lease_id, {}, {}).ok());
  }
  static void Fill(const Key128& k, std::byte* p) {
    std::mt19937_64 rng(k.lo);
    for (uint64_t i = 0; i < kBlock; i += 8) {
      uint64_t x = rng();
      std::memcpy(p + i, &x, 8);
    }
  }
  static bool Holds(const Key128& k, const std::byte* p) {
    std::vector<std::byte> want(kBlock);
    Fill(k, want.data());
    return std::memcmp(want.data(), p, kBlock) == 0;
  }

  // Runs the mover by hand until `n` blocks sit on NVMe.
  bool DemoteUntil(uint64_t n) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (absl::Now() < deadline) {
      store_->DemoteSome(8);
      if (store_->Stats().tiers[1].blocks >= n) return true;
      absl::SleepFor(absl::Milliseconds(5));
    }
    return false;
  }

  std::vector<TierId> Tiers(const KeyList& keys) {
    auto a = store_->Lookup(ns_, keys);
    EXPECT_TRUE(a.ok());
    return a->tiers;
  }

  KeyList Keys(uint64_t first, size_t n) {
    KeyList k;
    for (size_t i = 0; i < n; ++i) k.push_back({first + i, 77});
    return k;
  }

  std::filesystem::path dir_;
  std::unique_ptr<Arena> arena_;
  std::unique_ptr<NvmeStore> nvme_;
  std::unique_ptr<BlockStore> store_;
  uint64_t ns_ = 0;
};

TEST_F(TieredStoreTest, ColdBlocksMoveDownAndComeBackByteForByte) {
  KeyList first = Keys(100, 4);
  for (const Key128& k : first) Save({k});
  ASSERT_TRUE(DemoteUntil(4));
  KeyList second = Keys(200, 4);
  for (const Key128& k : second) Save({k});  // evicts the clean DRAM copies: nothing is lost
  EXPECT_EQ(Tiers(first), std::vector<TierId>(4, TierId::kNvme));
  EXPECT_EQ(Tiers(second), std::vector<TierId>(4, TierId::kDram));

  auto read = store_->Acquire(ns_, first, 0);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->offsets.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_TRUE(Holds(first[i], arena_->base() + read->offsets[i]));
  EXPECT_EQ(Tiers(first), std::vector<TierId>(4, TierId::kDram));
  StoreStats s = store_->Stats();
  EXPECT_EQ(s.tiers[1].name, "nvme");
  EXPECT_EQ(s.tiers[1].hits, 4u);
  EXPECT_EQ(s.tiers[1].status, "ok");
  ASSERT_TRUE(store_->Release(std::vector<uint64_t>{read->lease_id}).ok());
  // Promoted blocks are evictable again (their clean DRAM copies go, the NVMe copies stay).
  for (const Key128& k : Keys(250, 4)) Save({k});
  EXPECT_EQ(Tiers(first), std::vector<TierId>(4, TierId::kNvme));
}

TEST_F(TieredStoreTest, OnlyReusedBlocksAndChainHeadsAreWorthAWrite) {
  Start(32 << 20, 0, StoreOptions::Admit::kReused);
  KeyList chain = Keys(1100, 2);  // chain[0] heads chain[1]
  Save(chain);
  Key128 read_once{1200, 77}, never_read{1201, 77};
  Save({read_once});
  Save({never_read});
  auto r = store_->Acquire(ns_, KeyList{read_once}, 0);
  ASSERT_TRUE(store_->Release(std::vector<uint64_t>{r->lease_id}).ok());
  ASSERT_TRUE(DemoteUntil(2));
  for (int i = 0; i < 20; ++i) store_->DemoteSome(8);  // nothing else qualifies
  EXPECT_EQ(Tiers(KeyList{chain[0]}), std::vector<TierId>{TierId::kDram});
  EXPECT_EQ(store_->Stats().tiers[1].blocks, 2u);  // chain[0] and read_once; not the tails
  // Turn DRAM over: the admitted two stay reachable on NVMe; the unadmitted block the hand
  // evicted is gone for good (with --nvme-admit all it would have been written down).
  for (const Key128& k : Keys(1300, 8)) Save({k});
  EXPECT_EQ(Tiers(KeyList{chain[0]}), std::vector<TierId>{TierId::kNvme});
  EXPECT_EQ(Tiers(KeyList{read_once}), std::vector<TierId>{TierId::kNvme});
  EXPECT_TRUE(Tiers(KeyList{never_read}).empty());
  EXPECT_EQ(store_->Stats().tiers[1].blocks, 2u);
}

TEST_F(TieredStoreTest, AFlippedByteOnTheDeviceIsAMissNeverServed) {
  KeyList keys = Keys(300, 4);
  for (const Key128& k : keys) Save({k});
  ASSERT_TRUE(DemoteUntil(4));
  for (const Key128& k : Keys(400, 4)) Save({k});  // first four now only on NVMe
  // Flip one payload byte of every record on the device (records follow a region header).
  const uint64_t region = nvme_->region_bytes();
  for (uint64_t start = 0; start < nvme_->Counters().capacity_bytes; start += region) {
    for (uint64_t at = start + nvme::kPage; at + nvme::RecordBytes(kBlock) <= start + region;
         at += nvme::RecordBytes(kBlock)) {
      ASSERT_TRUE(testing::FlipByte((dir_ / "nvme.dat").string(), at + nvme::kPage + 12345));
    }
  }
  auto read = store_->Acquire(ns_, keys, 0);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->offsets.size(), 0u);  // the first block fails its checksum: the prefix ends
  EXPECT_GE(store_->Stats().tiers[1].misses, 1u);  // the reads went out together
  EXPECT_GE(nvme_->Counters().corrupt_blocks, 1u);
  EXPECT_EQ(store_->Lookup(ns_, keys)->prefix_blocks, 0u);  // forgotten, not served later
}

TEST_F(TieredStoreTest, ARestartServesWhatIsOnTheDevice) {
  KeyList keys = Keys(500, 4);
  Save(keys);
  ASSERT_TRUE(DemoteUntil(4));
  Start();  // a new store over the same device: DRAM is empty
  EXPECT_EQ(Tiers(keys), std::vector<TierId>(4, TierId::kNvme));
  auto read = store_->Acquire(ns_, keys, 0);
  ASSERT_TRUE(read.ok());
  ASSERT_EQ(read->offsets.size(), 4u);
  for (size_t i = 0; i < 4; ++i) EXPECT_TRUE(Holds(keys[i], arena_->base() + read->offsets[i]));
  ASSERT_TRUE(store_->Release(std::vector<uint64_t>{read->lease_id}).ok());
  EXPECT_EQ(store_->ListNamespaces()[0].blocks, 4u);
}

TEST_F(TieredStoreTest, ConcurrentReadersOfOneNvmeBlockShareOneRead) {
  KeyList keys = Keys(600, 4);
  for (const Key128& k : keys) Save({k});
  ASSERT_TRUE(DemoteUntil(4));
  for (const Key128& k : Keys(700, 4)) Save({k});
  std::vector<std::thread> readers;
  std::atomic<int> good{0};
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&] {
      auto r = store_->Acquire(ns_, KeyList{keys[0]}, 0);
      if (r.ok() && r->offsets.size() == 1 && Holds(keys[0], arena_->base() + r->offsets[0])) {
        ++good;
        (void)store_->Release(std::vector<uint64_t>{r->lease_id});
      }
    });
  }
  for (auto& t : readers) t.join();
  EXPECT_EQ(good.load(), 4);
  EXPECT_EQ(store_->Stats().tiers[1].hits, 1u);  // one promotion for four readers
}

TEST_F(TieredStoreTest, AFullDeviceForgetsItsOldestBlocks) {
  Start(/*nvme_bytes=*/8 << 20);  // two regions of three 1 MiB records
  for (uint64_t round = 0; round < 4; ++round) {
    KeyList keys = Keys(1000 + round * 10, 4);
    for (const Key128& k : keys) Save({k});
    ASSERT_TRUE(DemoteUntil(std::min<uint64_t>(6, 4 * (round + 1)) - 2));
  }
  // Whatever the index still claims is on NVMe must read back intact.
  bool truncated;
  for (const BlockSnapshot& b : store_->ListBlocks(ns_, 100, &truncated)) {
    auto r = store_->Acquire(ns_, KeyList{b.id.key}, 0);
    ASSERT_TRUE(r.ok());
    if (r->offsets.empty()) continue;  // lost with its region, and said so
    EXPECT_TRUE(Holds(b.id.key, arena_->base() + r->offsets[0]));
    ASSERT_TRUE(store_->Release(std::vector<uint64_t>{r->lease_id}).ok());
  }
  EXPECT_GT(store_->Stats().tiers[1].evictions, 0u);
}

TEST_F(TieredStoreTest, AFailingDeviceDegradesAndDramKeepsServing) {
  Start(32 << 20, /*fail_after=*/1);
  KeyList keys = Keys(800, 4);
  for (const Key128& k : keys) Save({k});
  store_->DemoteSome(8);
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (store_->Stats().tiers[1].status == "ok" && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_NE(store_->Stats().tiers[1].status.find("degraded"), std::string::npos);
  // Dirty blocks are dropped instead of written down; saves and reads go on.
  KeyList more = Keys(900, 4);
  for (const Key128& k : more) Save({k});
  auto read = store_->Acquire(ns_, KeyList{more.back()}, 0);
  ASSERT_TRUE(read.ok());
  ASSERT_EQ(read->offsets.size(), 1u);
  EXPECT_TRUE(Holds(more.back(), arena_->base() + read->offsets[0]));
  ASSERT_TRUE(store_->Release(std::vector<uint64_t>{read->lease_id}).ok());
}

}  // namespace
}  // namespace kvtier

namespace kvtier {
namespace {

TEST(TieredStoreLimitsTest, BlocksLargerThanARegionStayInDram) {
  const auto dir = std::filesystem::current_path() / ("tiers-big-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  auto arena = Arena::Create(16 << 20, "tiers-big");
  ASSERT_TRUE(arena.ok());
  NvmeOptions o;
  o.path = (dir / "nvme.dat").string();
  o.capacity = 8 << 20;  // two 4 MiB regions: a record holds at most 4 MiB - 8 KiB
  std::vector<RecoveredBlock> found;
  auto nvme = NvmeStore::Open(o, (*arena)->base(), (*arena)->size(), &found);
  ASSERT_TRUE(nvme.ok());
  StoreOptions options;
  options.nvme_admit = StoreOptions::Admit::kAll;
  options.demote_watermark = 0.01;  // write down anything, so only the size can stop it
  BlockStore store((*arena)->size(), options);
  store.AttachNvme(nvme->get(), (*arena)->base());
  NamespaceLayout layout;
  layout.model_id = "big";
  layout.block_bytes = 4 << 20;
  bool created;
  auto ns = store.RegisterNamespace(layout, &created);
  ASSERT_TRUE(ns.ok());
  auto grant = store.Allocate((*ns)->id, KeyList{{1, 1}, {2, 2}}, std::nullopt, 0);
  ASSERT_TRUE(grant.ok()) << grant.status();
  ASSERT_TRUE(store.Commit(grant->lease_id, {}, {}).ok());
  EXPECT_EQ(store.DemoteSome(8), 0u);  // nothing it could ever write: not even tried
  EXPECT_EQ((*nvme)->Counters().bytes_in, 0u);
  EXPECT_FALSE((*nvme)->Counters().degraded);
  nvme->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kvtier
