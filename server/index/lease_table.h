// Open leases: who holds which blocks until when. A lease is either a read (its blocks are
// pinned: readers > 0) or a write (its blocks are reserved slots not yet committed). A lease whose
// deadline passes is ended by the owner's reaper, so a killed client never pins a block forever.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "common/block_key.h"

namespace kvtier {

enum class LeaseKind : uint8_t { kRead, kWrite };

struct Lease {
  uint64_t id = 0;
  LeaseKind kind = LeaseKind::kRead;
  uint64_t ns = 0;
  int64_t deadline_ms = 0;
  std::vector<Key128> keys;
};

// Thread-safe. Its lock is a leaf: no other lock is taken while it is held.
class LeaseTable {
 public:
  LeaseTable();
  // A fresh lease id (never 0), for entries that must name their lease before it is stored.
  uint64_t NewId();
  // Stores a lease under lease.id (from NewId) or, when lease.id is 0, a fresh id; returns the id.
  uint64_t Add(Lease lease);
  // Removes and returns the lease.
  std::optional<Lease> Take(uint64_t id);
  // A copy of the lease.
  std::optional<Lease> Get(uint64_t id);
  // Removes `keys` from a write lease after they were committed; ends it when none are left.
  void RemoveKeys(uint64_t id, const std::vector<Key128>& keys);
  // Ids of leases whose deadline is at or before now_ms.
  std::vector<uint64_t> Expired(int64_t now_ms);
  size_t size();

 private:
  absl::Mutex mu_;
  uint64_t next_id_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<uint64_t, Lease> leases_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvtier
