#include "common/block_key.h"

// The streaming state lives on the stack, which needs the static-linking declarations.
#define XXH_STATIC_LINKING_ONLY
#include <xxhash.h>

#include <bit>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace kvtier {
namespace {

// The wire and hash encodings are little-endian; every target we build for is too.
static_assert(std::endian::native == std::endian::little, "kvtier assumes a little-endian host");

Key128 FromXxh(const XXH128_hash_t& h) { return Key128{h.low64, h.high64}; }

}  // namespace

Key128 HashChainBlock(uint64_t seed, const Key128& parent, const int32_t* tokens, size_t num_tokens,
                      std::string_view extra) {
  XXH3_state_t state;
  XXH3_128bits_reset_withSeed(&state, seed);
  uint8_t parent_bytes[kKeyBytes];
  std::memcpy(parent_bytes, &parent.lo, 8);
  std::memcpy(parent_bytes + 8, &parent.hi, 8);
  XXH3_128bits_update(&state, parent_bytes, sizeof(parent_bytes));
  XXH3_128bits_update(&state, tokens, num_tokens * sizeof(int32_t));
  if (!extra.empty()) XXH3_128bits_update(&state, extra.data(), extra.size());
  return FromXxh(XXH3_128bits_digest(&state));
}

Key128 HashEngineBytes(uint64_t seed, std::string_view engine_hash) {
  return FromXxh(XXH3_128bits_withSeed(engine_hash.data(), engine_hash.size(), seed));
}

std::string KeyToHex(const Key128& key) { return absl::StrFormat("%016x%016x", key.hi, key.lo); }

absl::StatusOr<Key128> KeyFromHex(std::string_view hex) {
  if (hex.size() != 32) {
    return absl::InvalidArgumentError(
        absl::StrFormat("key: '%s' is not 32 hex digits", std::string(hex)));
  }
  uint64_t halves[2] = {0, 0};
  for (size_t i = 0; i < 32; ++i) {
    char c = hex[i];
    int v;
    if (c >= '0' && c <= '9') {
      v = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      v = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      v = c - 'A' + 10;
    } else {
      return absl::InvalidArgumentError(
          absl::StrFormat("key: '%s' has a non-hex character", std::string(hex)));
    }
    halves[i / 16] = (halves[i / 16] << 4) | static_cast<uint64_t>(v);
  }
  return Key128{halves[1], halves[0]};
}

absl::StatusOr<std::vector<Key128>> DecodeKeys(std::string_view bytes, std::string_view field) {
  if (bytes.size() % kKeyBytes != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: length %d is not a multiple of %d bytes (one 128-bit key each)",
                        std::string(field), bytes.size(), kKeyBytes));
  }
  std::vector<Key128> keys(bytes.size() / kKeyBytes);
  if (!keys.empty()) std::memcpy(keys.data(), bytes.data(), bytes.size());
  return keys;
}

void AppendKey(const Key128& key, std::string* out) {
  out->append(reinterpret_cast<const char*>(&key.lo), 8);
  out->append(reinterpret_cast<const char*>(&key.hi), 8);
}

std::string EncodeKeys(const Key128* keys, size_t n) {
  static_assert(sizeof(Key128) == kKeyBytes);
  return std::string(reinterpret_cast<const char*>(keys), n * kKeyBytes);
}

}  // namespace kvtier
