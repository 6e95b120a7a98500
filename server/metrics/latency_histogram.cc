#include "server/metrics/latency_histogram.h"

#include <algorithm>

namespace kvtier {

LatencyHistogram::LatencyHistogram() {
  for (size_t i = 0; i < kUpperBounds.size(); ++i) {
    bounds_ns_[i] = static_cast<int64_t>(kUpperBounds[i] * 1e9 + 0.5);
  }
}

size_t LatencyHistogram::ShardOfThisThread() {
  // Threads take shards round-robin as they first record; gRPC's callback threads are few and
  // long-lived, so they spread evenly.
  static std::atomic<size_t> next{0};
  thread_local const size_t shard = next.fetch_add(1, std::memory_order_relaxed) % kShards;
  return shard;
}

void LatencyHistogram::Observe(absl::Duration d) {
  const int64_t ns = std::max<int64_t>(0, absl::ToInt64Nanoseconds(d));
  // Bucket i holds (bound[i-1], bound[i]]: the first bound >= ns.
  const size_t bucket =
      std::lower_bound(bounds_ns_.begin(), bounds_ns_.end(), ns) - bounds_ns_.begin();
  Shard& shard = shards_[ShardOfThisThread()];
  shard.buckets[bucket].fetch_add(1, std::memory_order_relaxed);
  shard.sum_ns.fetch_add(static_cast<uint64_t>(ns), std::memory_order_relaxed);
}

HistogramSnapshot LatencyHistogram::Snapshot() const {
  HistogramSnapshot snap;
  snap.upper_bounds.assign(kUpperBounds.begin(), kUpperBounds.end());
  snap.bucket_counts.assign(kBuckets, 0);
  uint64_t sum_ns = 0;
  for (const Shard& shard : shards_) {
    for (size_t i = 0; i < kBuckets; ++i) {
      snap.bucket_counts[i] += shard.buckets[i].load(std::memory_order_relaxed);
    }
    sum_ns += shard.sum_ns.load(std::memory_order_relaxed);
  }
  for (uint64_t c : snap.bucket_counts) snap.count += c;
  snap.sum = static_cast<double>(sum_ns) / 1e9;
  return snap;
}

}  // namespace kvtier
