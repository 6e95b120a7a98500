#include "server/index/lease_table.h"

#include <gtest/gtest.h>

namespace kvtier {
namespace {

TEST(LeaseTableTest, AddTakeAndExpire) {
  LeaseTable table;
  uint64_t a = table.Add(Lease{0, LeaseKind::kRead, 1, 100, {{1, 1}}});
  uint64_t b = table.Add(Lease{0, LeaseKind::kWrite, 1, 200, {{2, 2}, {3, 3}}});
  EXPECT_NE(a, 0u);
  EXPECT_NE(a, b);
  EXPECT_EQ(table.Expired(150), std::vector<uint64_t>{a});
  ASSERT_TRUE(table.Take(a).has_value());
  EXPECT_FALSE(table.Take(a).has_value());
  table.RemoveKeys(b, {{2, 2}});
  ASSERT_TRUE(table.Get(b).has_value());
  EXPECT_EQ(table.Get(b)->keys.size(), 1u);
  table.RemoveKeys(b, {{3, 3}});
  EXPECT_FALSE(table.Get(b).has_value());
  EXPECT_EQ(table.size(), 0u);
}

}  // namespace
}  // namespace kvtier
