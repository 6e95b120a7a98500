// ChunkPins: the weight chunks' DRAM quota (--weight-capacity). Chunks a daemon reads or serves
// are held under read leases of the store, so KV churn (SIEVE eviction) cannot push them out;
// beyond the quota the least recently used chunks of files nobody pinned by name are let go (they
// stay cached, evictable like any block, and on the weights disk). Files pinned with
// `kvtier weights pin` are never let go for other files' chunks. Leases are renewed before they
// run out (Renew, called about once a second).
//
// Thread-safe. Store calls are made without mu_ held.
#pragma once

#include <cstdint>
#include <list>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "server/store/block_store.h"

namespace kvtier {

class ChunkPins {
 public:
  ChunkPins(BlockStore* store, uint64_t ns, uint64_t chunk_bytes, uint64_t capacity);

  // Holds `key` (a chunk of `file_id`, ready in the store) pinned, or refreshes its place.
  void Hold(uint64_t file_id, const Key128& key);
  void PinFile(uint64_t file_id, bool pinned);
  bool IsPinned(uint64_t file_id);
  // Takes new leases for chunks whose lease is past half its term.
  void Renew();
  uint64_t used_bytes();
  uint64_t capacity() const { return capacity_; }

 private:
  struct Held {
    uint64_t file_id = 0;
    uint64_t lease = 0;
    int64_t since_ms = 0;
    std::list<Key128>::iterator lru;
  };
  uint64_t Lease(const Key128& key);  // 0 when the chunk is not there
  void Release(const std::vector<uint64_t>& leases);

  BlockStore* const store_;
  const uint64_t ns_;
  const uint64_t chunk_bytes_;
  const uint64_t capacity_;
  absl::Mutex mu_;
  std::list<Key128> lru_ ABSL_GUARDED_BY(mu_);  // most recent at the back
  absl::flat_hash_map<Key128, Held> held_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<uint64_t> pinned_files_ ABSL_GUARDED_BY(mu_);
  bool warned_full_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace kvtier
