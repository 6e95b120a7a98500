// The cuda DevicePool: one cudaMalloc per segment on the pool's device, exported with
// cudaIpcGetMemHandle (a handle names a whole allocation, hence one allocation per segment and
// (segment, offset) addressing). Copies go through one stream of the pool and are waited for,
// so a block is in HBM before the store makes it readable there.
//
// Compiled in every build; without CUDA, creating the pool fails with FailedPrecondition.
// NOT RUN ON A GPU YET: this file has only been compiled (docs/architecture.md, Status).
#include "absl/strings/str_format.h"
#include "common/size.h"
#include "cuda/gather_scatter.h"
#include "server/hbm/device_pool.h"

#ifdef KVTIER_HAVE_CUDA
#include <cuda_runtime_api.h>

#include <cstring>
#include <vector>

#include "absl/synchronization/mutex.h"
#endif

namespace kvtier {

#ifdef KVTIER_HAVE_CUDA
namespace {

absl::Status CudaError(cudaError_t error, const std::string& what) {
  return absl::InternalError(absl::StrFormat("%s: %s", what, cudaGetErrorString(error)));
}

class CudaDevicePool : public DevicePool {
 public:
  CudaDevicePool(int device, uint64_t segment_bytes, std::vector<void*> segments,
                 cudaStream_t stream)
      : device_(device),
        segment_bytes_(segment_bytes),
        segments_(std::move(segments)),
        stream_(stream) {}
  ~CudaDevicePool() override {
    (void)cudaSetDevice(device_);
    (void)cudaStreamDestroy(stream_);
    for (void* p : segments_) (void)cudaFree(p);
  }

  const char* backend() const override { return "cuda"; }
  int device() const override { return device_; }
  uint32_t num_segments() const override { return static_cast<uint32_t>(segments_.size()); }
  uint64_t segment_bytes() const override { return segment_bytes_; }

  absl::Status CopyIn(uint32_t segment, uint64_t offset, const std::byte* src,
                      uint64_t bytes) override {
    if (absl::Status s = CheckRange(segment, offset, bytes); !s.ok()) return s;
    return Copy(static_cast<std::byte*>(segments_[segment]) + offset, src, bytes,
                cudaMemcpyHostToDevice);
  }
  absl::Status CopyOut(uint32_t segment, uint64_t offset, std::byte* dst, uint64_t bytes) override {
    if (absl::Status s = CheckRange(segment, offset, bytes); !s.ok()) return s;
    return Copy(dst, static_cast<const std::byte*>(segments_[segment]) + offset, bytes,
                cudaMemcpyDeviceToHost);
  }
  absl::Status Export(uint32_t segment, SegmentExport* out) override {
    if (absl::Status s = CheckRange(segment, 0, 0); !s.ok()) return s;
    static_assert(sizeof(cudaIpcMemHandle_t) == kHbmHandleBytes);
    if (cudaError_t e = cudaSetDevice(device_); e != cudaSuccess) {
      return CudaError(e, "cudaSetDevice");
    }
    cudaIpcMemHandle_t handle;
    if (cudaError_t e = cudaIpcGetMemHandle(&handle, segments_[segment]); e != cudaSuccess) {
      return CudaError(e, "cudaIpcGetMemHandle");
    }
    *out = SegmentExport{};
    out->backend = HbmWireBackend::kCuda;
    out->device = device_;
    out->handle_bytes = kHbmHandleBytes;
    std::memcpy(out->handle, &handle, kHbmHandleBytes);
    return absl::OkStatus();
  }

 private:
  // One copy at a time on the pool's stream, waited for: cudaMemcpy from pageable memory may
  // return before the DMA lands, and the store publishes a block as soon as this returns.
  //   dst, src: [bytes] (one side device memory of this pool, the other host memory)
  absl::Status Copy(void* dst, const void* src, uint64_t bytes, cudaMemcpyKind kind) {
    absl::MutexLock lock(&mu_);
    if (cudaError_t e = cudaSetDevice(device_); e != cudaSuccess) {
      return CudaError(e, "cudaSetDevice");
    }
    if (cudaError_t e = cudaMemcpyAsync(dst, src, bytes, kind, stream_); e != cudaSuccess) {
      return CudaError(e, "cudaMemcpyAsync (HBM pool)");
    }
    if (cudaError_t e = cudaStreamSynchronize(stream_); e != cudaSuccess) {
      return CudaError(e, "cudaStreamSynchronize (HBM pool)");
    }
    return absl::OkStatus();
  }

  int device_;
  uint64_t segment_bytes_;
  std::vector<void*> segments_;
  absl::Mutex mu_;
  cudaStream_t stream_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<DevicePool>> CreateCudaDevicePool(uint64_t capacity,
                                                                 uint64_t max_segment_bytes,
                                                                 int device) {
  const int devices = cuda::DeviceCount();
  if (devices == 0) {
    return absl::FailedPreconditionError("--hbm-capacity: no CUDA device (or driver)");
  }
  if (device < 0 || device >= devices) {
    return absl::FailedPreconditionError(
        absl::StrFormat("--gpu: %d, but this machine has %d CUDA device(s)", device, devices));
  }
  absl::StatusOr<uint64_t> segment = HbmSegmentBytes(capacity, max_segment_bytes);
  if (!segment.ok()) return segment.status();
  if (cudaError_t e = cudaSetDevice(device); e != cudaSuccess) {
    return CudaError(e, "cudaSetDevice");
  }
  size_t free_bytes = 0, total_bytes = 0;
  if (cudaError_t e = cudaMemGetInfo(&free_bytes, &total_bytes); e != cudaSuccess) {
    return CudaError(e, "cudaMemGetInfo");
  }
  const uint64_t n = capacity / *segment;
  if (n * *segment > free_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("--hbm-capacity: %s asked for, device %d has %s free",
                        FormatBytes(n * *segment), device, FormatBytes(free_bytes)));
  }
  std::vector<void*> segments;
  auto fail = [&](absl::Status s) {
    for (void* p : segments) (void)cudaFree(p);
    return s;
  };
  for (uint64_t i = 0; i < n; ++i) {
    void* p = nullptr;
    if (cudaError_t e = cudaMalloc(&p, *segment); e != cudaSuccess) {
      return fail(CudaError(e, absl::StrFormat("cudaMalloc of HBM segment %d", i)));
    }
    segments.push_back(p);
  }
  cudaStream_t stream = nullptr;
  if (cudaError_t e = cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking); e != cudaSuccess) {
    return fail(CudaError(e, "cudaStreamCreateWithFlags"));
  }
  return std::unique_ptr<DevicePool>(
      std::make_unique<CudaDevicePool>(device, *segment, std::move(segments), stream));
}

#else  // !KVTIER_HAVE_CUDA

absl::StatusOr<std::unique_ptr<DevicePool>> CreateCudaDevicePool(uint64_t, uint64_t, int) {
  return absl::FailedPreconditionError(
      "--hbm-capacity: no CUDA device (this kvtierd was built without CUDA)");
}

#endif  // KVTIER_HAVE_CUDA

}  // namespace kvtier
