#include "cuda/host_to_device.h"

#include <atomic>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "cuda/gather_scatter.h"
#include "cuda/pinned_host.h"

#ifdef KVTIER_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace kvtier::cuda {
namespace {

class CpuHostToDevice final : public HostToDevice {
 public:
  const char* name() const override { return "cpu"; }
  absl::Status Copy(void* dst, const void* src, size_t n, void*) override {
    if (n == 0) return absl::OkStatus();
    if (dst == nullptr || src == nullptr) return absl::InvalidArgumentError("dst/src: null");
    std::memcpy(dst, src, n);
    return absl::OkStatus();
  }
};

#ifdef KVTIER_HAVE_CUDA
absl::Status CudaError(cudaError_t error, const char* what) {
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorString(error)));
}

class CudaHostToDevice final : public HostToDevice {
 public:
  const char* name() const override { return "cuda"; }
  absl::Status Copy(void* dst, const void* src, size_t n, void* stream) override {
    if (n == 0) return absl::OkStatus();
    if (dst == nullptr || src == nullptr) return absl::InvalidArgumentError("dst/src: null");
    // Pinned: one DMA straight from the arena. A mapping that cannot be registered (e.g. a
    // limit on locked memory) is copied from pageable memory; tried once per process, since a
    // refusal is a property of the mapping and retrying would cost a /proc walk per piece.
    if (!pin_refused_.load(std::memory_order_relaxed)) {
      if (!pins_.EnsurePinned(&src, 1).ok()) pin_refused_.store(true, std::memory_order_relaxed);
    }
    auto s = static_cast<cudaStream_t>(stream);
    if (cudaError_t e = cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, s); e != cudaSuccess) {
      (void)cudaGetLastError();
      return CudaError(e, "cudaMemcpyAsync(host to device)");
    }
    // The source is lent only until this returns.
    if (cudaError_t e = cudaStreamSynchronize(s); e != cudaSuccess) {
      return CudaError(e, "cudaStreamSynchronize");
    }
    return absl::OkStatus();
  }

 private:
  HostPinRegistry pins_;
  std::atomic<bool> pin_refused_{false};
};
#endif  // KVTIER_HAVE_CUDA

}  // namespace

std::unique_ptr<HostToDevice> MakeCpuHostToDevice() { return std::make_unique<CpuHostToDevice>(); }

absl::StatusOr<std::unique_ptr<HostToDevice>> MakeCudaHostToDevice() {
#ifdef KVTIER_HAVE_CUDA
  if (DeviceCount() == 0) return absl::FailedPreconditionError("CUDA host-to-device: no device");
  return std::unique_ptr<HostToDevice>(std::make_unique<CudaHostToDevice>());
#else
  return absl::FailedPreconditionError("CUDA host-to-device: no device (built without CUDA)");
#endif
}

}  // namespace kvtier::cuda
