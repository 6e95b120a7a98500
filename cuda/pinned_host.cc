#include "cuda/pinned_host.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cuda/gather_scatter.h"

#ifdef KVTIER_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace kvtier::cuda {

PinnedHostRange::PinnedHostRange(PinnedHostRange&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

PinnedHostRange& PinnedHostRange::operator=(PinnedHostRange&& other) noexcept {
  if (this != &other) {
    Reset();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

PinnedHostRange::~PinnedHostRange() { Reset(); }

void PinnedHostRange::Reset() {
  if (data_ == nullptr) return;
#ifdef KVTIER_HAVE_CUDA
  // Unregistering can only fail for memory that was never registered; the memory stays usable.
  (void)cudaHostUnregister(data_);
#endif
  data_ = nullptr;
  size_ = 0;
}

absl::StatusOr<PinnedHostRange> PinHostRange(void* p, size_t n) {
  if (p == nullptr || n == 0) {
    return absl::InvalidArgumentError("PinHostRange: null or empty range");
  }
  // DeviceCount() probes the driver without aborting; cudaHostRegister itself would fail with
  // cudaErrorInsufficientDriver / cudaErrorNoDevice, but this keeps the message one thing.
  if (DeviceCount() == 0) return absl::FailedPreconditionError("PinHostRange: no device");
#ifdef KVTIER_HAVE_CUDA
  const cudaError_t error =
      cudaHostRegister(p, n, cudaHostRegisterPortable | cudaHostRegisterMapped);
  if (error != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky-free error so later calls do not report it
    return absl::InternalError(
        absl::StrCat("cudaHostRegister(", n, " bytes): ", cudaGetErrorString(error)));
  }
  return PinnedHostRange(p, n);
#else
  return absl::FailedPreconditionError("PinHostRange: no device (built without CUDA)");
#endif
}

absl::Status FindMapping(const void* p, uintptr_t* begin, uintptr_t* end) {
  const uintptr_t address = reinterpret_cast<uintptr_t>(p);
  std::FILE* maps = std::fopen("/proc/self/maps", "re");
  if (maps == nullptr) return absl::InternalError("FindMapping: cannot open /proc/self/maps");
  char line[4096];
  absl::Status result = absl::NotFoundError(absl::StrFormat("FindMapping: %p is in no mapping", p));
  while (std::fgets(line, sizeof(line), maps) != nullptr) {
    uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &lo, &hi) != 2) continue;
    if (address >= lo && address < hi) {
      *begin = lo;
      *end = hi;
      result = absl::OkStatus();
      break;
    }
  }
  std::fclose(maps);
  return result;
}

absl::Status HostPinRegistry::EnsurePinned(const void* const* ptrs, size_t n) {
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < n; ++i) {
    const auto address = reinterpret_cast<uintptr_t>(ptrs[i]);
    // ranges_ is sorted by start: the candidate is the last range starting at or before address.
    auto it = std::upper_bound(ranges_.begin(), ranges_.end(), address,
                               [](uintptr_t a, const PinnedHostRange& r) {
                                 return a < reinterpret_cast<uintptr_t>(r.data());
                               });
    if (it != ranges_.begin()) {
      const PinnedHostRange& r = *std::prev(it);
      if (address < reinterpret_cast<uintptr_t>(r.data()) + r.size()) continue;
    }
    uintptr_t begin = 0, end = 0;
    if (absl::Status s = FindMapping(ptrs[i], &begin, &end); !s.ok()) return s;
    absl::StatusOr<PinnedHostRange> pinned =
        PinHostRange(reinterpret_cast<void*>(begin), static_cast<size_t>(end - begin));
    if (!pinned.ok()) return pinned.status();
    ranges_.insert(it, *std::move(pinned));
  }
  return absl::OkStatus();
}

size_t HostPinRegistry::pinned_mappings() const {
  absl::MutexLock lock(&mu_);
  return ranges_.size();
}

}  // namespace kvtier::cuda
