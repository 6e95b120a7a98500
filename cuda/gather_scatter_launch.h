// Internal: the boundary between gather_scatter.cc (host C++, abseil) and gather_scatter.cu
// (nvcc, no abseil). Plain C++17 types only: nvcc compiles no abseil and no C++20 headers
// (CMake 3.25 cannot ask nvcc for C++20), so this file includes neither kv_layout.h nor
// gather_scatter.h.
#pragma once

#include <cstddef>
#include <cstdint>

namespace kvtier::cuda::internal {

// = kvtier::cuda::kMaxDeviceLayers (checked in gather_scatter.cc).
inline constexpr int32_t kMaxLaunchLayers = 256;

// One launch's worth of a validated PagedKv, copied by value into the kernel parameters.
struct DeviceCopyArgs {
  std::byte* layer_bases[kMaxLaunchLayers];  // [num_layers] device ptrs, or [1] for kContiguous
  const int32_t* block_ids;                  // [num_ids] device
  std::byte* staging;                        // [num_ids, staging_block_bytes] device
  int64_t piece_bytes;
  int64_t block_stride_bytes;
  int64_t kv_stride_bytes;
  int64_t layer_stride_bytes;  // 0 unless kContiguous
  int32_t num_layers;          // of the description (and of every staging block)
  int32_t first_layer;  // this launch copies layers [first_layer, first_layer + launch_layers)
  int32_t launch_layers;
  int32_t pieces_per_layer;  // 1 (mla) or 2
  int32_t num_blocks;        // ids outside [0, num_blocks) are skipped
  int32_t num_ids;
  bool contiguous;  // one base for all layers
  bool to_staging;  // true: gather, false: scatter
};

// Enqueues the copy on `stream` (a cudaStream_t). Returns nullptr on success, else a static
// message (the CUDA error string).
const char* LaunchCopy(const DeviceCopyArgs& args, void* stream);

// cudaGetDeviceCount, 0 on any error.
int CudaDeviceCount();

}  // namespace kvtier::cuda::internal
