#include "server/index/block_index.h"

namespace kvtier {

const char* BlockStateName(BlockState state) {
  switch (state) {
    case BlockState::kWriting:
      return "writing";
    case BlockState::kReady:
      return "ready";
    case BlockState::kPromoting:
      return "promoting";
  }
  return "unknown";
}

size_t BlockIndex::size() {
  size_t n = 0;
  for (Shard& shard : shards_) {
    absl::MutexLock lock(&shard.mu);
    n += shard.map.size();
  }
  return n;
}

}  // namespace kvtier
