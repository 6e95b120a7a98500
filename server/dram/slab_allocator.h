// Slab allocation of arena slots by size class.
//
// The arena is cut into slabs of kSlabBytes. A size class is a slot size (a multiple of 4 KiB);
// a slab, once given to a class, is cut into equal slots of it and goes back to the free pool when
// all its slots are free, so memory moves between classes as the mix of block sizes changes.
// Slots larger than a slab take a run of whole consecutive slabs.
//
// Not thread-safe: the owner (BlockStore) serialises calls under its space lock.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace kvtier {

class SlabAllocator {
 public:
  static constexpr uint64_t kSlabBytes = 4ULL << 20;

  // Manages [0, capacity) rounded down to whole slabs; an arena below one slab is one slab.
  explicit SlabAllocator(uint64_t capacity);

  // Slot size for a block of `bytes`: rounded up to 4 KiB.
  static uint64_t SlotBytes(uint64_t bytes);

  // Offset of a free slot of `slot_bytes` (a SlotBytes() value), or nullopt when neither a free
  // slot of that class nor a free slab is left.
  std::optional<uint64_t> Allocate(uint64_t slot_bytes);
  // Returns a slot given out by Allocate(slot_bytes).
  void Free(uint64_t offset, uint64_t slot_bytes);

  uint64_t capacity() const { return num_slabs_ * slab_bytes_; }
  uint64_t used_bytes() const { return used_bytes_; }
  uint64_t free_slabs() const { return free_slabs_.size(); }

 private:
  static constexpr uint32_t kNotPartial = ~0u;
  struct Slab {
    uint64_t slot_bytes = 0;             // 0: free
    uint32_t run = 1;                    // slabs in this allocation (large slots)
    uint32_t used = 0;                   // slots in use
    uint32_t partial_pos = kNotPartial;  // position in its class's `partial` list
    std::vector<uint32_t> free_slots;    // slot indices within the slab
  };
  struct SizeClass {
    std::vector<uint32_t> partial;  // slabs of this class with at least one free slot
  };

  void AddPartial(SizeClass& cls, uint32_t slab);
  void RemovePartial(SizeClass& cls, uint32_t slab);

  std::optional<uint32_t> TakeSlabs(uint32_t run);
  void ReturnSlabs(uint32_t first, uint32_t run);

  uint64_t slab_bytes_;
  uint64_t num_slabs_;
  std::vector<Slab> slabs_;
  std::set<uint32_t> free_slabs_;  // ordered, so runs of consecutive slabs can be found
  absl::flat_hash_map<uint64_t, SizeClass> classes_;
  uint64_t used_bytes_ = 0;
};

}  // namespace kvtier
