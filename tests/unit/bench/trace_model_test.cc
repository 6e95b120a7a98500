#include "bench/trace_model.h"

#include <gtest/gtest.h>

#include <sstream>

namespace kvtier::bench {
namespace {

// Six requests, 19 block references, 8 distinct ids. The expected counts below are worked out
// by hand in the comments.
const std::vector<std::vector<uint64_t>> kTrace = {
    {1, 2, 3},     // R1
    {1, 2, 4},     // R2: shares 1,2 with R1
    {1, 5},        // R3
    {1, 2, 3, 6},  // R4: extends R1
    {7, 2, 3},     // R5: 2,3 seen before, but not as a leading run
    {1, 2, 4, 8},  // R6: extends R2
};

TEST(TraceModelTest, InfiniteCacheCountsLeadingRunsSeenBefore) {
  InfiniteCacheSim sim;
  std::vector<size_t> hits;
  for (const auto& ids : kTrace) hits.push_back(sim.Request(ids));
  // R1 nothing seen; R2 1,2; R3 1; R4 1,2,3; R5 7 is new, so 0; R6 1,2,4.
  EXPECT_EQ(hits, (std::vector<size_t>{0, 2, 1, 3, 0, 3}));
  EXPECT_EQ(sim.count().refs, 19u);
  EXPECT_EQ(sim.count().hits, 9u);
  EXPECT_DOUBLE_EQ(sim.count().ratio(), 9.0 / 19.0);
}

TEST(TraceModelTest, InfiniteCacheDoesNotHitWithinTheSameRequest) {
  InfiniteCacheSim sim;
  EXPECT_EQ(sim.Request(std::vector<uint64_t>{4, 4}), 0u);
  EXPECT_EQ(sim.Request(std::vector<uint64_t>{4, 4}), 2u);
}

TEST(TraceModelTest, LruOfFourBlocksLosesHeadsOfChains) {
  // Recency lists, most recent first:
  // R1 [1,2,3] no hit; insert 1,2,3          -> 3 2 1
  // R2 [1,2,4] hits 1,2; insert 4             -> 4 2 1 3
  // R3 [1,5]   hit 1; insert 5, evict 3       -> 5 1 4 2          (1 eviction)
  // R4 [1,2,3,6] hits 1,2; 3 evicts 4, 6 evicts 5 -> 6 3 2 1      (3)
  // R5 [7,2,3] no hit; 7 evicts 1; touch 2, 3 -> 3 2 7 6          (4)
  // R6 [1,2,4,8] 1 is gone: no hit (2 is present but not leading);
  //    1 evicts 6, touch 2, 4 evicts 7, 8 evicts 3 -> 8 4 2 1      (7)
  LruCacheSim sim(4);
  std::vector<size_t> hits;
  for (const auto& ids : kTrace) hits.push_back(sim.Request(ids));
  EXPECT_EQ(hits, (std::vector<size_t>{0, 2, 1, 2, 0, 0}));
  EXPECT_EQ(sim.count().refs, 19u);
  EXPECT_EQ(sim.count().hits, 5u);
  EXPECT_EQ(sim.evictions(), 7u);
  EXPECT_EQ(sim.size(), 4u);
  for (uint64_t id : {8, 4, 2, 1}) EXPECT_TRUE(sim.Contains(id)) << id;
  for (uint64_t id : {3, 5, 6, 7}) EXPECT_FALSE(sim.Contains(id)) << id;
}

TEST(TraceModelTest, LargeLruMatchesTheInfiniteCache) {
  LruCacheSim lru(100);
  InfiniteCacheSim best;
  for (const auto& ids : kTrace) EXPECT_EQ(lru.Request(ids), best.Request(ids));
  EXPECT_EQ(lru.count().hits, 9u);
  EXPECT_EQ(lru.evictions(), 0u);
  EXPECT_EQ(lru.size(), 8u);
}

TEST(TraceModelTest, EmptyLruNeverHits) {
  LruCacheSim sim(0);
  for (const auto& ids : kTrace) EXPECT_EQ(sim.Request(ids), 0u);
  EXPECT_EQ(sim.count().refs, 19u);
  EXPECT_EQ(sim.size(), 0u);
  EXPECT_DOUBLE_EQ(sim.count().ratio(), 0.0);
}

TEST(TraceModelTest, ParsesMooncakeLinesWithLimitAndShape) {
  std::istringstream in(
      R"({"timestamp": 0, "input_length": 1100, "output_length": 5, "hash_ids": [1, 2, 3]})"
      "\n\n"
      R"({"timestamp": 27, "input_length": 600, "output_length": 9, "hash_ids": [1, 4]})"
      "\n"
      R"({"timestamp": 30, "input_length": 10, "output_length": 1, "hash_ids": []})"
      "\n");
  auto all = ParseTrace(in, 0);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[1].timestamp_ms, 27);
  EXPECT_EQ((*all)[1].input_length, 600u);
  EXPECT_EQ((*all)[1].output_length, 9u);
  EXPECT_EQ((*all)[1].hash_ids, (std::vector<uint64_t>{1, 4}));
  const TraceShape shape = ShapeOf(*all);
  EXPECT_EQ(shape.requests, 3u);
  EXPECT_EQ(shape.block_refs, 5u);
  EXPECT_EQ(shape.distinct_blocks, 4u);

  in.clear();
  in.seekg(0);
  auto two = ParseTrace(in, 2);
  ASSERT_TRUE(two.ok()) << two.status();
  EXPECT_EQ(two->size(), 2u);
}

TEST(TraceModelTest, BadLinesNameTheirLineAndField) {
  std::istringstream not_json(
      "{\"timestamp\": 0, \"input_length\": 1, \"output_length\": 1, "
      "\"hash_ids\": [1]}\nnot json\n");
  auto r = ParseTrace(not_json, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("line 2"), std::string::npos) << r.status();

  std::istringstream bad_id(R"({"timestamp": 0, "input_length": 1, "output_length": 1, )"
                            R"("hash_ids": [1, -2]})");
  r = ParseTrace(bad_id, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("hash_ids"), std::string::npos) << r.status();

  std::istringstream missing(R"({"timestamp": 0, "output_length": 1, "hash_ids": [1]})");
  r = ParseTrace(missing, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("input_length"), std::string::npos) << r.status();

  EXPECT_FALSE(LoadTrace("/nonexistent/trace.jsonl", 0).ok());
}

}  // namespace
}  // namespace kvtier::bench
