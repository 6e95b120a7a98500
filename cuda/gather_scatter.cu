// Batched paged-KV gather/scatter kernel: one launch covers every (block id, layer, K/V) piece.
// One thread block copies one piece with the widest aligned vector type the addresses allow.
// No abseil here (see gather_scatter_launch.h): nvcc compiles only this file and CUDA headers.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/gather_scatter_launch.h"

namespace kvtier::cuda::internal {
namespace {

constexpr int kThreads = 256;

// grid.x = num_ids * launch_layers * pieces_per_layer, launch index = (i * launch_layers +
// layer - first_layer) * pieces + kv: the staging order, so consecutive thread blocks write
// consecutive staging bytes. Staging blocks always hold every layer (the full format), so a launch
// over a layer range reads/writes that range's part of each block.
template <typename Vec>
__global__ void CopyPiecesKernel(const DeviceCopyArgs args) {
  const int64_t launch_index = blockIdx.x;
  const int32_t kv = static_cast<int32_t>(launch_index % args.pieces_per_layer);
  const int64_t rest = launch_index / args.pieces_per_layer;
  const int32_t layer = args.first_layer + static_cast<int32_t>(rest % args.launch_layers);
  const int64_t i = rest / args.launch_layers;
  const int64_t piece_index =
      (i * args.num_layers + layer) * args.pieces_per_layer + kv;  // in the staging region
  const int32_t block = args.block_ids[i];
  if (block < 0 || block >= args.num_blocks) return;  // the host contract was broken: touch nothing

  std::byte* paged = args.layer_bases[args.contiguous ? 0 : layer] +
                     block * args.block_stride_bytes + kv * args.kv_stride_bytes +
                     layer * args.layer_stride_bytes;
  std::byte* staged = args.staging + piece_index * args.piece_bytes;
  // paged, staged: [piece_bytes / sizeof(Vec)] Vec each
  Vec* out = reinterpret_cast<Vec*>(args.to_staging ? staged : paged);
  const Vec* in = reinterpret_cast<const Vec*>(args.to_staging ? paged : staged);
  const int64_t n = args.piece_bytes / static_cast<int64_t>(sizeof(Vec));
  for (int64_t e = threadIdx.x; e < n; e += blockDim.x) out[e] = in[e];
}

// Largest power of two (<= 16) dividing every address and stride the kernel touches.
int VectorBytes(const DeviceCopyArgs& args) {
  uint64_t bits =
      static_cast<uint64_t>(args.piece_bytes) | static_cast<uint64_t>(args.block_stride_bytes) |
      static_cast<uint64_t>(args.kv_stride_bytes) | static_cast<uint64_t>(args.layer_stride_bytes) |
      reinterpret_cast<uintptr_t>(args.staging);
  const int bases = args.contiguous ? 1 : args.num_layers;
  for (int l = 0; l < bases; ++l) bits |= reinterpret_cast<uintptr_t>(args.layer_bases[l]);
  for (int width = 16; width > 1; width /= 2) {
    if ((bits & static_cast<uint64_t>(width - 1)) == 0) return width;
  }
  return 1;
}

}  // namespace

const char* LaunchCopy(const DeviceCopyArgs& args, void* stream_ptr) {
  const auto stream = static_cast<cudaStream_t>(stream_ptr);
  const int64_t pieces =
      static_cast<int64_t>(args.num_ids) * args.launch_layers * args.pieces_per_layer;
  if (pieces <= 0) return nullptr;
  if (pieces > 0x7fffffff) return "too many pieces for one launch";
  const dim3 grid(static_cast<unsigned>(pieces));
  switch (VectorBytes(args)) {
    case 16:
      CopyPiecesKernel<uint4><<<grid, kThreads, 0, stream>>>(args);
      break;
    case 8:
      CopyPiecesKernel<uint2><<<grid, kThreads, 0, stream>>>(args);
      break;
    case 4:
      CopyPiecesKernel<uint32_t><<<grid, kThreads, 0, stream>>>(args);
      break;
    case 2:
      CopyPiecesKernel<uint16_t><<<grid, kThreads, 0, stream>>>(args);
      break;
    default:
      CopyPiecesKernel<uint8_t><<<grid, kThreads, 0, stream>>>(args);
      break;
  }
  // Launch errors (bad configuration, no device, invalid stream) surface here.
  if (const cudaError_t error = cudaGetLastError(); error != cudaSuccess) {
    return cudaGetErrorString(error);
  }
  return nullptr;
}

int CudaDeviceCount() {
  int count = 0;
  // Without a driver this returns cudaErrorInsufficientDriver / cudaErrorNoDevice: report 0.
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return 0;
  }
  return count;
}

}  // namespace kvtier::cuda::internal
