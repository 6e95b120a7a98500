// HostToDevice: copies pieces of host memory (e.g. weight chunks lent in place from the daemon's
// DRAM arena, a shared mapping) into device memory. Two implementations behind one interface, as
// for GpuCopier:
//   - CPU: "device" pointers are host pointers; a memcpy.
//   - CUDA: cudaMemcpyAsync on the caller's stream from the source's mapping, page-locked once
//     per mapping (HostPinRegistry), so each piece is one DMA; a mapping CUDA refuses to register
//     is copied from pageable memory (correct, slower: the driver stages it).
// Copy returns when the bytes are on the device: the caller's source (a lent span) may go away.
//
// Compiles without CUDA: a stream is a `void*` holding a cudaStream_t (nullptr = the legacy
// default stream; ignored by the CPU implementation).
//
// Thread-safety: safe to use from many threads.
#pragma once

#include <cstddef>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvtier::cuda {

class HostToDevice {
 public:
  virtual ~HostToDevice() = default;
  // "cpu" or "cuda".
  virtual const char* name() const = 0;
  // Copies n bytes from `src` to `dst` and waits for the copy (enqueued on `stream`, after the
  // work already there).
  //   src: [n] bytes of host memory
  //   dst: [n] bytes of device memory (CUDA: of the stream's device) or host memory (CPU)
  [[nodiscard]] virtual absl::Status Copy(void* dst, const void* src, size_t n, void* stream) = 0;
};

// The CPU implementation (always available).
std::unique_ptr<HostToDevice> MakeCpuHostToDevice();
// The CUDA implementation; FailedPrecondition "no device" when DeviceCount() == 0 or without a
// CUDA build.
absl::StatusOr<std::unique_ptr<HostToDevice>> MakeCudaHostToDevice();

}  // namespace kvtier::cuda
