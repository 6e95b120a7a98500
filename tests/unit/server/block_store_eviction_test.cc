#include <gtest/gtest.h>

#include "tests/unit/server/store_fixture.h"

namespace kvtier {
namespace {

class EvictionTest : public StoreTest {
 protected:
  void SetUp() override { MakeStore(4 * kBlock); }  // one slab: exactly four 1 MiB blocks
};

TEST_F(EvictionTest, FullStoreEvictsToMakeRoom) {
  auto first = RandomKeys(4);
  for (const Key128& k : first) Save({k});
  auto more = RandomKeys(2);
  Save(more);
  EXPECT_EQ(Prefix(more), 2u);
  EXPECT_EQ(store_->Stats().tiers[0].evictions, 2u);
  EXPECT_EQ(store_->Stats().tiers[0].blocks, 4u);
}

TEST_F(EvictionTest, AChainIsEatenFromItsTail) {
  auto chain = RandomKeys(4);
  Save(chain);  // one batch: each key's parent is the one before
  Save(RandomKeys(1));
  EXPECT_EQ(Prefix(chain), 3u);  // the heads were passed over once: the tail went, not the head
}

TEST_F(EvictionTest, AnUnreadChainHeadIsNotKeptForever) {
  auto chain = RandomKeys(4);
  Save(chain);
  Save(RandomKeys(1));  // the hand passes the heads over once and takes the tail
  Save(RandomKeys(1));  // next lap: the unread head is judged like any block
  EXPECT_EQ(Prefix(chain), 0u);
}

TEST_F(EvictionTest, AReadRearmsAChainHead) {
  auto chain = RandomKeys(4);
  Save(chain);
  Save(RandomKeys(1));  // takes chain[3]; chain[0..2] were passed over once
  auto read = store_->Acquire(ns_, KeyList{chain[0], chain[1], chain[2]}, 0);
  ASSERT_EQ(read->offsets.size(), 3u);
  ASSERT_TRUE(store_->Release(std::vector<uint64_t>{read->lease_id}).ok());
  Save(RandomKeys(1));  // the read chain stays; the unread single block goes
  EXPECT_EQ(Prefix(chain), 3u);
}

TEST_F(EvictionTest, ChainsLinkAcrossBatchesThroughParent) {
  auto chain = RandomKeys(4);
  Save({chain[0], chain[1]});
  Save({chain[2], chain[3]}, chain[1]);
  Save(RandomKeys(1));
  EXPECT_EQ(Prefix(chain), 3u);  // unlinked, chain[1] would be a leaf older than chain[3]
}

TEST_F(EvictionTest, RecentlyReadBlocksGetASecondChance) {
  auto keys = RandomKeys(4);
  for (const Key128& k : keys) Save({k});
  auto read = store_->Acquire(ns_, KeyList{keys[0]}, 0);  // oldest, but read
  ASSERT_TRUE(store_->Release(std::vector<uint64_t>{read->lease_id}).ok());
  Save(RandomKeys(1));
  EXPECT_EQ(Prefix({keys[0]}), 1u);
  EXPECT_EQ(Prefix({keys[1]}), 0u);
}

TEST_F(EvictionTest, LeasedBlocksAreNeverEvictedAndAFullStoreFailsFast) {
  auto keys = RandomKeys(4);
  for (const Key128& k : keys) Save({k});
  auto read = store_->Acquire(ns_, KeyList{keys[0]}, 0);
  auto read2 = store_->Acquire(ns_, KeyList{keys[1]}, 0);
  auto read3 = store_->Acquire(ns_, KeyList{keys[2]}, 0);
  auto read4 = store_->Acquire(ns_, KeyList{keys[3]}, 0);
  auto fail = store_->Allocate(ns_, RandomKeys(2), std::nullopt, 0);
  EXPECT_EQ(fail.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(fail.status().message().find("dram"), std::string::npos);
  EXPECT_EQ(store_->Stats().rejected_writes, 1u);
  ASSERT_TRUE(store_->Release(std::vector<uint64_t>{read->lease_id}).ok());
  // One slot can be freed now, but two are asked for: all or nothing.
  auto still = store_->Allocate(ns_, RandomKeys(2), std::nullopt, 0);
  EXPECT_EQ(still.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(UsedBytes(), 3 * kBlock);  // the one freed slot, and nothing half-allocated
  for (auto* r : {&read2, &read3, &read4}) {
    ASSERT_TRUE(store_->Release(std::vector<uint64_t>{(*r)->lease_id}).ok());
  }
  for (size_t i = 1; i < 4; ++i) EXPECT_EQ(Prefix({keys[i]}), 1u);
}

TEST_F(EvictionTest, AnotherBlockSizeTakesSlabsBack) {
  for (int i = 0; i < 4; ++i) Save(RandomKeys(1));
  NamespaceLayout layout;
  layout.model_id = "other";
  layout.block_bytes = 256 << 10;
  bool created;
  auto other = store_->RegisterNamespace(layout, &created);
  ASSERT_TRUE(other.ok());
  auto grant = store_->Allocate((*other)->id, RandomKeys(1), std::nullopt, 0);
  ASSERT_TRUE(grant.ok()) << grant.status();
  EXPECT_EQ(store_->Stats().tiers[0].evictions, 4u);  // the whole slab had to empty
}

}  // namespace
}  // namespace kvtier
