// Eviction policy of one tier's size class: which resident block goes next.
//
// Blocks are named by their slot offset (unique while resident). The policy owns only the order;
// whether a candidate may go (leased, has resident children, recently used) is decided by the
// caller's `judge`, which looks at the block's index entry under its lock and, when it answers
// kEvict, has already removed the block from the index.
//
// Not thread-safe: the owner serialises calls (BlockStore's space lock).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

namespace kvtier {

enum class Verdict {
  kEvict,         // gone from the index: the slot is the caller's to free
  kSecondChance,  // recently used, or a chain head passed over once: the judge cleared its mark,
                  // look again next round
  kPinned,        // may not go now (leased, being written, or being read from / written to NVMe)
};

class EvictionPolicy {
 public:
  using Judge = std::function<Verdict(uint64_t slot)>;

  virtual ~EvictionPolicy() = default;
  virtual void Insert(uint64_t slot) = 0;
  virtual void Remove(uint64_t slot) = 0;
  virtual size_t size() const = 0;
  // Offers candidates to `judge` in policy order until one is evicted (that slot is returned and
  // already removed from the policy) or every resident block was offered twice (nullopt).
  virtual std::optional<uint64_t> EvictOne(const Judge& judge) = 0;
  // Calls fn(slot) from the next victim on, coldest first, until fn returns false or every
  // block was offered once. Changes nothing (the tier mover picks blocks to write down with it).
  virtual void ForEachColdest(const std::function<bool(uint64_t slot)>& fn) const = 0;
};

}  // namespace kvtier
