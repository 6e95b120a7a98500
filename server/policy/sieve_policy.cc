#include "server/policy/sieve_policy.h"

namespace kvtier {

void SievePolicy::Insert(uint64_t slot) {
  auto [it, inserted] = nodes_.try_emplace(slot);
  if (!inserted) return;
  it->second.older = head_;
  if (head_ != kNil) nodes_[head_].newer = slot;
  head_ = slot;
  if (tail_ == kNil) tail_ = slot;
}

void SievePolicy::Remove(uint64_t slot) {
  auto it = nodes_.find(slot);
  if (it == nodes_.end()) return;
  const Node node = it->second;
  nodes_.erase(it);
  if (node.newer != kNil) {
    nodes_[node.newer].older = node.older;
  } else {
    head_ = node.older;
  }
  if (node.older != kNil) {
    nodes_[node.older].newer = node.newer;
  } else {
    tail_ = node.newer;
  }
  // The hand moves on to the next newer block, as SIEVE's does after an eviction.
  if (hand_ == slot) hand_ = node.newer;
}

std::optional<uint64_t> SievePolicy::EvictOne(const Judge& judge) {
  // Three full rounds: the first two may only clear marks (a read chain head is passed over once
  // for its children and once for its visited bit).
  const size_t budget = 3 * nodes_.size() + 1;
  const uint64_t start = hand_;
  for (size_t step = 0; step < budget && !nodes_.empty(); ++step) {
    if (hand_ == kNil) hand_ = tail_;
    const uint64_t candidate = hand_;
    const uint64_t next = nodes_[candidate].newer;
    if (judge(candidate) == Verdict::kEvict) {
      Remove(candidate);
      return candidate;
    }
    hand_ = next;
  }
  // Nothing could go: leave the hand where it was, so that a scan that only met pinned blocks
  // (e.g. looking for clean ones first) does not change what goes next.
  hand_ = start;
  return std::nullopt;
}

void SievePolicy::ForEachColdest(const std::function<bool(uint64_t slot)>& fn) const {
  uint64_t at = hand_ == kNil ? tail_ : hand_;
  for (size_t seen = 0; seen < nodes_.size() && at != kNil; ++seen) {
    if (!fn(at)) return;
    at = nodes_.at(at).newer;
    if (at == kNil) at = tail_;  // wrap, as the hand does
  }
}

}  // namespace kvtier
