// Directory: for the keys this node owns (by placement), which daemons hold each block. Holders
// report what they gained and lost; a stale entry costs the reader one failed pin (a miss), never
// a wrong byte, because the holder pins by key and the bytes are checksummed on arrival.
//
// Thread-safe: one mutex per shard (leaf locks).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/inlined_vector.h"
#include "absl/synchronization/mutex.h"
#include "server/index/block_index.h"

namespace kvtier {

class Directory {
 public:
  void Add(const BlockId& id, const std::string& holder);
  void Remove(const BlockId& id, const std::string& holder);
  // Holder ids of `id` (empty when none is known).
  std::vector<std::string> Holders(const BlockId& id);
  // Forgets every holder not in `alive` (after a roster change).
  void RetainHolders(const absl::flat_hash_set<std::string>& alive);
  size_t size();

 private:
  static constexpr size_t kShards = 16;
  using HolderList = absl::InlinedVector<uint32_t, 2>;  // interned holder ids
  struct Shard {
    absl::Mutex mu;
    absl::flat_hash_map<BlockId, HolderList> map ABSL_GUARDED_BY(mu);
  };
  Shard& ShardOf(const BlockId& id) { return shards_[absl::HashOf(id) % kShards]; }
  uint32_t Intern(const std::string& holder);
  std::string NameOf(uint32_t holder);

  std::array<Shard, kShards> shards_;
  absl::Mutex names_mu_;  // leaf; taken after a shard lock
  absl::flat_hash_map<std::string, uint32_t> ids_ ABSL_GUARDED_BY(names_mu_);
  std::vector<std::string> names_ ABSL_GUARDED_BY(names_mu_);
};

}  // namespace kvtier
