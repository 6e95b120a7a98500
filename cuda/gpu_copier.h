// GpuCopier: moves named blocks of an engine's paged KV cache (PagedKv) to and from per-block
// staging slots (the staging block format of kv_layout.h, e.g. the daemon's DRAM arena slots the
// client leases), with per-layer completion. Two implementations behind one interface:
//   - CPU: "device" pointers are host pointers; GatherCpu/ScatterCpu, done on return.
//   - CUDA: device KV ⇄ pinned host slots, enqueued on the caller's stream (copy engine for large
//     contiguous runs, the gather/scatter kernel through a device scratch region otherwise; the
//     rule is ChooseCopyPath below). The slots' mappings are pinned once (HostPinRegistry).
// MakeGpuCopier picks CUDA when DeviceCount() > 0, else CPU.
//
// This header compiles without CUDA: a stream is a `void*` holding a cudaStream_t (nullptr = the
// legacy default stream; ignored by the CPU implementation).
//
// Thread-safety: a GpuCopier may be used from many threads (with different staging and KV
// memory); a CopyFence belongs to one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cuda/kv_layout.h"

namespace kvtier::cuda {

// Completion of enqueued copies (a recorded CUDA event, or an already finished CPU copy).
class CopyFence {
 public:
  virtual ~CopyFence() = default;
  // Blocks until the copies before the fence finished; their error, if any.
  [[nodiscard]] virtual absl::Status Wait() = 0;
};

// How the CUDA implementation moves one (block, layer range) between the cache and a slot.
enum class CopyPath {
  // cudaMemcpyAsync of contiguous runs straight between the cache and the slot (one DMA each);
  // runs adjacent in both cache and slot are merged into one copy.
  kCopyEngine,
  // The gather/scatter kernel into/from a device scratch region, plus one cudaMemcpyAsync of a
  // whole staging block per slot.
  kKernel,
};

// Shortest run worth a copy of its own. A cudaMemcpyAsync costs ~2-4 us to issue, the time PCIe
// (25-50 GB/s) takes for 50-200 KiB, so runs of a typical piece (16 tokens x 8 heads x 128 x bf16
// = 32 KiB) would spend more time issuing than moving: those go through the kernel, which packs
// them in HBM (~TB/s) so one DMA per block crosses PCIe. From 1 MiB on, the issue cost is < ~10%
// and the copy engine saves the kernel, the scratch memory and an HBM round trip.
inline constexpr int64_t kMinCopyEngineRunBytes = 1 << 20;

// Longest unit contiguous in both the cache and the staging block:
//   - kContiguous with kv_stride == piece and layer_stride == 2 * piece: a whole block (all
//     layers), StagingBlockBytes;
//   - K and V adjacent (kv_stride == piece, layouts with 2 pieces): 2 * piece per (block, layer);
//   - otherwise one piece.
int64_t ContiguousRunBytes(const PagedKv& kv);

// The rule: kCopyEngine when ContiguousRunBytes(kv) >= kMinCopyEngineRunBytes, else kKernel.
CopyPath ChooseCopyPath(const PagedKv& kv);

// Layers per group on the kernel path: the fewest whose part of a staging block is at least
// kMinCopyEngineRunBytes (so each DMA stays worth its issue cost), at most every layer. Each
// group is one launch, one DMA per block, and one completion for its layers.
int32_t KernelLayerGroup(const PagedKv& kv);

class GpuCopier {
 public:
  virtual ~GpuCopier() = default;

  // "cpu" or "cuda".
  virtual const char* name() const = 0;

  // Copies every layer of blocks block_ids[i] of `src` into staging_blocks[i] (i < n), enqueued
  // on `stream`. On success (*layer_done)[l] completes when layer l has been read from `src` (the
  // engine may overwrite it then) and the last one when every slot is written. Validates the
  // description and ids first (nothing is enqueued on an error).
  //   src.layer_bases: device memory (CUDA) or host memory (CPU)
  //   block_ids: [n] host int32, in [0, src.num_blocks)
  //   staging_blocks: [n] host pointers, each [StagingBlockBytes(src)] bytes of host memory
  [[nodiscard]] virtual absl::Status Gather(
      const PagedKv& src, std::span<const int32_t> block_ids,
      std::span<std::byte* const> staging_blocks, void* stream,
      std::vector<std::shared_ptr<CopyFence>>* layer_done) = 0;

  // The inverse: block block_ids[i] of every layer of `dst` = staging_blocks[i]. Ids must be
  // unique. (*layer_done)[l] completes when layer l of every named block is written.
  //   staging_blocks: [n] host pointers, each [StagingBlockBytes(dst)] bytes, unchanged until done
  //   block_ids: [n] host int32, unique, in [0, dst.num_blocks)
  //   dst.layer_bases: device memory (CUDA) or host memory (CPU)
  [[nodiscard]] virtual absl::Status Scatter(
      std::span<const std::byte* const> staging_blocks, std::span<const int32_t> block_ids,
      const PagedKv& dst, void* stream, std::vector<std::shared_ptr<CopyFence>>* layer_done) = 0;

  // Scatter from staging blocks in DEVICE memory (the HBM tier's segments opened through CUDA
  // IPC): device-to-device, no pinning. The CPU implementation is Scatter (its "device" memory
  // is host memory, e.g. the cpu HBM backend's shared segments).
  //   staging_blocks: [n] device pointers, each [StagingBlockBytes(dst)] bytes
  [[nodiscard]] virtual absl::Status ScatterFromDevice(
      std::span<const std::byte* const> staging_blocks, std::span<const int32_t> block_ids,
      const PagedKv& dst, void* stream, std::vector<std::shared_ptr<CopyFence>>* layer_done) = 0;

  // Blocks until everything enqueued on `stream` finished (after a failed Gather/Scatter, before
  // the memory it named is reused: part of it may have been enqueued). No-op for the CPU.
  [[nodiscard]] virtual absl::Status Synchronize(void* stream) = 0;
};

// Checks shared by both implementations: ValidatePagedKv, ValidateBlockIds, one non-null slot per
// id.
//   slots: [num_slots] pointers
[[nodiscard]] absl::Status CheckCopyArgs(const PagedKv& kv, std::span<const int32_t> block_ids,
                                         size_t num_slots, const void* const* slots,
                                         bool require_unique);

// The CPU implementation (always available).
std::unique_ptr<GpuCopier> MakeCpuCopier();
// The CUDA implementation; FailedPrecondition "no device" when DeviceCount() == 0.
absl::StatusOr<std::unique_ptr<GpuCopier>> MakeCudaCopier();
// CUDA when DeviceCount() > 0, else CPU.
std::unique_ptr<GpuCopier> MakeGpuCopier();

}  // namespace kvtier::cuda
