#include "server/metrics/latency_histogram.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace kvtier {
namespace {

TEST(LatencyHistogramTest, EmptyHasOneBucketPerBoundAndInf) {
  LatencyHistogram h;
  HistogramSnapshot s = h.Snapshot();
  ASSERT_EQ(s.upper_bounds.size(), LatencyHistogram::kUpperBounds.size());
  ASSERT_EQ(s.bucket_counts.size(), s.upper_bounds.size() + 1);
  EXPECT_EQ(s.count, 0u);
  EXPECT_EQ(s.sum, 0);
  for (size_t i = 1; i < s.upper_bounds.size(); ++i) {
    EXPECT_LT(s.upper_bounds[i - 1], s.upper_bounds[i]);
  }
}

TEST(LatencyHistogramTest, BoundsAreInclusiveAndLargeValuesGoToInf) {
  LatencyHistogram h;
  h.Observe(absl::ZeroDuration());    // first bucket
  h.Observe(absl::Microseconds(50));  // exactly the first bound: still the first bucket
  h.Observe(absl::Microseconds(51));  // second bucket
  h.Observe(absl::Milliseconds(1));   // the 1 ms bucket
  h.Observe(absl::Seconds(60));       // above every bound: +Inf
  h.Observe(-absl::Milliseconds(3));  // negative: counted as 0
  HistogramSnapshot s = h.Snapshot();
  EXPECT_EQ(s.bucket_counts[0], 3u);
  EXPECT_EQ(s.bucket_counts[1], 1u);
  const size_t ms = 4;  // 50us, 100us, 250us, 500us, 1ms
  ASSERT_DOUBLE_EQ(s.upper_bounds[ms], 0.001);
  EXPECT_EQ(s.bucket_counts[ms], 1u);
  EXPECT_EQ(s.bucket_counts.back(), 1u);
  EXPECT_EQ(s.count, 6u);
  EXPECT_NEAR(s.sum, 60 + 0.001 + 0.000101, 1e-9);
}

TEST(LatencyHistogramTest, ConcurrentObservationsAreAllCounted) {
  LatencyHistogram h;
  constexpr int kThreads = 8, kEach = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&h, t] {
      for (int i = 0; i < kEach; ++i) h.Observe(absl::Microseconds(10 * (t + 1)));
    });
  }
  for (auto& t : threads) t.join();
  HistogramSnapshot s = h.Snapshot();
  EXPECT_EQ(s.count, uint64_t{kThreads} * kEach);
  uint64_t sum_us = 0;
  for (int t = 0; t < kThreads; ++t) sum_us += uint64_t{kEach} * 10 * (t + 1);
  EXPECT_NEAR(s.sum, sum_us / 1e6, 1e-6);
}

}  // namespace
}  // namespace kvtier
