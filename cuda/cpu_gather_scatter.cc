#include "cuda/cpu_gather_scatter.h"

#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"

namespace kvtier::cuda {
namespace {

absl::Status Invalid(const char* field, int64_t value, const char* want) {
  return absl::InvalidArgumentError(absl::StrCat("PagedKv.", field, " = ", value, ": ", want));
}

// Validates the description, the ids and the staging pointer, in that order.
absl::Status ValidateCall(const PagedKv& kv, std::span<const int32_t> block_ids,
                          const void* staging, bool require_unique) {
  if (absl::Status s = ValidatePagedKv(kv); !s.ok()) return s;
  if (absl::Status s = ValidateBlockIds(kv, block_ids, require_unique); !s.ok()) return s;
  if (staging == nullptr && !block_ids.empty()) {
    return absl::InvalidArgumentError("staging is null");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidatePagedKv(const PagedKv& kv) {
  const int32_t layout = static_cast<int32_t>(kv.layout);
  if (layout < 0 || layout >= kNumKvLayouts) {
    return Invalid("layout", layout, "not a KvLayout");
  }
  if (kv.num_layers <= 0) return Invalid("num_layers", kv.num_layers, "must be positive");
  if (kv.num_blocks <= 0) return Invalid("num_blocks", kv.num_blocks, "must be positive");
  if (kv.block_size <= 0) return Invalid("block_size", kv.block_size, "must be positive");
  if (kv.kv_heads <= 0) return Invalid("kv_heads", kv.kv_heads, "must be positive");
  if (kv.head_size <= 0) return Invalid("head_size", kv.head_size, "must be positive");
  if (kv.element_bytes <= 0) return Invalid("element_bytes", kv.element_bytes, "must be positive");
  if (kv.layout == KvLayout::kMla && kv.kv_heads != 1) {
    return Invalid("kv_heads", kv.kv_heads, "must be 1 for the mla layout");
  }
  const size_t want_bases =
      kv.layout == KvLayout::kContiguous ? 1 : static_cast<size_t>(kv.num_layers);
  if (kv.layer_bases.size() != want_bases) {
    return Invalid("layer_bases.size()", static_cast<int64_t>(kv.layer_bases.size()),
                   kv.layout == KvLayout::kContiguous ? "must be 1 for the contiguous layout"
                                                      : "must equal num_layers");
  }
  for (size_t i = 0; i < kv.layer_bases.size(); ++i) {
    if (kv.layer_bases[i] == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("PagedKv.layer_bases[", i, "] is null"));
    }
  }
  const int64_t piece = PieceBytes(kv);
  if (kv.block_stride_bytes < piece) {
    return Invalid("block_stride_bytes", kv.block_stride_bytes,
                   absl::StrCat("must be at least one piece (", piece, " bytes)").c_str());
  }
  if (PiecesPerLayer(kv.layout) == 2) {
    if (kv.kv_stride_bytes < piece) {
      return Invalid("kv_stride_bytes", kv.kv_stride_bytes,
                     absl::StrCat("must be at least one piece (", piece, " bytes)").c_str());
    }
  } else if (kv.kv_stride_bytes != 0) {
    return Invalid("kv_stride_bytes", kv.kv_stride_bytes, "must be 0 for the mla layout");
  }
  if (kv.layout == KvLayout::kContiguous) {
    if (kv.layer_stride_bytes < piece) {
      return Invalid("layer_stride_bytes", kv.layer_stride_bytes,
                     absl::StrCat("must be at least one piece (", piece, " bytes)").c_str());
    }
  } else if (kv.layer_stride_bytes != 0) {
    return Invalid("layer_stride_bytes", kv.layer_stride_bytes,
                   "must be 0 unless the layout is contiguous");
  }
  return absl::OkStatus();
}

absl::Status ValidateBlockIds(const PagedKv& kv, std::span<const int32_t> block_ids,
                              bool require_unique) {
  // One byte per block of the cache, per call (not per block): cheap next to the copies.
  std::vector<uint8_t> seen(require_unique ? static_cast<size_t>(kv.num_blocks) : 0);
  for (size_t i = 0; i < block_ids.size(); ++i) {
    const int32_t id = block_ids[i];
    if (id < 0 || id >= kv.num_blocks) {
      return absl::InvalidArgumentError(
          absl::StrCat("block_ids[", i, "] = ", id, " is out of range [0, ", kv.num_blocks, ")"));
    }
    if (require_unique) {
      if (seen[id] != 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("block_ids[", i, "] = ", id, " repeats an earlier id"));
      }
      seen[id] = 1;
    }
  }
  return absl::OkStatus();
}

absl::Status GatherCpu(const PagedKv& src, std::span<const int32_t> block_ids, std::byte* staging) {
  if (absl::Status s = ValidateCall(src, block_ids, staging, /*require_unique=*/false); !s.ok()) {
    return s;
  }
  const int64_t piece = PieceBytes(src);
  const int32_t pieces = PiecesPerLayer(src.layout);
  // Staging is written sequentially; each source piece is one contiguous memcpy.
  std::byte* out = staging;
  for (const int32_t block : block_ids) {
    for (int32_t layer = 0; layer < src.num_layers; ++layer) {
      const std::byte* base = src.layer_bases[src.layout == KvLayout::kContiguous ? 0 : layer];
      for (int32_t kv = 0; kv < pieces; ++kv) {
        std::memcpy(out, base + PieceOffset(src, layer, block, kv), static_cast<size_t>(piece));
        out += piece;
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ScatterCpu(const std::byte* staging, std::span<const int32_t> block_ids,
                        const PagedKv& dst) {
  if (absl::Status s = ValidateCall(dst, block_ids, staging, /*require_unique=*/true); !s.ok()) {
    return s;
  }
  const int64_t piece = PieceBytes(dst);
  const int32_t pieces = PiecesPerLayer(dst.layout);
  const std::byte* in = staging;
  for (const int32_t block : block_ids) {
    for (int32_t layer = 0; layer < dst.num_layers; ++layer) {
      std::byte* base = dst.layer_bases[dst.layout == KvLayout::kContiguous ? 0 : layer];
      for (int32_t kv = 0; kv < pieces; ++kv) {
        std::memcpy(base + PieceOffset(dst, layer, block, kv), in, static_cast<size_t>(piece));
        in += piece;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace kvtier::cuda
