// The one place where the paged-KV layouts of inference engines are described, and the one
// staging block format kvtier moves on the wire and stores on disk.
//
// This header has no CUDA (and no abseil) types: it is included by host C++ code, by the CPU
// gather/scatter and by the CUDA kernels alike. Everything here is plain arithmetic on a
// description; nothing allocates, nothing touches the memory the pointers name.
//
// ## Terms
// A *piece* is the [block_size, kv_heads, head_size] slab of one block, one layer and one of K or
// V (or the single latent vector of MLA). Every layout below keeps a piece contiguous, row-major
// (token, then head, then dim), element_bytes per element; that is the only contiguity ever
// assumed. Where pieces sit relative to each other is given by the caller's strides.
//
// ## Staging block format (on wire and on disk)
// One block of `StagingBlockBytes(kv)` bytes holds, for each layer 0..num_layers-1 in order,
// K then V (or the latent alone for kMla), each one piece:
//
//   [num_layers, pieces_per_layer, block_size, kv_heads, head_size]   contiguous, element_bytes
//
// A staging region of n blocks is n such blocks back to back, in the order of the block-id list.
// The format does not depend on the engine's layout: a block saved from kFlash loads into
// kFlashInfer or kContiguous of the same shape. It carries no header; dtype, shape and layout
// identity belong to the namespace.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace kvtier::cuda {

// Engine KV-cache layouts. Shapes are the engine tensors' logical shapes; strides between blocks,
// between K and V, and between layers (kContiguous) come from PagedKv, never from this list.
enum class KvLayout : int32_t {
  // vLLM flash-attention backend, one tensor per layer:
  //   [2, num_blocks, block_size, kv_heads, head_size]       (index 0 = K, 1 = V)
  // compact strides: kv = num_blocks * piece, block = piece.
  kFlash = 0,
  // FlashInfer backend, one tensor per layer:
  //   [num_blocks, 2, block_size, kv_heads, head_size]
  // compact strides: block = 2 * piece, kv = piece.
  kFlashInfer = 1,
  // Multi-head latent attention (DeepSeek style), one tensor per layer:
  //   [num_blocks, block_size, head_size]   (kv_heads must be 1; head_size = latent + rope dims)
  // one piece per block and layer; compact stride: block = piece.
  kMla = 2,
  // Cross-layer contiguous blocks (vLLM's cross-layer allocation), one tensor for all layers:
  //   [num_blocks, num_layers, 2, block_size, kv_heads, head_size]
  // one block is one contiguous region; compact strides: block = num_layers * 2 * piece,
  // layer = 2 * piece, kv = piece.
  kContiguous = 3,
};

inline constexpr int32_t kNumKvLayouts = 4;

// Short stable name ("flash", "flashinfer", "mla", "contiguous"; "unknown" otherwise).
constexpr const char* KvLayoutName(KvLayout layout) {
  switch (layout) {
    case KvLayout::kFlash:
      return "flash";
    case KvLayout::kFlashInfer:
      return "flashinfer";
    case KvLayout::kMla:
      return "mla";
    case KvLayout::kContiguous:
      return "contiguous";
  }
  return "unknown";
}

// Number of pieces per block and layer: 1 for kMla (the latent), 2 (K, V) otherwise.
constexpr int32_t PiecesPerLayer(KvLayout layout) { return layout == KvLayout::kMla ? 1 : 2; }

// Description of an engine's paged KV cache. Does not own the memory; the pointers must stay
// valid while a gather/scatter using the description runs.
//
// ALL STRIDES ARE IN BYTES (multiply a framework's element strides by element_bytes), are
// non-negative, and are offsets from the layer's base pointer:
//   piece(layer, block, kv) = base(layer) + block * block_stride_bytes + kv * kv_stride_bytes
//                             [+ layer * layer_stride_bytes, kContiguous only]
// where base(layer) = layer_bases[layer], or layer_bases[0] for kContiguous.
// Padding between blocks (block_stride_bytes larger than compact) is allowed and never touched.
struct PagedKv {
  KvLayout layout = KvLayout::kFlash;
  // Device or host addresses of each layer's tensor: num_layers entries, or exactly one (the
  // whole cache) for kContiguous. Gather only reads through them; scatter writes.
  std::span<std::byte* const> layer_bases;
  int32_t num_layers = 0;
  int32_t num_blocks = 0;          // blocks per layer tensor; valid block ids are [0, num_blocks)
  int32_t block_size = 0;          // tokens per block
  int32_t kv_heads = 0;            // 1 for kMla
  int32_t head_size = 0;           // elements per head (latent + rope dims for kMla)
  int32_t element_bytes = 0;       // 2 for fp16/bf16, 1 for fp8, 4 for fp32
  int64_t block_stride_bytes = 0;  // between block b and b+1
  int64_t kv_stride_bytes = 0;     // between K and V of one block; unused (0) for kMla
  int64_t layer_stride_bytes = 0;  // between layers inside a block; kContiguous only, else 0
};

// Bytes of one piece: block_size * kv_heads * head_size * element_bytes.
constexpr int64_t PieceBytes(const PagedKv& kv) {
  return static_cast<int64_t>(kv.block_size) * kv.kv_heads * kv.head_size * kv.element_bytes;
}

// Bytes of one block in the staging format (see the top of this file).
constexpr int64_t StagingBlockBytes(const PagedKv& kv) {
  return static_cast<int64_t>(kv.num_layers) * PiecesPerLayer(kv.layout) * PieceBytes(kv);
}

// Fills the strides of `kv` for the compact (unpadded) tensor of its layout; shape fields must be
// set first. For callers whose tensors are exactly the shapes in KvLayout.
constexpr void SetCompactStrides(PagedKv& kv) {
  const int64_t piece = PieceBytes(kv);
  kv.layer_stride_bytes = 0;
  switch (kv.layout) {
    case KvLayout::kFlash:
      kv.block_stride_bytes = piece;
      kv.kv_stride_bytes = static_cast<int64_t>(kv.num_blocks) * piece;
      break;
    case KvLayout::kFlashInfer:
      kv.block_stride_bytes = 2 * piece;
      kv.kv_stride_bytes = piece;
      break;
    case KvLayout::kMla:
      kv.block_stride_bytes = piece;
      kv.kv_stride_bytes = 0;
      break;
    case KvLayout::kContiguous:
      kv.block_stride_bytes = static_cast<int64_t>(kv.num_layers) * 2 * piece;
      kv.layer_stride_bytes = 2 * piece;
      kv.kv_stride_bytes = piece;
      break;
  }
}

// Byte offset of piece (layer, block, kv) from base(layer); see PagedKv. No bounds checks.
constexpr int64_t PieceOffset(const PagedKv& kv, int32_t layer, int32_t block, int32_t k_or_v) {
  int64_t offset = block * kv.block_stride_bytes + k_or_v * kv.kv_stride_bytes;
  if (kv.layout == KvLayout::kContiguous) offset += layer * kv.layer_stride_bytes;
  return offset;
}

// Byte offset of piece (layer, k_or_v) of the i-th block of a staging region.
constexpr int64_t StagingPieceOffset(const PagedKv& kv, int64_t i, int32_t layer, int32_t k_or_v) {
  return i * StagingBlockBytes(kv) +
         (static_cast<int64_t>(layer) * PiecesPerLayer(kv.layout) + k_or_v) * PieceBytes(kv);
}

}  // namespace kvtier::cuda
