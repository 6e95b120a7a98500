// DevicePool: the HBM tier's memory. A few large segments owned by the daemon, sub-allocated by
// the store (one SlabAllocator per segment, so a slot never straddles two segments), addressed
// as (segment, offset), and exported per segment so engines on the node can open a segment once
// and read blocks from it directly. Two backends behind this one interface:
//   - cuda: one cudaMalloc per segment on --gpu; a segment's handle is its cudaIpcMemHandle_t;
//     engines open it with cudaIpcOpenMemHandle and copy device-to-device.
//   - cpu:  one memfd per segment; its handle is the memfd itself, handed over SCM_RIGHTS and
//     mapped by the client like the DRAM arena. Chosen explicitly (--hbm-backend cpu): it runs
//     the whole tier's logic (promotion, demotion, leases, client reads through the handle) on a
//     machine without a GPU, which is how CI tests it.
//
// Thread-safety: CopyIn/CopyOut/Export may be called from any thread; the caller keeps two copies
// from touching the same bytes (the store pins what it copies).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/hbm_wire.h"

namespace kvtier {

// What a client needs to open one segment.
struct SegmentExport {
  HbmWireBackend backend = HbmWireBackend::kCpu;
  int device = -1;
  uint32_t handle_bytes = 0;
  unsigned char handle[kHbmHandleBytes] = {};
  int fd = -1;  // cpu: the segment's memfd (owned by the pool; send a duplicate)
};

class DevicePool {
 public:
  virtual ~DevicePool() = default;

  virtual const char* backend() const = 0;  // "cpu" or "cuda"
  virtual int device() const = 0;           // CUDA device; -1 for cpu
  virtual uint32_t num_segments() const = 0;
  virtual uint64_t segment_bytes() const = 0;
  uint64_t capacity() const { return num_segments() * segment_bytes(); }

  // Synchronous copies between host memory (the DRAM arena) and pool bytes
  // [offset, offset + bytes) of `segment`. InvalidArgument outside the segment.
  //   src / dst: [bytes] host memory
  [[nodiscard]] virtual absl::Status CopyIn(uint32_t segment, uint64_t offset, const std::byte* src,
                                            uint64_t bytes) = 0;
  [[nodiscard]] virtual absl::Status CopyOut(uint32_t segment, uint64_t offset, std::byte* dst,
                                             uint64_t bytes) = 0;

  // The handle of `segment` for a client.
  [[nodiscard]] virtual absl::Status Export(uint32_t segment, SegmentExport* out) = 0;

 protected:
  absl::Status CheckRange(uint32_t segment, uint64_t offset, uint64_t bytes) const;
};

// Segments of min(capacity, 1 GiB) rounded down to 4 MiB slabs; capacity rounded down to whole
// segments. InvalidArgument (naming --hbm-capacity) when that leaves nothing.
absl::StatusOr<uint64_t> HbmSegmentBytes(uint64_t capacity, uint64_t max_segment_bytes);

// memfd segments, pages reserved up front (posix_fallocate), like the DRAM arena.
absl::StatusOr<std::unique_ptr<DevicePool>> CreateCpuDevicePool(uint64_t capacity,
                                                                uint64_t max_segment_bytes);
// cudaMalloc segments on `device`. FailedPrecondition without a CUDA build, driver or device, or
// when `device` does not exist; ResourceExhausted when the device has not that much free memory.
absl::StatusOr<std::unique_ptr<DevicePool>> CreateCudaDevicePool(uint64_t capacity,
                                                                 uint64_t max_segment_bytes,
                                                                 int device);

}  // namespace kvtier
