// The BlockStore with an HBM tier on the cpu DevicePool (memfd segments standing in for device
// memory): promotion of hot blocks, reads answered as (segment, offset), DRAM eviction keeping
// the HBM copy, copy-down for readers that cannot read HBM, demotion under pressure, pins, drops.
// The same store code runs with the cuda pool; only the pool's copies differ.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "server/dram/arena.h"
#include "server/hbm/device_pool.h"
#include "server/store/block_store.h"

namespace kvtier {
namespace {

using KeyList = std::vector<Key128>;
constexpr uint64_t kBlock = 1 << 20;
constexpr uint64_t kSegment = 4 << 20;  // one slab: four 1 MiB slots per segment

class HbmStoreTest : public ::testing::Test {
 protected:
  // DRAM of `dram_blocks` blocks; HBM of two segments (8 blocks).
  void Start(uint64_t dram_blocks = 16, uint32_t promote_hits = 2) {
    auto arena = Arena::Create(dram_blocks * kBlock, "hbm-test");
    ASSERT_TRUE(arena.ok()) << arena.status();
    arena_ = std::move(*arena);
    auto pool = CreateCpuDevicePool(2 * kSegment, kSegment);
    ASSERT_TRUE(pool.ok()) << pool.status();
    pool_ = std::move(*pool);
    StoreOptions options;
    options.hbm_promote_hits = promote_hits;
    store_ = std::make_unique<BlockStore>(arena_->size(), options);
    store_->AttachHbm(pool_.get(), arena_->base());
    NamespaceLayout layout;
    layout.model_id = "hbm";
    layout.block_bytes = kBlock;
    bool created;
    auto ns = store_->RegisterNamespace(layout, &created);
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_ = (*ns)->id;
  }
  void SetUp() override { Start(); }

  KeyList Keys(size_t n) {
    KeyList keys(n);
    for (Key128& k : keys) k = {rng_(), rng_()};
    return keys;
  }
  // The bytes block `key` holds: derived from the key, so any copy can be checked.
  static unsigned char Byte(const Key128& key, uint64_t i) {
    return static_cast<unsigned char>((key.lo >> (i % 8 * 8)) + i / 4096);
  }
  void Save(const KeyList& keys) {
    auto grant = store_->Allocate(ns_, keys, std::nullopt, 0);
    ASSERT_TRUE(grant.ok()) << grant.status();
    for (size_t i = 0; i < keys.size(); ++i) {
      auto* p = reinterpret_cast<unsigned char*>(arena_->base() + grant->offsets[i]);
      for (uint64_t b = 0; b < kBlock; b += 512) p[b] = Byte(keys[i], b);
    }
    ASSERT_TRUE(store_->Commit(grant->lease_id, {}, {}).ok());
  }
  bool Matches(const Key128& key, const unsigned char* p) {
    for (uint64_t b = 0; b < kBlock; b += 512) {
      if (p[b] != Byte(key, b)) return false;
    }
    return true;
  }
  // Acquire + release, `times` times (reads that make blocks hot).
  void Read(const KeyList& keys, int times = 1) {
    for (int t = 0; t < times; ++t) {
      auto g = store_->Acquire(ns_, keys, 0);
      ASSERT_TRUE(g.ok()) << g.status();
      ASSERT_EQ(g->offsets.size(), keys.size());
      ASSERT_TRUE(store_->Release(std::vector<uint64_t>{g->lease_id}).ok());
    }
  }
  std::vector<TierId> Tiers(const KeyList& keys) {
    auto a = store_->Peek(ns_, keys);
    EXPECT_TRUE(a.ok());
    return a.ok() ? a->tiers : std::vector<TierId>{};
  }
  TierCounters Hbm() {
    for (const TierCounters& t : store_->Stats().tiers) {
      if (t.name == "hbm") return t;
    }
    ADD_FAILURE() << "no hbm row";
    return {};
  }
  // The bytes of a block in the pool, through the segment's shared memfd (what a client maps).
  std::vector<unsigned char> PoolBytes(const HbmRef& ref) {
    SegmentExport e;
    EXPECT_TRUE(pool_->Export(ref.segment, &e).ok());
    void* p = mmap(nullptr, kSegment, PROT_READ, MAP_SHARED, e.fd, 0);
    EXPECT_NE(p, MAP_FAILED);
    std::vector<unsigned char> out(kBlock);
    std::memcpy(out.data(), static_cast<unsigned char*>(p) + ref.offset, kBlock);
    munmap(p, kSegment);
    return out;
  }

