// Page-locking host memory for the device: cudaHostRegister once per process mapping, so a copy
// between the device and that memory is one DMA (no bounce through a driver staging buffer) and
// cudaMemcpyAsync on it is truly asynchronous.
//
// Compiles and links without CUDA. Without a CUDA build, a driver or a device, pinning fails with
// FailedPrecondition "no device" and never aborts (cudart is linked statically; the driver is
// probed through DeviceCount()).
//
// Thread-safety: PinnedHostRange is a value owned by one thread at a time; HostPinRegistry is
// safe to use from many threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace kvtier::cuda {

// RAII: the range [data, data + size) is registered with CUDA while the handle lives; destroying
// (or Reset()) unregisters it. Move-only.
class PinnedHostRange {
 public:
  PinnedHostRange() = default;
  PinnedHostRange(PinnedHostRange&& other) noexcept;
  PinnedHostRange& operator=(PinnedHostRange&& other) noexcept;
  PinnedHostRange(const PinnedHostRange&) = delete;
  PinnedHostRange& operator=(const PinnedHostRange&) = delete;
  ~PinnedHostRange();

  void* data() const { return data_; }
  size_t size() const { return size_; }
  bool pinned() const { return data_ != nullptr; }
  // Unregisters now (errors are ignored: the memory stays usable, only unpinned).
  void Reset();

 private:
  friend absl::StatusOr<PinnedHostRange> PinHostRange(void* p, size_t n);
  PinnedHostRange(void* data, size_t size) : data_(data), size_(size) {}
  void* data_ = nullptr;
  size_t size_ = 0;
};

// Registers [p, p + n) (cudaHostRegisterPortable | Mapped). InvalidArgument for a null or empty
// range, FailedPrecondition "no device" without CUDA/driver/device, Internal with the CUDA error
// otherwise (e.g. the range is already registered).
//   p: [n] bytes of host memory (any mapping: anonymous, file, shared memfd)
[[nodiscard]] absl::StatusOr<PinnedHostRange> PinHostRange(void* p, size_t n);

// Pins whole process mappings (as listed in /proc/self/maps) on first use and keeps them pinned
// until destroyed: EnsurePinned on an address in an already pinned mapping is a lookup, so the
// pinning (a system call and page-table walk) happens once per mapping, not per block.
class HostPinRegistry {
 public:
  HostPinRegistry() = default;
  // Makes sure the mapping holding each of `ptrs` is pinned. Errors as PinHostRange, or NotFound
  // when an address is in no mapping.
  //   ptrs: [n] host addresses (e.g. arena slots)
  [[nodiscard]] absl::Status EnsurePinned(const void* const* ptrs, size_t n);

  // Number of mappings pinned so far.
  size_t pinned_mappings() const;

 private:
  mutable absl::Mutex mu_;
  std::vector<PinnedHostRange> ranges_ ABSL_GUARDED_BY(mu_);  // sorted by data()
};

// The [begin, end) of the /proc/self/maps entry holding `p`; NotFound when none does.
[[nodiscard]] absl::Status FindMapping(const void* p, uintptr_t* begin, uintptr_t* end);

}  // namespace kvtier::cuda
