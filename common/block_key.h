// Block keys: 128-bit names of immutable KV content, chained over the token prefix.
//
//   key_i = XXH3-128(seed = namespace id, parent key (16 bytes LE) || tokens of block i (int32 LE)
//                    || extra bytes)
// with the all-zero key as the parent of a chain's first block. The same function runs in the
// client library (PrefixHasher) and in the daemon, so every process and node agrees on keys.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace kvtier {

struct Key128 {
  uint64_t lo = 0;
  uint64_t hi = 0;

  friend bool operator==(const Key128& a, const Key128& b) = default;
  template <typename H>
  friend H AbslHashValue(H h, const Key128& k) {
    // Keys are already uniform hashes: mix the two halves only.
    return H::combine(std::move(h), k.lo ^ (k.hi * 0x9E3779B97F4A7C15ULL));
  }
  bool IsZero() const { return lo == 0 && hi == 0; }
};

inline constexpr size_t kKeyBytes = 16;

// Hashes one block of `num_tokens` token ids chained to `parent`. `extra` (may be empty) carries
// whatever else makes the block distinct (LoRA id, multimodal hashes, cache salt).
Key128 HashChainBlock(uint64_t seed, const Key128& parent, const int32_t* tokens, size_t num_tokens,
                      std::string_view extra = {});

// Maps an engine-supplied hash (any byte string, e.g. vLLM's block hash) to a key.
Key128 HashEngineBytes(uint64_t seed, std::string_view engine_hash);

// 32 lowercase hex digits, high half first (as a 128-bit number).
std::string KeyToHex(const Key128& key);
absl::StatusOr<Key128> KeyFromHex(std::string_view hex);

// Wire form of a batch: N consecutive 16-byte little-endian keys (lo then hi).
// `field` names the request field in the error message.
absl::StatusOr<std::vector<Key128>> DecodeKeys(std::string_view bytes, std::string_view field);
void AppendKey(const Key128& key, std::string* out);
std::string EncodeKeys(const Key128* keys, size_t n);

}  // namespace kvtier
