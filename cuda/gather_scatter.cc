#include "cuda/gather_scatter.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "cuda/cpu_gather_scatter.h"
#include "cuda/gather_scatter_launch.h"

namespace kvtier::cuda {
namespace {

static_assert(kMaxDeviceLayers == internal::kMaxLaunchLayers);

// Host-side checks shared by both directions; fills the kernel's arguments on success.
absl::Status Prepare(const PagedKv& kv, const int32_t* device_block_ids, int32_t num_ids,
                     const void* staging, bool to_staging, LayerRange layers,
                     internal::DeviceCopyArgs& args) {
  if (absl::Status s = ValidatePagedKv(kv); !s.ok()) return s;
  const int32_t count = layers.count < 0 ? kv.num_layers - layers.first : layers.count;
  if (layers.first < 0 || count <= 0 || layers.first + count > kv.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("layers [", layers.first, ", +", count,
                                                   ") outside the ", kv.num_layers, " layers"));
  }
  if (kv.num_layers > kMaxDeviceLayers) {
    return absl::InvalidArgumentError(absl::StrCat("PagedKv.num_layers = ", kv.num_layers,
                                                   ": at most ", kMaxDeviceLayers, " on a device"));
  }
  if (num_ids < 0) {
    return absl::InvalidArgumentError(absl::StrCat("num_ids = ", num_ids, ": must be >= 0"));
  }
  if (num_ids > 0 && device_block_ids == nullptr) {
    return absl::InvalidArgumentError("device_block_ids is null");
  }
  if (num_ids > 0 && staging == nullptr) return absl::InvalidArgumentError("staging is null");
  std::memset(&args, 0, sizeof(args));
  for (size_t i = 0; i < kv.layer_bases.size(); ++i) args.layer_bases[i] = kv.layer_bases[i];
  args.block_ids = device_block_ids;
  args.staging = const_cast<std::byte*>(static_cast<const std::byte*>(staging));
  args.piece_bytes = PieceBytes(kv);
  args.block_stride_bytes = kv.block_stride_bytes;
  args.kv_stride_bytes = kv.kv_stride_bytes;
  args.layer_stride_bytes = kv.layer_stride_bytes;
  args.num_layers = kv.num_layers;
  args.first_layer = layers.first;
  args.launch_layers = count;
  args.pieces_per_layer = PiecesPerLayer(kv.layout);
  args.num_blocks = kv.num_blocks;
  args.num_ids = num_ids;
  args.contiguous = kv.layout == KvLayout::kContiguous;
  args.to_staging = to_staging;
  return absl::OkStatus();
}

absl::Status Run(const internal::DeviceCopyArgs& args, void* stream, const char* what) {
  if (args.num_ids == 0) return absl::OkStatus();
  if (!CudaBuilt()) {
    return absl::FailedPreconditionError(absl::StrCat(what, ": built without CUDA"));
  }
  if (const char* error = internal::LaunchCopy(args, stream); error != nullptr) {
    return absl::InternalError(absl::StrCat(what, ": ", error));
  }
  return absl::OkStatus();
}

}  // namespace

bool CudaBuilt() {
#ifdef KVTIER_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

int DeviceCount() { return CudaBuilt() ? internal::CudaDeviceCount() : 0; }

absl::Status GatherDevice(const PagedKv& src, const int32_t* device_block_ids, int32_t num_ids,
                          std::byte* staging, void* stream, LayerRange layers) {
  internal::DeviceCopyArgs args;
  if (absl::Status s = Prepare(src, device_block_ids, num_ids, staging, true, layers, args);
      !s.ok()) {
    return s;
  }
  return Run(args, stream, "GatherDevice");
}

absl::Status ScatterDevice(const std::byte* staging, const int32_t* device_block_ids,
                           int32_t num_ids, const PagedKv& dst, void* stream, LayerRange layers) {
  internal::DeviceCopyArgs args;
  if (absl::Status s = Prepare(dst, device_block_ids, num_ids, staging, false, layers, args);
      !s.ok()) {
    return s;
  }
  return Run(args, stream, "ScatterDevice");
}

#ifndef KVTIER_HAVE_CUDA
namespace internal {
// Without CUDA nothing calls these with work to do; they exist so the library links.
const char* LaunchCopy(const DeviceCopyArgs&, void*) { return "built without CUDA"; }
int CudaDeviceCount() { return 0; }
}  // namespace internal
#endif

}  // namespace kvtier::cuda
