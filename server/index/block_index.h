// BlockIndex: the one truth of which blocks this node holds. A sharded map from (namespace, key)
// to entry; each shard has its own lock, so reads of different keys rarely meet.
#pragma once

#include <array>
#include <cstdint>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "common/block_key.h"

namespace kvtier {

struct BlockId {
  uint64_t ns = 0;
  Key128 key;

  friend bool operator==(const BlockId&, const BlockId&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const BlockId& id) {
    return H::combine(std::move(h), id.ns, id.key);
  }
};

enum class BlockState : uint8_t {
  kWriting,    // DRAM slot reserved under a write lease, bytes not committed; invisible to readers
  kReady,      // readable from the tiers it is in
  kPromoting,  // on NVMe (or only in HBM), being read into its DRAM slot; readers wait for that
               // one copy
};
const char* BlockStateName(BlockState state);

inline constexpr uint64_t kNoLease = 0;

// One block and the copies it has: a DRAM slot, an NVMe record, an HBM slot, or several (a copy
// is clean when another tier holds the same bytes).
struct BlockEntry {
  uint64_t bytes = 0;  // block size
  BlockState state = BlockState::kWriting;

  bool in_dram = false;     // offset/slot_bytes name a DRAM slot holding (or receiving) it
  uint64_t offset = 0;      // arena offset of the slot
  uint64_t slot_bytes = 0;  // size class

  bool on_nvme = false;  // a verified copy sits in an NVMe record
  uint32_t nvme_region = 0;
  uint64_t nvme_offset = 0;

  bool in_hbm = false;          // a copy sits in the HBM tier's device pool
  uint64_t hbm_offset = 0;      // pool-wide: segment * segment_bytes + offset in the segment
  uint64_t hbm_slot_bytes = 0;  // HBM size class
  bool hbm_visited = false;     // the HBM tier's SIEVE mark: read from HBM since the hand passed
  bool hbm_queued = false;      // waiting for the mover to copy it into HBM

  uint32_t readers = 0;  // read leases (and promotions) holding it
  uint32_t io_pins = 0;  // NVMe writes reading its DRAM slot
  uint64_t write_lease = kNoLease;
  Key128 parent;                  // previous block of its chain (zero: chain start or unknown)
  bool linked_to_parent = false;  // counted in the parent's `children`
  uint32_t children = 0;          // resident blocks whose parent this is
  bool visited = false;           // SIEVE mark: read since the hand last passed
  bool spared = false;            // passed over once for having children; cleared by a read
  uint64_t hits = 0;
  uint64_t checksum = 0;  // XXH3-64 of the bytes: given at commit, or computed on demotion
  int64_t created_ms = 0;
};

class BlockIndex {
 public:
  using Map = absl::flat_hash_map<BlockId, BlockEntry>;
  static constexpr size_t kShards = 16;

  // Calls fn(Map&) with the shard of `id` locked and returns what fn returns. fn must not call
  // back into the index.
  template <typename Fn>
  auto WithShard(const BlockId& id, Fn&& fn) {
    Shard& shard = shards_[ShardOf(id)];
    absl::MutexLock lock(&shard.mu);
    return fn(shard.map);
  }

  // Calls fn(const BlockId&, BlockEntry&) for every entry, one shard locked at a time; fn returns
  // false to stop.
  template <typename Fn>
  void ForEach(Fn&& fn) {
    for (Shard& shard : shards_) {
      absl::MutexLock lock(&shard.mu);
      for (auto& [id, entry] : shard.map) {
        if (!fn(id, entry)) return;
      }
    }
  }

  size_t size();

 private:
  struct Shard {
    absl::Mutex mu;
    Map map ABSL_GUARDED_BY(mu);
  };
  static size_t ShardOf(const BlockId& id) { return (id.key.hi ^ id.ns) % kShards; }

  std::array<Shard, kShards> shards_;
};

}  // namespace kvtier
