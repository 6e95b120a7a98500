#include "common/block_key.h"

#include <gtest/gtest.h>

#include <random>

namespace kvtier {
namespace {

TEST(BlockKeyTest, ChainDependsOnParentTokensSeedAndExtra) {
  std::vector<int32_t> tokens = {1, 2, 3, 4};
  Key128 a = HashChainBlock(7, {}, tokens.data(), tokens.size());
  EXPECT_EQ(a, HashChainBlock(7, {}, tokens.data(), tokens.size()));
  EXPECT_NE(a, HashChainBlock(8, {}, tokens.data(), tokens.size()));
  EXPECT_NE(a, HashChainBlock(7, Key128{1, 0}, tokens.data(), tokens.size()));
  EXPECT_NE(a, HashChainBlock(7, {}, tokens.data(), tokens.size(), "lora-1"));
  tokens[3] = 5;
  EXPECT_NE(a, HashChainBlock(7, {}, tokens.data(), tokens.size()));
}

TEST(BlockKeyTest, HexRoundTripsAndRejectsBadInput) {
  std::mt19937_64 rng(std::random_device{}());
  for (int i = 0; i < 100; ++i) {
    Key128 k{rng(), rng()};
    auto back = KeyFromHex(KeyToHex(k));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, k);
  }
  EXPECT_EQ(KeyToHex(Key128{1, 2}), "00000000000000020000000000000001");
  EXPECT_FALSE(KeyFromHex("abc").ok());
  EXPECT_FALSE(KeyFromHex(std::string(31, '0') + "g").ok());
}

TEST(BlockKeyTest, DecodeKeysChecksLengthAndNamesTheField) {
  std::vector<Key128> keys = {{1, 2}, {3, 4}, {5, 6}};
  std::string wire = EncodeKeys(keys.data(), keys.size());
  ASSERT_EQ(wire.size(), 48u);
  auto decoded = DecodeKeys(wire, "keys");
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, keys);
  auto bad = DecodeKeys(wire.substr(0, 17), "keys");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("keys: length 17"), std::string::npos);
  std::string one;
  AppendKey({9, 10}, &one);
  EXPECT_EQ(*DecodeKeys(one, "parent_key"), (std::vector<Key128>{{9, 10}}));
}

}  // namespace
}  // namespace kvtier
