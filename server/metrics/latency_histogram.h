// LatencyHistogram: request durations in fixed buckets (Prometheus-style), recorded from many
// threads without a lock. Each thread adds to one of a few cache-line-aligned shards (picked once
// per thread), so concurrent handlers do not bounce one counter line between cores; a snapshot
// sums the shards.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

#include "absl/time/time.h"

namespace kvtier {

// A histogram as read at one moment. `bucket_counts[i]` counts observations <= `upper_bounds[i]`
// and above the previous bound (not cumulative); the last entry counts those above every bound
// (the +Inf bucket). `count` is the sum of `bucket_counts`.
struct HistogramSnapshot {
  std::vector<double> upper_bounds;     // seconds, ascending
  std::vector<uint64_t> bucket_counts;  // upper_bounds.size() + 1 entries
  uint64_t count = 0;
  double sum = 0;  // seconds
};

class LatencyHistogram {
 public:
  // Bucket upper bounds in seconds: 50 us to 10 s, roughly 1-2.5-5 per decade.
  static constexpr std::array<double, 17> kUpperBounds = {
      0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
      0.05,    0.1,    0.25,    0.5,    1,     2.5,    5,     10};
  static constexpr size_t kBuckets = kUpperBounds.size() + 1;  // with +Inf

  LatencyHistogram();
  LatencyHistogram(const LatencyHistogram&) = delete;
  LatencyHistogram& operator=(const LatencyHistogram&) = delete;

  // Records one duration (negative ones count as 0). Thread-safe; no allocation, no lock.
  void Observe(absl::Duration d);

  // Sums the shards. Thread-safe; observations racing with it may or may not be included, but
  // `count` always equals the sum of the buckets.
  HistogramSnapshot Snapshot() const;

 private:
  static constexpr size_t kShards = 8;
  struct alignas(64) Shard {
    std::array<std::atomic<uint64_t>, kBuckets> buckets{};
    std::atomic<uint64_t> sum_ns{0};
  };
  static size_t ShardOfThisThread();

  std::array<int64_t, kUpperBounds.size()> bounds_ns_;
  std::array<Shard, kShards> shards_;
};

}  // namespace kvtier
