// CPU implementation of paged-KV gather/scatter: the fallback when no device is present and the
// reference the GPU kernels are tested against. Plain memcpy of whole pieces (kv_layout.h).
//
// Thread-safety: stateless; concurrent calls are fine when they write disjoint memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "cuda/kv_layout.h"

namespace kvtier::cuda {

// Checks a description: known layout, positive sizes, the right number of non-null bases
// (num_layers, or 1 for kContiguous), kv_heads == 1 for kMla, and strides no smaller than a piece
// where they are used (0 where unused). InvalidArgument naming the field otherwise.
[[nodiscard]] absl::Status ValidatePagedKv(const PagedKv& kv);

// Checks every id is in [0, num_blocks); with `require_unique`, also that none repeats.
// InvalidArgument naming `block_ids` and the position otherwise.
[[nodiscard]] absl::Status ValidateBlockIds(const PagedKv& kv, std::span<const int32_t> block_ids,
                                            bool require_unique);

// Copies blocks block_ids[0..n) of every layer of `src` into `staging` in the staging format:
// block i of staging = block block_ids[i] of src. Ids may repeat. An empty list is a no-op.
// Validates everything before copying anything; on error nothing is written.
//   staging: [n, StagingBlockBytes(src)] bytes, host memory, must not overlap src.
[[nodiscard]] absl::Status GatherCpu(const PagedKv& src, std::span<const int32_t> block_ids,
                                     std::byte* staging);

// The inverse: block block_ids[i] of every layer of `dst` = block i of `staging`. Ids must be
// unique (a repeated id would make the result depend on copy order). Bytes of dst outside the
// named blocks' pieces (other blocks, padding) are never written. On error nothing is written.
//   staging: [n, StagingBlockBytes(dst)] bytes, host memory, must not overlap dst.
[[nodiscard]] absl::Status ScatterCpu(const std::byte* staging, std::span<const int32_t> block_ids,
                                      const PagedKv& dst);

}  // namespace kvtier::cuda
