// PrefixHasher: the public face of common/block_key.h's chained hash, so engine processes and the
// daemon compute identical keys.
#include <string_view>
#include <vector>

#include "common/block_key.h"
#include "kvtier/client.h"

namespace kvtier {

std::vector<BlockKey> PrefixHasher::HashTokens(std::span<const int32_t> tokens, BlockKey parent,
                                               std::string_view extra) const {
  std::vector<BlockKey> keys;
  if (tokens_per_block_ == 0) return keys;
  const size_t full_blocks = tokens.size() / tokens_per_block_;
  keys.reserve(full_blocks);
  Key128 prev{parent.lo, parent.hi};
  for (size_t b = 0; b < full_blocks; ++b) {
    // The extra bytes distinguish a whole chain (salt, LoRA id); mixing them into the first block
    // is enough because every later key chains from it.
    const std::string_view block_extra = b == 0 ? extra : std::string_view();
    prev = HashChainBlock(seed_, prev, tokens.data() + b * tokens_per_block_, tokens_per_block_,
                          block_extra);
    keys.push_back(BlockKey{prev.lo, prev.hi});
  }
  return keys;
}

BlockKey PrefixHasher::FromEngineHash(std::string_view engine_hash) const {
  const Key128 key = HashEngineBytes(seed_, engine_hash);
  return BlockKey{key.lo, key.hi};
}

}  // namespace kvtier