  std::unique_ptr<Arena> arena_;
  std::unique_ptr<DevicePool> pool_;
  std::unique_ptr<BlockStore> store_;
  uint64_t ns_ = 0;
  std::mt19937_64 rng_{std::random_device{}()};
};

TEST(DevicePoolTest, CpuPoolChecksRangesAndExportsEachSegment) {
  auto pool = CreateCpuDevicePool(3 * kSegment + 12345, kSegment);
  ASSERT_TRUE(pool.ok()) << pool.status();
  EXPECT_STREQ((*pool)->backend(), "cpu");
  EXPECT_EQ((*pool)->num_segments(), 3u);
  EXPECT_EQ((*pool)->capacity(), 3 * kSegment);
  std::vector<std::byte> in(8192, std::byte{0x5a}), out(8192);
  ASSERT_TRUE((*pool)->CopyIn(2, kSegment - 8192, in.data(), 8192).ok());
  ASSERT_TRUE((*pool)->CopyOut(2, kSegment - 8192, out.data(), 8192).ok());
  EXPECT_EQ(in, out);
  EXPECT_TRUE(absl::IsInvalidArgument((*pool)->CopyIn(2, kSegment - 4096, in.data(), 8192)));
  EXPECT_TRUE(absl::IsInvalidArgument((*pool)->CopyOut(3, 0, out.data(), 1)));
  SegmentExport e;
  ASSERT_TRUE((*pool)->Export(2, &e).ok());
  EXPECT_EQ(e.backend, HbmWireBackend::kCpu);
  EXPECT_GE(e.fd, 0);
  EXPECT_TRUE(absl::IsInvalidArgument((*pool)->Export(3, &e)));
  auto tiny = CreateCpuDevicePool(1 << 20, kSegment);
  EXPECT_TRUE(absl::IsInvalidArgument(tiny.status())) << tiny.status();
  EXPECT_NE(tiny.status().message().find("--hbm-capacity"), std::string::npos);
}

TEST(DevicePoolTest, CudaPoolWithoutADeviceSaysSo) {
  // On a machine with a device this allocates for real; the GPU suite covers that.
  auto pool = CreateCudaDevicePool(kSegment, kSegment, 0);
  if (pool.ok()) GTEST_SKIP() << "a CUDA device is present";
  EXPECT_TRUE(absl::IsFailedPrecondition(pool.status())) << pool.status();
}

TEST_F(HbmStoreTest, SecondReadPromotesIntoHbm) {
  const KeyList keys = Keys(3);
  Save(keys);
  Read(keys);
  EXPECT_EQ(store_->HbmQueued(), 0u) << "one read is not hot";
  Read(keys);
  EXPECT_EQ(store_->HbmQueued(), 3u);
  EXPECT_EQ(store_->PromoteSome(32), 3u);
  EXPECT_EQ(Tiers(keys), std::vector<TierId>(3, TierId::kHbm));
  const TierCounters hbm = Hbm();
  EXPECT_EQ(hbm.capacity_bytes, 2 * kSegment);
  EXPECT_EQ(hbm.used_bytes, 3 * kBlock);
  EXPECT_EQ(hbm.blocks, 3u);
  EXPECT_EQ(hbm.bytes_in, 3 * kBlock);
  EXPECT_EQ(hbm.status, "ok");
  // More reads do not queue it again.
  Read(keys);
  EXPECT_EQ(store_->HbmQueued(), 0u);
}

TEST_F(HbmStoreTest, HbmReadersGetSegmentAndOffsetOthersGetDram) {
  const KeyList keys = Keys(5);
  Save(keys);
  Read(keys, 2);
  ASSERT_EQ(store_->PromoteSome(32), 5u);
  auto g = store_->Acquire(ns_, keys, 0, /*accept_hbm=*/true);
  ASSERT_TRUE(g.ok()) << g.status();
  ASSERT_EQ(g->hbm.size(), 5u);
  for (size_t i = 0; i < keys.size(); ++i) {
    ASSERT_NE(g->hbm[i].segment, kNoHbmSegment);
    EXPECT_LT(g->hbm[i].segment, 2u);
    EXPECT_LE(g->hbm[i].offset + kBlock, kSegment);
    EXPECT_NE(g->offsets[i], kExistsOffset) << "still in DRAM too";
    const std::vector<unsigned char> bytes = PoolBytes(g->hbm[i]);
    EXPECT_TRUE(Matches(keys[i], bytes.data())) << i;
  }
  EXPECT_EQ(Hbm().hits, 5u);
  ASSERT_TRUE(store_->Release(std::vector<uint64_t>{g->lease_id}).ok());
  auto plain = store_->Acquire(ns_, keys, 0);
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE(plain->hbm.empty());
  ASSERT_TRUE(store_->Release(std::vector<uint64_t>{plain->lease_id}).ok());
}

TEST_F(HbmStoreTest, DramEvictionKeepsTheHbmCopyAndAPlainReadCopiesItDown) {
  const KeyList hot = Keys(1);
  Save(hot);
  Read(hot, 2);
  ASSERT_EQ(store_->PromoteSome(32), 1u);
  // Fill DRAM: the hot block's DRAM copy is clean (HBM holds it) and goes first.
  Save(Keys(16));
  auto g = store_->Acquire(ns_, hot, 0, /*accept_hbm=*/true);
  ASSERT_TRUE(g.ok()) << g.status();
  ASSERT_EQ(g->offsets.size(), 1u);
  EXPECT_EQ(g->offsets[0], kExistsOffset) << "only in HBM now";
  ASSERT_NE(g->hbm[0].segment, kNoHbmSegment);
  EXPECT_TRUE(Matches(hot[0], PoolBytes(g->hbm[0]).data()));
  ASSERT_TRUE(store_->Release(std::vector<uint64_t>{g->lease_id}).ok());
  // A reader that cannot read HBM gets it copied down into DRAM, bytes intact.
  auto plain = store_->Acquire(ns_, hot, 0);
  ASSERT_TRUE(plain.ok()) << plain.status();
  ASSERT_EQ(plain->offsets.size(), 1u);
  ASSERT_NE(plain->offsets[0], kExistsOffset);
  EXPECT_TRUE(
      Matches(hot[0], reinterpret_cast<unsigned char*>(arena_->base()) + plain->offsets[0]));
  ASSERT_TRUE(store_->Release(std::vector<uint64_t>{plain->lease_id}).ok());
  EXPECT_EQ(Tiers(hot)[0], TierId::kHbm) << "the HBM copy stays";
}

TEST_F(HbmStoreTest, AFullHbmDemotesItsColdestBlocksAndLosesNothing) {
  const KeyList hot = Keys(8);  // fills HBM
  Save(hot);
  Read(hot, 2);
  ASSERT_EQ(store_->PromoteSome(32), 8u);
  const KeyList more = Keys(8), extra = Keys(4);
  Save(more);   // DRAM full
  Save(extra);  // evicts clean DRAM copies of hot blocks: those live in HBM only now
  // Which hot blocks are held only in HBM now (no DRAM offset when read from HBM).
  auto hbm_only = [&] {
    KeyList out;
    for (const Key128& k : hot) {
      auto g = store_->Acquire(ns_, KeyList{k}, 0, /*accept_hbm=*/true);
      EXPECT_TRUE(g.ok());
      if (g->offsets[0] == kExistsOffset) out.push_back(k);
      EXPECT_TRUE(store_->Release(std::vector<uint64_t>{g->lease_id}).ok());
    }
    return out;
  };
  const KeyList only_before = hbm_only();
  ASSERT_FALSE(only_before.empty());
  const KeyList next = {extra[0]};
  Read(next, 2);
  ASSERT_EQ(store_->PromoteSome(32), 1u);
  // The victim was held only in HBM: demoted, i.e. copied down into DRAM, not lost.
  const KeyList only_after = hbm_only();
  size_t demoted = 0;
  for (const Key128& k : only_before) {
    if (std::find(only_after.begin(), only_after.end(), k) != only_after.end()) continue;
    ++demoted;
    EXPECT_EQ(Tiers(KeyList{k})[0], TierId::kDram);
  }
  EXPECT_EQ(demoted, 1u);
  EXPECT_EQ(Tiers(next)[0], TierId::kHbm);
  const TierCounters hbm = Hbm();
  EXPECT_EQ(hbm.blocks, 8u);
  EXPECT_EQ(hbm.used_bytes, 8 * kBlock);
  EXPECT_GE(hbm.evictions, 1u);
  // Every block is still here, with its bytes, read through DRAM (copied down where needed).
  KeyList all = hot;
  all.insert(all.end(), more.begin(), more.end());
  all.insert(all.end(), extra.begin(), extra.end());
  for (const Key128& k : all) {
    auto g = store_->Acquire(ns_, KeyList{k}, 0);
    ASSERT_TRUE(g.ok()) << g.status();
    ASSERT_EQ(g->offsets.size(), 1u) << KeyToHex(k);
    EXPECT_TRUE(Matches(k, reinterpret_cast<unsigned char*>(arena_->base()) + g->offsets[0]));
    ASSERT_TRUE(store_->Release(std::vector<uint64_t>{g->lease_id}).ok());
  }
}

TEST_F(HbmStoreTest, LeasedHbmBlocksAreNeverVictims) {
  const KeyList hot = Keys(8);
  Save(hot);
  Read(hot, 2);
  ASSERT_EQ(store_->PromoteSome(32), 8u);
  auto pinned = store_->Acquire(ns_, hot, 0, /*accept_hbm=*/true);
  ASSERT_TRUE(pinned.ok());
  const KeyList next = Keys(1);
  Save(next);
  Read(next, 2);
  EXPECT_EQ(store_->PromoteSome(32), 0u) << "every HBM block is being read";
  EXPECT_EQ(Tiers(next)[0], TierId::kDram);
  EXPECT_EQ(Tiers(hot), std::vector<TierId>(8, TierId::kHbm));
  ASSERT_TRUE(store_->Release(std::vector<uint64_t>{pinned->lease_id}).ok());
  Read(next);  // hot enough still: queued again
  EXPECT_EQ(store_->PromoteSome(32), 1u);
  EXPECT_EQ(Tiers(next)[0], TierId::kHbm);
}

TEST_F(HbmStoreTest, DropFreesTheHbmSlot) {
  const KeyList keys = Keys(2);
  Save(keys);
  Read(keys, 2);
  ASSERT_EQ(store_->PromoteSome(32), 2u);
  auto dropped = store_->Drop(ns_, keys, false);
  ASSERT_TRUE(dropped.ok());
  EXPECT_EQ(dropped->dropped, 2u);
  EXPECT_EQ(Hbm().used_bytes, 0u);
  EXPECT_EQ(Hbm().blocks, 0u);
  // The slots are reusable.
  const KeyList again = Keys(8);
  Save(again);
  Read(again, 2);
  EXPECT_EQ(store_->PromoteSome(32), 8u);
}

TEST_F(HbmStoreTest, PromoteHitsZeroNeverPromotes) {
  Start(16, /*promote_hits=*/0);
  const KeyList keys = Keys(2);
  Save(keys);
  Read(keys, 5);
  EXPECT_EQ(store_->HbmQueued(), 0u);
  EXPECT_EQ(store_->PromoteSome(32), 0u);
}

}  // namespace
}  // namespace kvtier
