// The request trace of `kvtier-bench trace` (Mooncake format) and the two caches it is compared
// with, simulated on the same trace: an infinite cache (the best case) and a plain LRU.
//
// Mooncake format: one JSON object per line with `timestamp` (ms), `input_length`,
// `output_length` (tokens) and `hash_ids`, one id per 512-token block. Ids are global ids of
// prefix blocks (equal prefixes share ids), so a block's identity depends on its id only.
//
// Hits are counted as an engine sees them: the leading run of a request's ids that is cached
// (a lookup stops at the first miss).
#pragma once

#include <cstdint>
#include <istream>
#include <list>
#include <span>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "absl/status/statusor.h"

namespace kvtier::bench {

struct TraceRequest {
  int64_t timestamp_ms = 0;
  uint64_t input_length = 0;
  uint64_t output_length = 0;
  std::vector<uint64_t> hash_ids;
};

// Reads at most `limit` requests (0: all). Blank lines are skipped; a bad line is an error naming
// its line number.
absl::StatusOr<std::vector<TraceRequest>> ParseTrace(std::istream& in, size_t limit);
absl::StatusOr<std::vector<TraceRequest>> LoadTrace(const std::string& path, size_t limit);

struct TraceShape {
  uint64_t requests = 0;
  uint64_t block_refs = 0;       // sum of hash_ids lengths
  uint64_t distinct_blocks = 0;  // distinct ids
};
TraceShape ShapeOf(const std::vector<TraceRequest>& trace);

// Leading-prefix hits over block references.
struct HitCount {
  uint64_t refs = 0;
  uint64_t hits = 0;
  double ratio() const { return refs == 0 ? 0.0 : static_cast<double>(hits) / refs; }
};

// Keeps every block: a request hits the leading run of its ids seen in any earlier request.
class InfiniteCacheSim {
 public:
  // Returns the leading hits of this request, then remembers all its ids.
  size_t Request(std::span<const uint64_t> ids);
  const HitCount& count() const { return count_; }

 private:
  std::unordered_set<uint64_t> seen_;
  HitCount count_;
};

// Plain LRU of `capacity` blocks. A request hits the leading run of its ids present in the cache;
// those are touched in request order. Every later id is then saved: inserted at the front when
// absent (evicting the least recently used block when full), touched when present. Capacity 0
// caches nothing.
class LruCacheSim {
 public:
  explicit LruCacheSim(uint64_t capacity) : capacity_(capacity) {}
  size_t Request(std::span<const uint64_t> ids);
  const HitCount& count() const { return count_; }
  uint64_t size() const { return index_.size(); }
  uint64_t evictions() const { return evictions_; }
  bool Contains(uint64_t id) const { return index_.contains(id); }

 private:
  void Touch(std::list<uint64_t>::iterator it);
  void Insert(uint64_t id);

  uint64_t capacity_;
  std::list<uint64_t> order_;  // front: most recently used
  std::unordered_map<uint64_t, std::list<uint64_t>::iterator> index_;
  uint64_t evictions_ = 0;
  HitCount count_;
};

}  // namespace kvtier::bench
