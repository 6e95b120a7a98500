// The C API: error codes and kvtier_last_error without a daemon, the hasher, and a round trip
// against FakeDaemon.
#include <string>
#include <vector>

#include "fake_daemon.h"
#include "gtest/gtest.h"
#include "kvtier/client.h"
#include "kvtier/kvtier.h"
#include "temp_dir.h"

namespace kvtier {
namespace {

TEST(CApiTest, ConnectFailureReturnsUnavailableAndSetsLastError) {
  testing::TempDir dir;
  const std::string path = dir.File("none.sock");
  kvtier_client* client = reinterpret_cast<kvtier_client*>(0x1);  // must stay untouched
  EXPECT_EQ(kvtier_connect(path.c_str(), 1000, &client), KVTIER_UNAVAILABLE);
  EXPECT_EQ(client, reinterpret_cast<kvtier_client*>(0x1));
  const std::string error = kvtier_last_error();
  EXPECT_NE(error.find("no kvtierd answering on " + path), std::string::npos) << error;
  EXPECT_EQ(error.rfind("UNAVAILABLE: ", 0), 0u) << error;
}

TEST(CApiTest, NullArgumentsAreInvalid) {
  EXPECT_EQ(kvtier_connect(nullptr, 1000, nullptr), KVTIER_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kvtier_last_error()), "");
  EXPECT_EQ(kvtier_register_namespace(nullptr, nullptr, nullptr, nullptr), KVTIER_INVALID_ARGUMENT);
  size_t n = 0;
  EXPECT_EQ(kvtier_lookup(nullptr, 1, nullptr, 0, &n, nullptr), KVTIER_INVALID_ARGUMENT);
  kvtier_close(nullptr);  // no-op
}

TEST(CApiTest, HashTokensMatchesPrefixHasher) {
  std::vector<int32_t> tokens(40);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(i * 7);
  const kvtier_key parent{5, 6};
  kvtier_key keys[4];
  size_t n = 0;
  ASSERT_EQ(kvtier_hash_tokens(42, 16, tokens.data(), tokens.size(), &parent, keys, 4, &n),
            KVTIER_OK);
  EXPECT_STREQ(kvtier_last_error(), "");
  ASSERT_EQ(n, 2u);
  const auto expect = PrefixHasher(42, 16).HashTokens(tokens, BlockKey{5, 6});
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(keys[i].lo, expect[i].lo);
    EXPECT_EQ(keys[i].hi, expect[i].hi);
  }
}

TEST(CApiTest, HashTokensReportsTheNeededCount) {
  std::vector<int32_t> tokens(64, 1);
  size_t n = 0;
  EXPECT_EQ(kvtier_hash_tokens(1, 16, tokens.data(), tokens.size(), nullptr, nullptr, 0, &n),
            KVTIER_OUT_OF_RANGE);
  EXPECT_EQ(n, 4u);
  EXPECT_EQ(kvtier_hash_tokens(1, 0, tokens.data(), tokens.size(), nullptr, nullptr, 0, &n),
            KVTIER_INVALID_ARGUMENT);
}

TEST(CApiTest, RoundTripAgainstFakeDaemon) {
  testing::TempDir dir;
  const std::string path = dir.File("kvtier.sock");
  auto daemon = testing::FakeDaemon::Start(path, 4 << 20, 9);
  ASSERT_NE(daemon, nullptr);
  kvtier_client* client = nullptr;
  ASSERT_EQ(kvtier_connect(path.c_str(), 2000, &client), KVTIER_OK) << kvtier_last_error();

  kvtier_layout layout{};
  layout.model_id = "c-model";
  layout.layout_tag = "opaque";
  layout.block_bytes = 8192;
  uint64_t ns = 0, block_bytes = 0;
  ASSERT_EQ(kvtier_register_namespace(client, &layout, &ns, &block_bytes), KVTIER_OK)
      << kvtier_last_error();
  EXPECT_EQ(block_bytes, 8192u);

  std::vector<int32_t> tokens(32, 3);
  kvtier_key keys[2];
  size_t n = 0;
  ASSERT_EQ(kvtier_hash_tokens(ns, 16, tokens.data(), tokens.size(), nullptr, keys, 2, &n),
            KVTIER_OK);
  std::vector<char> a(8192, 'x'), b(8192, 'y');
  const void* src[] = {a.data(), b.data()};
  size_t saved = 0;
  ASSERT_EQ(kvtier_save(client, ns, block_bytes, keys, 2, src, &saved), KVTIER_OK)
      << kvtier_last_error();
  EXPECT_EQ(saved, 2u);

  size_t prefix = 0;
  int tiers[2] = {-1, -1};
  ASSERT_EQ(kvtier_lookup(client, ns, keys, 2, &prefix, tiers), KVTIER_OK);
  EXPECT_EQ(prefix, 2u);
  EXPECT_EQ(tiers[0], KVTIER_TIER_DRAM);

  std::vector<char> ra(8192), rb(8192);
  void* dst[] = {ra.data(), rb.data()};
  size_t loaded = 0;
  ASSERT_EQ(kvtier_load(client, ns, block_bytes, keys, 2, dst, &loaded), KVTIER_OK);
  EXPECT_EQ(loaded, 2u);
  EXPECT_EQ(ra, a);
  EXPECT_EQ(rb, b);

  kvtier_drop_result drop{};
  ASSERT_EQ(kvtier_drop(client, ns, nullptr, 0, /*all=*/1, &drop), KVTIER_OK);
  EXPECT_EQ(drop.dropped, 2u);
  // A wrong block size is the caller's error, reported as such.
  EXPECT_EQ(kvtier_save(client, ns, 4096, keys, 2, src, &saved), KVTIER_INVALID_ARGUMENT);
  kvtier_close(client);
}

}  // namespace
}  // namespace kvtier
