// Paged-KV gather/scatter on a CUDA device: every layer and every named block in one kernel
// launch, on the caller's stream. Same staging format as the CPU implementation (kv_layout.h),
// which is the reference these are tested against.
//
// This header compiles without CUDA: a stream is passed as `void*` holding a cudaStream_t
// (nullptr = the legacy default stream). In a build without CUDA (KVTIER_CUDA=OFF or no nvcc)
// DeviceCount() is 0 and the copies return FailedPrecondition.
//
// Thread-safety: stateless; the usual CUDA stream rules apply to the memory named.
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "cuda/kv_layout.h"

namespace kvtier::cuda {

// Most layers one launch handles (their base pointers travel in the kernel's parameters).
inline constexpr int32_t kMaxDeviceLayers = 256;

// True when this binary was built with the CUDA kernels.
bool CudaBuilt();

// Number of usable CUDA devices: 0 when built without CUDA, without a driver or without a
// device. Never fails and never aborts; safe to call on any machine.
int DeviceCount();

// A range of layers for one launch: [first, first + count); count -1 = to the last layer. Staging
// blocks always hold every layer (the full staging format); a launch over a range copies that
// range's part of each block only, so a caller can complete layers in groups.
struct LayerRange {
  int32_t first = 0;
  int32_t count = -1;
};

// Enqueues on `stream` the copy of blocks block_ids[0..num_ids) of every layer of `src` into
// `staging` (block i of staging = block block_ids[i]); returns once enqueued. Ids may repeat.
// The description is validated on the host (ValidatePagedKv; at most kMaxDeviceLayers layers);
// the ids live on the device and cannot be: the caller validates them (ValidateBlockIds) before
// uploading, and the kernel skips an out-of-range id rather than touch memory outside the cache.
//   src.layer_bases: device memory (or mapped pinned host memory)
//   device_block_ids: [num_ids] int32, device-accessible, unchanged until the copy completes
//   staging: [num_ids, StagingBlockBytes(src)] bytes, device or mapped pinned host memory
//   stream: cudaStream_t
[[nodiscard]] absl::Status GatherDevice(const PagedKv& src, const int32_t* device_block_ids,
                                        int32_t num_ids, std::byte* staging, void* stream,
                                        LayerRange layers = {});

// The inverse: block device_block_ids[i] of every layer of `dst` = block i of `staging`. Ids
// must be unique (checked by the caller, as above); bytes outside the named pieces are untouched.
//   staging: [num_ids, StagingBlockBytes(dst)] bytes, device or mapped pinned host memory
//   device_block_ids: [num_ids] int32, device-accessible
//   dst.layer_bases: device memory
//   stream: cudaStream_t
[[nodiscard]] absl::Status ScatterDevice(const std::byte* staging, const int32_t* device_block_ids,
                                         int32_t num_ids, const PagedKv& dst, void* stream,
                                         LayerRange layers = {});

}  // namespace kvtier::cuda
