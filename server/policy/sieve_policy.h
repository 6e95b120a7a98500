// SIEVE (Zhang et al., NSDI'24): a FIFO queue with one "visited" bit per block and a hand that
// walks from the oldest block towards the newest. A visited block loses its bit and stays; the
// first unvisited one goes. Hits cost no queue movement (the bit lives in the index entry), which
// keeps reads off the policy's lock, and blocks that are written once and never read (most KV
// blocks) leave quickly because they are never marked.
//
// Prefix awareness comes from the judge: a block with resident children in its chain gets one
// second chance (kSecondChance) per read, so a chain's tail goes before its head (a lookup stops
// at the first miss), but a chain nobody reads is not kept forever.
#pragma once

#include "absl/container/flat_hash_map.h"
#include "server/policy/eviction_policy.h"

namespace kvtier {

class SievePolicy final : public EvictionPolicy {
 public:
  void Insert(uint64_t slot) override;
  void Remove(uint64_t slot) override;
  size_t size() const override { return nodes_.size(); }
  std::optional<uint64_t> EvictOne(const Judge& judge) override;
  void ForEachColdest(const std::function<bool(uint64_t slot)>& fn) const override;

 private:
  static constexpr uint64_t kNil = ~0ULL;
  struct Node {
    uint64_t newer = kNil;  // towards head
    uint64_t older = kNil;  // towards tail
  };

  absl::flat_hash_map<uint64_t, Node> nodes_;
  uint64_t head_ = kNil;  // newest
  uint64_t tail_ = kNil;  // oldest
  uint64_t hand_ = kNil;  // next candidate; kNil = start from the tail
};

}  // namespace kvtier
