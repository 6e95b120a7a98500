#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "common/block_key.h"
#include "tests/integration/daemon_fixture.h"
#include "tests/support/wait.h"

namespace kvtier::testing {
namespace {

TEST_F(DaemonTest, SaveThenLoadReturnsTheSameBytes) {
  Namespace ns = Register(256 << 10);
  auto keys = RandomKeys(8);
  std::vector<std::vector<std::byte>> blocks;
  std::vector<const void*> src;
  for (size_t i = 0; i < keys.size(); ++i) {
    blocks.push_back(RandomBytes(ns.block_bytes, rng_()));
    src.push_back(blocks.back().data());
  }
  size_t saved = 0;
  ASSERT_TRUE(client_->Save(ns, keys, src, &saved).ok());
  EXPECT_EQ(saved, 8u);
  // Saving again writes nothing.
  ASSERT_TRUE(client_->Save(ns, keys, src, &saved).ok());
  EXPECT_EQ(saved, 0u);

  LookupResult lookup;
  ASSERT_TRUE(client_->Lookup(ns.id, keys, &lookup).ok());
  EXPECT_EQ(lookup.prefix_blocks, 8u);
  ASSERT_EQ(lookup.tiers.size(), 8u);
  EXPECT_EQ(lookup.tiers[0], Tier::kDram);

  std::vector<std::vector<std::byte>> out(8, std::vector<std::byte>(ns.block_bytes));
  std::vector<void*> dst;
  for (auto& o : out) dst.push_back(o.data());
  size_t loaded = 0;
  ASSERT_TRUE(client_->Load(ns, keys, dst, &loaded).ok());
  ASSERT_EQ(loaded, 8u);
  for (size_t i = 0; i < 8; ++i) EXPECT_EQ(out[i], blocks[i]) << "block " << i;

  DaemonStats stats;
  ASSERT_TRUE(client_->Stats(&stats).ok());
  EXPECT_EQ(stats.leases, 0u);
  ASSERT_FALSE(stats.tiers.empty());
  EXPECT_EQ(stats.tiers[0].name, "dram");
  EXPECT_EQ(stats.tiers[0].blocks, 8u);
}

TEST_F(DaemonTest, LoadStopsAtTheFirstMissingBlock) {
  Namespace ns = Register(64 << 10);
  auto keys = RandomKeys(4);
  auto data = RandomBytes(ns.block_bytes, 1);
  std::vector<const void*> two = {data.data(), data.data()};
  ASSERT_TRUE(client_->Save(ns, {keys.data(), 2}, two).ok());
  std::vector<std::byte> sink(ns.block_bytes * 4);
  std::vector<void*> dst;
  for (int i = 0; i < 4; ++i) dst.push_back(sink.data() + i * ns.block_bytes);
  size_t loaded = 99;
  ASSERT_TRUE(client_->Load(ns, keys, dst, &loaded).ok());
  EXPECT_EQ(loaded, 2u);
}

TEST_F(DaemonTest, ZeroCopyLeasesWriteAndReadTheArena) {
  Namespace ns = Register(128 << 10);
  auto keys = RandomKeys(3);
  std::unique_ptr<WriteLease> w;
  ASSERT_TRUE(client_->BeginWrite(ns, keys, {}, &w).ok());
  ASSERT_EQ(w->size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_EQ(w->block(i).size(), ns.block_bytes);
    std::memset(w->block(i).data(), 0x40 + static_cast<int>(i), ns.block_bytes);
  }
  ASSERT_TRUE(w->Commit().ok());
  std::unique_ptr<ReadLease> r;
  ASSERT_TRUE(client_->AcquireRead(ns, keys, &r).ok());
  ASSERT_EQ(r->size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(r->block(i)[ns.block_bytes - 1], std::byte(0x40 + i));
  }
  DaemonStats stats;
  ASSERT_TRUE(client_->Stats(&stats).ok());
  EXPECT_EQ(stats.leases, 1u);
  r.reset();  // the destructor releases
  ASSERT_TRUE(client_->Stats(&stats).ok());
  EXPECT_EQ(stats.leases, 0u);
}

TEST_F(DaemonTest, AnAbandonedWriteLeaseIsAborted) {
  Namespace ns = Register(128 << 10);
  auto keys = RandomKeys(2);
  {
    std::unique_ptr<WriteLease> w;
    ASSERT_TRUE(client_->BeginWrite(ns, keys, {}, &w).ok());
  }
  LookupResult lookup;
  ASSERT_TRUE(client_->Lookup(ns.id, keys, &lookup).ok());
  EXPECT_EQ(lookup.prefix_blocks, 0u);
  DaemonStats stats;
  ASSERT_TRUE(client_->Stats(&stats).ok());
  EXPECT_EQ(stats.tiers[0].used_bytes, 0u);
}

TEST_F(DaemonTest, TwoProcessesShareBlocks) {
  Namespace ns = Register(512 << 10);
  auto keys = RandomKeys(6);
  const uint64_t seed = rng_();
  // Another process saves with its own connection and mapping, then exits.
  std::vector<std::string> argv = {BinPath("kvtier-test-peer"), "save", daemon_->socket_path(),
                                   std::to_string(ns.block_bytes), std::to_string(seed)};
  for (const BlockKey& k : keys) argv.push_back(KeyToHex({k.lo, k.hi}));
  ProcessResult saver = RunProgram(argv, 30);
  ASSERT_EQ(saver.exit_code, 0) << saver.output;

  auto reader = Connect();
  std::vector<std::vector<std::byte>> out(keys.size(), std::vector<std::byte>(ns.block_bytes));
  std::vector<void*> dst;
  for (auto& o : out) dst.push_back(o.data());
  size_t loaded = 0;
  ASSERT_TRUE(reader->Load(ns, keys, dst, &loaded).ok());
  ASSERT_EQ(loaded, keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(out[i], RandomBytes(ns.block_bytes, seed + i)) << "block " << i;
  }
}

TEST_F(DaemonTest, PrefixHasherKeysWork) {
  NamespaceLayout layout;
  layout.model_id = "tiny";
  layout.num_layers = 2;
  layout.kv_heads = 2;
  layout.head_size = 64;
  layout.dtype = "fp16";
  layout.tokens_per_block = 16;
  Namespace ns;
  ASSERT_TRUE(client_->RegisterNamespace(layout, &ns).ok());
  EXPECT_EQ(ns.block_bytes, 2u * 2 * 16 * 2 * 64 * 2);
  std::vector<int32_t> prompt(50);
  for (int i = 0; i < 50; ++i) prompt[i] = i * 7;
  PrefixHasher hasher(ns.id, 16);
  auto keys = hasher.HashTokens(prompt);
  ASSERT_EQ(keys.size(), 3u);
  auto data = RandomBytes(ns.block_bytes, 5);
  std::vector<const void*> src(3, data.data());
  ASSERT_TRUE(client_->Save(ns, keys, src).ok());
  // Another prompt with the same first 32 tokens hits two blocks.
  std::vector<int32_t> other = prompt;
  other[40] = -1;
  LookupResult lookup;
  ASSERT_TRUE(client_->Lookup(ns.id, hasher.HashTokens(other), &lookup).ok());
  EXPECT_EQ(lookup.prefix_blocks, 2u);
}

}  // namespace
}  // namespace kvtier::testing

namespace kvtier::testing {
namespace {

TEST_F(DaemonTest, TierRatesFollowTheTraffic) {
  Namespace ns = Register(1 << 20);
  auto keys = RandomKeys(16);
  auto data = RandomBytes(ns.block_bytes, 3);
  std::vector<const void*> src(keys.size(), data.data());
  ASSERT_TRUE(client_->Save(ns, keys, src).ok());
  DaemonStats stats;
  // The sampler's next interval includes the 16 MiB just written...
  ASSERT_TRUE(
      WaitUntil([&] { return client_->Stats(&stats).ok() && stats.tiers[0].write_bytes_per_s > 0; },
                absl::Seconds(5)));
  // ...and an interval without traffic brings it back to zero.
  ASSERT_TRUE(WaitUntil(
      [&] { return client_->Stats(&stats).ok() && stats.tiers[0].write_bytes_per_s == 0; },
      absl::Seconds(5)));
}

}  // namespace
}  // namespace kvtier::testing
