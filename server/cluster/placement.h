// Placement: which member of a roster owns a key. An immutable snapshot built from one Roster;
// every daemon with the same roster computes the same owner for every key.
//
// Scheme (DxHash-style, over the stable slots that membership assigns): C = the smallest power of
// two > the largest slot; a bitmap marks the active slots and a table maps slot -> member index.
// A key hash h probes the pseudo-random slots s_i = Mix64(h + i * golden) & (C - 1), i = 0, 1, ...
// (a splitmix64 stream seeded by h); the owner is the first active slot. Why this one:
//   - Fast: C / N probes expected (<= 2 while slots are compact, as membership keeps them: etcd
//     claims the lowest free slot, static peers use list position), each a mix and a bit test in
//     a C-bit bitmap that stays in L1/L2; no allocation, no search. Measured (kvtier-bench ring,
//     one core): 87 M Owner(PlacementHash(key)) lookups/s at 100,000 nodes.
//   - Small: C bits + 4 C bytes of tables (0.5 MiB at 100,000 nodes), beside the members' ids and
//     addresses; no virtual nodes.
//   - Uniform over the active slots, as far as the hash is (each probe is a fresh uniform draw
//     from C slots), so balance is that of hash mod N (kvtier-bench ring compares the two).
//   - Minimal movement while C stays the same: a member leaving moves only its own keys (its
//     slot turns inactive, every other key's first active probe is unchanged); a member joining a
//     free slot only takes keys (those whose probes reach its slot before their old owner).
//   - The one event that moves more is C changing: the largest slot crossing a power of two
//     (joining slot C when all of 0..C-1 are taken, or the reverse leave) re-masks every probe.
//     Measured: about half of all keys move (kvtier-bench ring, "capacity doubling": 0.50 of the
//     keys at 1,024 -> 2,048 and at 131,072 -> 262,144 slots, i.e. ~N/2 times the ideal), once
//     per doubling of the cluster.
//
// Probe cap: after probe_limit() probes without an active slot (64 * ceil(C / N), clamped to
// [64, 65536]; while C / N <= 1024 this happens with probability < e^-64) the owner is the next
// active slot scanning the bitmap upwards (wrapping) from the last probed slot. The fallback is
// still a pure function of the roster, always terminates, and keeps the minimal-movement property
// (the slots it skips are inactive in both views); only its uniformity is weaker, and it matters
// only for very sparse slots (e.g. one member at slot 1,000,000).
//
// Thread-safety: immutable after Build; all methods are const and may run concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/block_key.h"
#include "server/cluster/roster.h"

namespace kvtier {

// Hash of a block key for placement: both halves mixed (keys are already uniform, but the mix
// makes placement independent of how they were produced).
uint64_t PlacementHash(const Key128& key);

// Bytes a member list holds: the vector and its strings' heap buffers (not sizeof the vector).
size_t MembersMemoryBytes(const std::vector<Member>& members);

class Placement {
 public:
  // Slots must be < kMaxSlots, so C <= kMaxSlots and the tables stay <= 4.2 MiB.
  static constexpr uint32_t kMaxSlots = 1u << 20;

  // Errors (InvalidArgument): no members, an empty id, a duplicate id, a duplicate slot, a slot
  // >= kMaxSlots. The members may come in any order; they are kept sorted by slot.
  [[nodiscard]] static absl::StatusOr<Placement> Build(const Roster& roster);

  // Index into members() of the key's owner. Hot path: no allocation, no lock.
  uint32_t OwnerIndex(uint64_t hash) const;
  const Member& Owner(uint64_t hash) const { return members_[OwnerIndex(hash)]; }

  // min(r, size()) distinct member indices: the owner first, then the next distinct active slots
  // of the same probe sequence (then of the same fallback scan). For replicas.
  std::vector<uint32_t> TopR(uint64_t hash, size_t r) const;

  // The roster's members sorted by slot (the Roster contract already sorts them, so an index is
  // also an index into a well-formed roster.members).
  const std::vector<Member>& members() const { return members_; }
  size_t size() const { return members_.size(); }
  uint64_t version() const { return version_; }
  uint32_t capacity() const { return mask_ + 1; }  // C
  uint32_t probe_limit() const { return probe_limit_; }

  // Bytes this snapshot holds: the tables plus its copy of the members (ids and addresses).
  size_t MemoryBytes() const;

 private:
  Placement() = default;

  bool Active(uint32_t slot) const { return (bits_[slot >> 6] >> (slot & 63)) & 1; }
  // First active slot at or after `slot`, wrapping; skips none that are active.
  uint32_t NextActive(uint32_t slot) const;

  uint64_t version_ = 0;
  uint32_t mask_ = 0;                    // C - 1
  uint32_t probe_limit_ = 0;             // probes before the bitmap-scan fallback
  std::vector<uint64_t> bits_;           // C bits: slot is active
  std::vector<uint32_t> slot_to_index_;  // C entries: member index (valid where active)
  std::vector<Member> members_;          // sorted by slot
};

}  // namespace kvtier
