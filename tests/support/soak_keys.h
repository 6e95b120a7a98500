// The soak tests' key space and block contents, shared by the worker processes
// (kvtier-test-peer soak) and the test that checks after them: a block's bytes are a function of
// its key, so any process can check a block any other process saved, on any daemon.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kvtier/client.h"

namespace kvtier::testing {

inline constexpr uint64_t kSoakKeyHi = 0x50a450a450a450a4ULL;
inline constexpr size_t kSoakChainBlocks = 8;

inline uint64_t SoakMix(uint64_t x) {  // splitmix64's finalizer
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Block i of chain c.
inline BlockKey SoakKey(uint64_t chain, uint64_t i) {
  return {SoakMix(chain * 64 + i), kSoakKeyHi};
}

inline void FillSoakBytes(const BlockKey& key, std::byte* out, size_t n) {
  uint64_t state = key.lo ^ SoakMix(key.hi);
  for (size_t i = 0; i < n; i += 8) {
    const uint64_t x = SoakMix(state++);
    std::memcpy(out + i, &x, std::min<size_t>(8, n - i));
  }
}

// Offset of the first byte of `data` that is not the key's, or -1 when all are.
inline long FirstWrongSoakByte(const BlockKey& key, const std::byte* data, size_t n) {
  std::vector<std::byte> want(n);
  FillSoakBytes(key, want.data(), n);
  if (std::memcmp(want.data(), data, n) == 0) return -1;
  for (size_t i = 0; i < n; ++i) {
    if (want[i] != data[i]) return static_cast<long>(i);
  }
  return -1;
}

}  // namespace kvtier::testing
