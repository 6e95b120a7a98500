#include "server/policy/sieve_policy.h"

#include <gtest/gtest.h>

#include <set>

namespace kvtier {
namespace {

TEST(SievePolicyTest, EvictsOldestUnvisitedFirst) {
  SievePolicy policy;
  for (uint64_t s = 1; s <= 4; ++s) policy.Insert(s);
  std::set<uint64_t> visited = {1, 2};
  auto judge = [&](uint64_t s) {
    if (visited.erase(s)) return Verdict::kSecondChance;
    return Verdict::kEvict;
  };
  EXPECT_EQ(policy.EvictOne(judge), 3u);  // 1 and 2 get second chances
  EXPECT_EQ(policy.EvictOne(judge), 4u);
  EXPECT_EQ(policy.EvictOne(judge), 1u);  // their marks are gone now
  EXPECT_EQ(policy.size(), 1u);
}

TEST(SievePolicyTest, PinnedBlocksAreSkippedAndNothingEvictableIsReported) {
  SievePolicy policy;
  for (uint64_t s = 1; s <= 3; ++s) policy.Insert(s);
  auto pin_all = [](uint64_t) { return Verdict::kPinned; };
  EXPECT_FALSE(policy.EvictOne(pin_all).has_value());
  EXPECT_EQ(policy.size(), 3u);
  auto only_two = [](uint64_t s) { return s == 2 ? Verdict::kEvict : Verdict::kPinned; };
  EXPECT_EQ(policy.EvictOne(only_two), 2u);
  // A scan that found nothing leaves the hand alone: the block it pointed at goes next.
  EXPECT_FALSE(policy.EvictOne(pin_all).has_value());
  auto any = [](uint64_t) { return Verdict::kEvict; };
  EXPECT_EQ(policy.EvictOne(any), 3u);
}

TEST(SievePolicyTest, RemoveKeepsTheListConsistent) {
  SievePolicy policy;
  for (uint64_t s = 1; s <= 5; ++s) policy.Insert(s);
  policy.Remove(3);
  policy.Remove(1);
  policy.Remove(42);  // unknown: ignored
  std::vector<uint64_t> order;
  auto take = [&](uint64_t s) {
    order.push_back(s);
    return Verdict::kEvict;
  };
  while (policy.EvictOne(take)) {
  }
  EXPECT_EQ(order, (std::vector<uint64_t>{2, 4, 5}));
}

}  // namespace
}  // namespace kvtier
