#include "server/dram/slab_allocator.h"

#include <gtest/gtest.h>

#include <set>

namespace kvtier {
namespace {

constexpr uint64_t kSlab = SlabAllocator::kSlabBytes;

TEST(SlabAllocatorTest, HandsOutDistinctAlignedSlotsUntilFull) {
  SlabAllocator alloc(2 * kSlab);
  const uint64_t slot = SlabAllocator::SlotBytes(1 << 20);
  std::set<uint64_t> offsets;
  while (auto o = alloc.Allocate(slot)) {
    EXPECT_EQ(*o % 4096, 0u);
    EXPECT_LE(*o + slot, alloc.capacity());
    EXPECT_TRUE(offsets.insert(*o).second);
  }
  EXPECT_EQ(offsets.size(), 2 * kSlab / slot);
  EXPECT_EQ(alloc.used_bytes(), alloc.capacity());
  alloc.Free(*offsets.begin(), slot);
  EXPECT_EQ(alloc.Allocate(slot), *offsets.begin());
}

TEST(SlabAllocatorTest, SlotSizesRoundUpToPages) {
  EXPECT_EQ(SlabAllocator::SlotBytes(1), 4096u);
  EXPECT_EQ(SlabAllocator::SlotBytes(4096), 4096u);
  EXPECT_EQ(SlabAllocator::SlotBytes(4097), 8192u);
}

TEST(SlabAllocatorTest, EmptySlabsMoveBetweenSizeClasses) {
  SlabAllocator alloc(kSlab);
  const uint64_t small = 64 << 10;
  std::vector<uint64_t> got;
  while (auto o = alloc.Allocate(small)) got.push_back(*o);
  EXPECT_FALSE(alloc.Allocate(1 << 20).has_value());  // the only slab is the small class's
  for (uint64_t o : got) alloc.Free(o, small);
  EXPECT_EQ(alloc.used_bytes(), 0u);
  EXPECT_EQ(alloc.free_slabs(), 1u);
  EXPECT_TRUE(alloc.Allocate(1 << 20).has_value());
}

TEST(SlabAllocatorTest, LargeSlotsTakeRunsOfSlabs) {
  SlabAllocator alloc(4 * kSlab);
  auto first = alloc.Allocate(kSlab + 4096);  // 2 slabs
  ASSERT_TRUE(first.has_value());
  auto second = alloc.Allocate(kSlab + 4096);
  ASSERT_TRUE(second.has_value());
  EXPECT_FALSE(alloc.Allocate(kSlab + 4096).has_value());
  EXPECT_FALSE(alloc.Allocate(4096).has_value());
  alloc.Free(*first, kSlab + 4096);
  EXPECT_EQ(alloc.free_slabs(), 2u);
  EXPECT_FALSE(alloc.Allocate(5 * kSlab).has_value());
}

TEST(SlabAllocatorTest, ArenaSmallerThanOneSlab) {
  SlabAllocator alloc(1 << 20);
  EXPECT_EQ(alloc.capacity(), 1u << 20);
  EXPECT_TRUE(alloc.Allocate(256 << 10).has_value());
  EXPECT_FALSE(alloc.Allocate(2 << 20).has_value());
}

}  // namespace
}  // namespace kvtier
