#include <numeric>
#include <vector>

#include "common/block_key.h"
#include "gtest/gtest.h"
#include "kvtier/client.h"

namespace kvtier {
namespace {

constexpr uint64_t kNs = 0x1234abcd5678ef90ULL;

std::vector<int32_t> Tokens(size_t n, int32_t first = 1) {
  std::vector<int32_t> tokens(n);
  std::iota(tokens.begin(), tokens.end(), first);
  return tokens;
}

TEST(PrefixHasherTest, Deterministic) {
  const auto tokens = Tokens(64);
  PrefixHasher a(kNs, 16), b(kNs, 16);
  EXPECT_EQ(a.HashTokens(tokens), b.HashTokens(tokens));
  EXPECT_EQ(a.HashTokens(tokens).size(), 4u);
}

TEST(PrefixHasherTest, KeysDifferAcrossBlocksAndNamespaces) {
  const auto tokens = Tokens(32);
  const auto keys = PrefixHasher(kNs, 16).HashTokens(tokens);
  ASSERT_EQ(keys.size(), 2u);
  EXPECT_NE(keys[0], keys[1]);
  EXPECT_NE(keys[0], PrefixHasher(kNs + 1, 16).HashTokens(tokens)[0]);
}

TEST(PrefixHasherTest, ChainingMatchesOneCall) {
  const auto tokens = Tokens(32);
  PrefixHasher hasher(kNs, 16);
  const auto both = hasher.HashTokens(tokens);
  const auto first = hasher.HashTokens(std::span(tokens).first(16));
  const auto second = hasher.HashTokens(std::span(tokens).subspan(16), first.at(0));
  ASSERT_EQ(both.size(), 2u);
  EXPECT_EQ(both[0], first.at(0));
  EXPECT_EQ(both[1], second.at(0));
}

TEST(PrefixHasherTest, PartialTrailingBlockIgnored) {
  PrefixHasher hasher(kNs, 16);
  EXPECT_EQ(hasher.HashTokens(Tokens(47)), hasher.HashTokens(Tokens(32)));
  EXPECT_TRUE(hasher.HashTokens(Tokens(15)).empty());
  EXPECT_TRUE(hasher.HashTokens({}).empty());
}

TEST(PrefixHasherTest, PrefixSharingKeysAgree) {
  // Two prompts with the same first block share its key and diverge after.
  auto a = Tokens(32);
  auto b = Tokens(32);
  b[20] = 999;
  PrefixHasher hasher(kNs, 16);
  const auto ka = hasher.HashTokens(a), kb = hasher.HashTokens(b);
  EXPECT_EQ(ka[0], kb[0]);
  EXPECT_NE(ka[1], kb[1]);
}

TEST(PrefixHasherTest, ExtraChangesEveryKeyButOnlyThroughTheFirstBlock) {
  const auto tokens = Tokens(32);
  PrefixHasher hasher(kNs, 16);
  const auto plain = hasher.HashTokens(tokens);
  const auto salted = hasher.HashTokens(tokens, {}, "lora-7");
  ASSERT_EQ(salted.size(), 2u);
  EXPECT_NE(plain[0], salted[0]);
  EXPECT_NE(plain[1], salted[1]);  // chained from a different first key
  // The second block is hashed without the extra: chaining from salted[0] alone reproduces it.
  const auto second = hasher.HashTokens(std::span(tokens).subspan(16), salted[0]);
  EXPECT_EQ(second.at(0), salted[1]);
}

TEST(PrefixHasherTest, MatchesCommonHashChainBlock) {
  const auto tokens = Tokens(48, 100);
  const auto keys = PrefixHasher(kNs, 16).HashTokens(tokens, {}, "salt");
  Key128 prev{};
  for (size_t b = 0; b < 3; ++b) {
    prev = HashChainBlock(kNs, prev, tokens.data() + 16 * b, 16, b == 0 ? "salt" : "");
    EXPECT_EQ(keys[b].lo, prev.lo) << b;
    EXPECT_EQ(keys[b].hi, prev.hi) << b;
  }
}

TEST(PrefixHasherTest, NonZeroParentMatchesCommon) {
  const auto tokens = Tokens(16);
  const BlockKey parent{0x1111, 0x2222};
  const auto keys = PrefixHasher(kNs, 16).HashTokens(tokens, parent);
  const Key128 expect = HashChainBlock(kNs, Key128{0x1111, 0x2222}, tokens.data(), 16);
  EXPECT_EQ(keys.at(0).lo, expect.lo);
  EXPECT_EQ(keys.at(0).hi, expect.hi);
}

TEST(PrefixHasherTest, FromEngineHashMatchesCommon) {
  PrefixHasher hasher(kNs, 16);
  const BlockKey key = hasher.FromEngineHash("vllm-block-hash-42");
  const Key128 expect = HashEngineBytes(kNs, "vllm-block-hash-42");
  EXPECT_EQ(key.lo, expect.lo);
  EXPECT_EQ(key.hi, expect.hi);
  EXPECT_EQ(hasher.FromEngineHash("a"), hasher.FromEngineHash("a"));
  EXPECT_NE(hasher.FromEngineHash("a"), hasher.FromEngineHash("b"));
}

}  // namespace
}  // namespace kvtier
