// Segments: consecutive blocks of a chain placed together, so that a lookup of a long prompt asks
// a handful of directories instead of one per block.
//
// Boundaries are content-defined: a block starts a segment when it starts its chain or when its
// key's low 64 bits are a multiple of kSegmentBlocks (keys are uniform hashes, so segments average
// kSegmentBlocks blocks: a 32k-token prompt of 16-token blocks asks about 9 owners). A reader
// knows the chain from its start and finds the heads directly; a holder finds a block's head from
// its parent's, so neither needs block positions.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/block_key.h"

namespace kvtier {

inline constexpr uint64_t kSegmentBlocks = 256;

inline bool StartsSegment(const Key128& key) { return key.lo % kSegmentBlocks == 0; }

// The head of the segment of every key of a chain given from its start.
inline std::vector<Key128> SegmentHeads(std::span<const Key128> chain) {
  std::vector<Key128> heads(chain.size());
  for (size_t i = 0; i < chain.size(); ++i) {
    heads[i] = (i == 0 || StartsSegment(chain[i])) ? chain[i] : heads[i - 1];
  }
  return heads;
}

// What placement hashes for a segment: its head, salted by the namespace.
inline uint64_t SegmentHash(uint64_t ns, const Key128& head) {
  uint64_t x = head.lo ^ (head.hi * 0x9E3779B97F4A7C15ULL) ^ (ns * 0xC2B2AE3D27D4EB4FULL);
  x ^= x >> 33;
  x *= 0xFF51AFD7ED558CCDULL;
  x ^= x >> 33;
  return x;
}

}  // namespace kvtier
