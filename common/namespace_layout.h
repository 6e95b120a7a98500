// Namespaces: everything that makes KV bytes compatible. Blocks of different namespaces never mix.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace kvtier {

struct NamespaceLayout {
  std::string model_id;
  std::string model_revision;
  uint32_t num_layers = 0;
  uint32_t kv_heads = 0;
  uint32_t head_size = 0;
  std::string dtype;  // see DtypeBytes()
  uint32_t tokens_per_block = 0;
  uint32_t tp_rank = 0;
  uint32_t tp_size = 1;
  uint32_t pp_rank = 0;
  uint32_t pp_size = 1;
  std::string layout_tag;  // "flash" "flashinfer" "mla" "contiguous" "opaque"
  uint64_t block_bytes = 0;

  friend bool operator==(const NamespaceLayout&, const NamespaceLayout&) = default;
};

// Largest block the daemon accepts (one block is one arena slot).
inline constexpr uint64_t kMaxBlockBytes = 1ULL << 30;

// Bytes per element of a dtype name, or 0 when unknown.
uint32_t DtypeBytes(const std::string& dtype);

// Checks the layout and fills in defaults (tp_size/pp_size 0 -> 1, empty layout_tag -> "flash"
// with a shape or "opaque" without). Returns the normalized layout; errors name the field.
absl::StatusOr<NamespaceLayout> NormalizeLayout(const NamespaceLayout& in);

// Block size of a normalized layout: layers x (K and V, or 1 latent for "mla") x tokens x heads
// x head size x dtype bytes; or block_bytes for "opaque".
uint64_t LayoutBlockBytes(const NamespaceLayout& layout);

// Stable 64-bit id of a normalized layout (XXH3-64 of a canonical encoding); never 0. The same in
// every process and on every node; it also seeds the block-key hash.
uint64_t LayoutId(const NamespaceLayout& layout);

}  // namespace kvtier
