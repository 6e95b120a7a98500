#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "tests/unit/server/store_fixture.h"

namespace kvtier {
namespace {

TEST_F(StoreTest, RegisterIsIdempotent) {
  NamespaceLayout layout;
  layout.model_id = "test-model";
  layout.block_bytes = kBlock;
  bool created = true;
  auto again = store_->RegisterNamespace(layout, &created);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(created);
  EXPECT_EQ((*again)->id, ns_);
  layout.block_bytes = 2 * kBlock;
  auto other = store_->RegisterNamespace(layout, &created);
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE(created);
  EXPECT_NE((*other)->id, ns_);
}

TEST_F(StoreTest, WriteIsInvisibleUntilCommitThenReadable) {
  auto keys = RandomKeys(3);
  auto grant = store_->Allocate(ns_, keys, std::nullopt, 0);
  ASSERT_TRUE(grant.ok());
  ASSERT_EQ(grant->offsets.size(), 3u);
  std::set<uint64_t> distinct(grant->offsets.begin(), grant->offsets.end());
  EXPECT_EQ(distinct.size(), 3u);
  EXPECT_EQ(Prefix(keys), 0u);
  ASSERT_EQ(*store_->Commit(grant->lease_id, KeyList{}, {}), 3u);
  EXPECT_EQ(Prefix(keys), 3u);

  auto read = store_->Acquire(ns_, keys, 0);
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(read->offsets, grant->offsets);
  EXPECT_EQ(*store_->Release(std::vector<uint64_t>{read->lease_id}), 1u);
  EXPECT_EQ(store_->Stats().leases, 0u);
}

TEST_F(StoreTest, LookupStopsAtTheFirstMiss) {
  auto keys = RandomKeys(4);
  Save({keys[0], keys[1], keys[3]});
  EXPECT_EQ(Prefix(keys), 2u);
  auto read = store_->Acquire(ns_, keys, 0);
  EXPECT_EQ(read->offsets.size(), 2u);
}

TEST_F(StoreTest, PresentKeysNeedNoWrite) {
  auto keys = RandomKeys(2);
  Save({keys[0]});
  auto grant = store_->Allocate(ns_, keys, std::nullopt, 0);
  ASSERT_TRUE(grant.ok());
  EXPECT_EQ(grant->offsets[0], kExistsOffset);
  EXPECT_NE(grant->offsets[1], kExistsOffset);
  // A key asked for twice in one batch is written once.
  auto dup = store_->Allocate(ns_, KeyList{keys[1], keys[1]}, std::nullopt, 0);
  ASSERT_TRUE(dup.ok());
  EXPECT_EQ(dup->offsets[0], kExistsOffset);  // being written under the first lease
  EXPECT_EQ(dup->lease_id, 0u);
}

TEST_F(StoreTest, CommitErrorsNameTheFieldAndChangeNothing) {
  auto keys = RandomKeys(2);
  auto grant = store_->Allocate(ns_, keys, std::nullopt, 0);
  ASSERT_TRUE(grant.ok());
  auto stranger = RandomKeys(1);
  auto bad = store_->Commit(grant->lease_id, KeyList{keys[0], stranger[0]}, {});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(bad.status().message().find("keys[1]"), std::string::npos) << bad.status();
  EXPECT_EQ(Prefix(keys), 0u);  // keys[0] was not committed either

  auto count = store_->Commit(grant->lease_id, KeyList{}, std::vector<uint64_t>{1});
  EXPECT_EQ(count.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(count.status().message().find("checksums"), std::string::npos);

  ASSERT_TRUE(store_->Commit(grant->lease_id, KeyList{keys[0]}, {}).ok());
  auto twice = store_->Commit(grant->lease_id, KeyList{keys[0]}, {});
  EXPECT_EQ(twice.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(twice.status().message().find("already committed"), std::string::npos);
  ASSERT_TRUE(store_->Commit(grant->lease_id, KeyList{keys[1]}, {}).ok());
  auto gone = store_->Commit(grant->lease_id, KeyList{}, {});
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(gone.status().message().find("lease_id"), std::string::npos);
}

TEST_F(StoreTest, ReleaseOfAnUnknownLeaseIsNotFound) {
  auto r = store_->Release(std::vector<uint64_t>{12345});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("lease_ids[0]"), std::string::npos);
}

TEST_F(StoreTest, UnknownNamespaceAndOversizeBatch) {
  auto keys = RandomKeys(2);
  auto r = store_->Lookup(ns_ + 1, keys);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(r.status().message().find("namespace_id"), std::string::npos);
  MakeStore(16 * kBlock, /*max_batch=*/8);
  auto big = store_->Allocate(ns_, RandomKeys(9), std::nullopt, 0);
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(big.status().message().find("batch limit"), std::string::npos);
  auto lease = store_->Acquire(ns_, keys, 10'000'000);
  EXPECT_EQ(lease.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(lease.status().message().find("lease_ms"), std::string::npos);
}

TEST_F(StoreTest, AbortedWriteFreesItsSlots) {
  auto grant = store_->Allocate(ns_, RandomKeys(4), std::nullopt, 0);
  ASSERT_TRUE(grant.ok());
  EXPECT_EQ(UsedBytes(), 4 * kBlock);
  ASSERT_TRUE(store_->Release(std::vector<uint64_t>{grant->lease_id}).ok());
  EXPECT_EQ(UsedBytes(), 0u);
}

TEST_F(StoreTest, ExpiredLeasesUnpinAndFree) {
  auto keys = RandomKeys(2);
  Save(keys);
  auto read = store_->Acquire(ns_, keys, 100);
  ASSERT_TRUE(read.ok());
  auto write = store_->Allocate(ns_, RandomKeys(3), std::nullopt, 100);
  ASSERT_TRUE(write.ok());
  EXPECT_EQ(store_->Drop(ns_, keys, false)->busy, 2u);  // pinned by the reader

  now_ms_ += 99;
  EXPECT_EQ(store_->ExpireLeases(), 0u);
  now_ms_ += 1;
  EXPECT_EQ(store_->ExpireLeases(), 2u);
  EXPECT_EQ(UsedBytes(), 2 * kBlock);  // the uncommitted three are gone
  auto drop = store_->Drop(ns_, keys, false);
  EXPECT_EQ(drop->dropped, 2u);
  EXPECT_EQ(UsedBytes(), 0u);
  // The reader comes back late: its lease is gone.
  EXPECT_EQ(store_->Release(std::vector<uint64_t>{read->lease_id}).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(StoreTest, DropAllAndListBlocks) {
  Save(RandomKeys(5));
  bool truncated = false;
  EXPECT_EQ(store_->ListBlocks(ns_, 3, &truncated).size(), 3u);
  EXPECT_TRUE(truncated);
  EXPECT_EQ(store_->ListBlocks(0, 100, &truncated).size(), 5u);
  EXPECT_FALSE(truncated);
  auto drop = store_->Drop(ns_, KeyList{}, true);
  ASSERT_TRUE(drop.ok());
  EXPECT_EQ(drop->dropped, 5u);
  EXPECT_EQ(store_->Stats().tiers[0].blocks, 0u);
  EXPECT_EQ(store_->Drop(ns_, KeyList{}, false).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(StoreTest, ConcurrentClientsKeepTheBooksStraight) {
  MakeStore(32 * kBlock);
  // Bounded: 4 threads x 300 rounds over a shared pool of 64 keys, on a 32-block store.
  auto pool = RandomKeys(64);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int round = 0; round < 300; ++round) {
        std::vector<Key128> keys = {pool[rng() % 64], pool[rng() % 64]};
        if (rng() % 2) {
          auto g = store_->Allocate(ns_, keys, std::nullopt, 0);
          if (g.ok() && g->lease_id) (void)store_->Commit(g->lease_id, KeyList{}, {});
        } else {
          auto r = store_->Acquire(ns_, keys, 0);
          if (r.ok() && r->lease_id) (void)store_->Release(std::vector<uint64_t>{r->lease_id});
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  StoreStats s = store_->Stats();
  EXPECT_EQ(s.leases, 0u);
  EXPECT_EQ(s.tiers[0].used_bytes, s.tiers[0].blocks * kBlock);
  EXPECT_LE(s.tiers[0].blocks, 32u);
  bool truncated;
  for (const BlockSnapshot& b : store_->ListBlocks(0, 1000, &truncated)) {
    EXPECT_EQ(b.readers, 0u);
    EXPECT_EQ(b.state, BlockState::kReady);
  }
}

}  // namespace
}  // namespace kvtier
