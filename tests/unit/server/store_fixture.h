// A BlockStore on a fake clock, with 1 MiB opaque blocks, for the store's unit tests.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <random>

#include "server/store/block_store.h"

namespace kvtier {

using KeyList = std::vector<Key128>;

class StoreTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kBlock = 1 << 20;

  void MakeStore(uint64_t capacity, uint32_t max_batch = 4096) {
    StoreOptions options;
    options.now_ms = [this] { return now_ms_; };
    options.max_batch_keys = max_batch;
    store_ = std::make_unique<BlockStore>(capacity, options);
    NamespaceLayout layout;
    layout.model_id = "test-model";
    layout.block_bytes = kBlock;
    bool created = false;
    auto ns = store_->RegisterNamespace(layout, &created);
    ASSERT_TRUE(ns.ok()) << ns.status();
    ns_ = (*ns)->id;
  }

  void SetUp() override { MakeStore(16 * kBlock); }

  std::vector<Key128> RandomKeys(size_t n) {
    std::vector<Key128> keys(n);
    for (Key128& k : keys) k = {rng_(), rng_()};
    return keys;
  }

  // Allocate + commit; expects success.
  void Save(const std::vector<Key128>& keys, std::optional<Key128> parent = std::nullopt) {
    auto grant = store_->Allocate(ns_, keys, parent, 0);
    ASSERT_TRUE(grant.ok()) << grant.status();
    if (grant->lease_id != 0) {
      auto n = store_->Commit(grant->lease_id, {}, {});
      ASSERT_TRUE(n.ok()) << n.status();
    }
  }

  uint32_t Prefix(const std::vector<Key128>& keys) {
    auto answer = store_->Lookup(ns_, keys);
    EXPECT_TRUE(answer.ok()) << answer.status();
    return answer.ok() ? answer->prefix_blocks : 0;
  }

  uint64_t UsedBytes() { return store_->Stats().tiers[0].used_bytes; }

  int64_t now_ms_ = 1'000'000;
  std::unique_ptr<BlockStore> store_;
  uint64_t ns_ = 0;
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace kvtier
