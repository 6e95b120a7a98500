// kvtier weight cache into GPU memory: reads a range of a model file through WeightClient
// straight into device memory. Each chunk is lent in place from the daemon's DRAM arena
// (WeightClient::ReadSpans) and copied host → device from there: one DMA per chunk from the
// arena mapping, page-locked once per process, with no host buffer in between.
//
//   std::unique_ptr<kvtier::WeightDeviceReader> gpu;
//   kvtier::WeightDeviceReader::Create(weights.get(), kvtier::GpuBackend::kAuto, &gpu);
//   gpu->ReadToDevice(f, tensor_offset, tensor_bytes, device_ptr, stream);
//
// Backends as for GpuKv (kvtier/gpu.h): "cuda" when the library was built with CUDA and a device
// is present, else "cpu", where the "device" pointer is a host pointer (same API, for tests and
// hosts without a GPU). A library of its own (kvtier_client_gpu) so that a loader reading into
// host memory only does not link cudart.
//
// Thread-safety: a WeightDeviceReader may be used from many threads.
#pragma once

#include <cstdint>
#include <memory>

#include "kvtier/gpu.h"
#include "kvtier/weights.h"

namespace kvtier {

class WeightDeviceReader {
 public:
  // `weights` must outlive the reader. kAuto: cuda when a device is present, else cpu; kCuda
  // without a device (or a CUDA build) fails with FAILED_PRECONDITION "no device".
  static Status Create(WeightClient* weights, GpuBackend backend,
                       std::unique_ptr<WeightDeviceReader>* out);
  virtual ~WeightDeviceReader() = default;

  // "cuda" or "cpu".
  virtual const char* backend() const = 0;

  // Copies [offset, offset + length) of the file to `device_dst` and returns when the bytes are
  // there (each chunk's copy is enqueued on `stream`, after the work already on it, and waited
  // for before the chunk's lease ends). Errors as WeightClient::Read, or the CUDA error of a
  // copy; on an error part of the range may have been written.
  //   device_dst: [length] bytes of device memory on the device of `stream` (cuda; nullptr stream
  //     = the legacy default stream of the thread's current device), or host memory (cpu)
  virtual Status ReadToDevice(const WeightFile& file, uint64_t offset, uint64_t length,
                              void* device_dst, void* stream = nullptr,
                              WeightReadStats* stats = nullptr) = 0;
};

}  // namespace kvtier
