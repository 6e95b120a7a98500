// The cpu DevicePool: one memfd per segment (see device_pool.h), and the checks both backends
// share.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_format.h"
#include "common/size.h"
#include "server/dram/slab_allocator.h"
#include "server/hbm/device_pool.h"

namespace kvtier {

absl::Status DevicePool::CheckRange(uint32_t segment, uint64_t offset, uint64_t bytes) const {
  if (segment >= num_segments()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("segment: %d, but the pool has %d", segment, num_segments()));
  }
  if (offset > segment_bytes() || bytes > segment_bytes() - offset) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "offset: [%d, +%d) is outside the %d-byte segment", offset, bytes, segment_bytes()));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> HbmSegmentBytes(uint64_t capacity, uint64_t max_segment_bytes) {
  const uint64_t slab = SlabAllocator::kSlabBytes;
  uint64_t segment = std::min(capacity, max_segment_bytes) / slab * slab;
  if (segment == 0 || capacity / segment == 0) {
    return absl::InvalidArgumentError(absl::StrFormat("--hbm-capacity: %s is below one %s slab",
                                                      FormatBytes(capacity), FormatBytes(slab)));
  }
  return segment;
}

namespace {

class CpuDevicePool : public DevicePool {
 public:
  CpuDevicePool(uint64_t segment_bytes, std::vector<int> fds, std::vector<std::byte*> bases)
      : segment_bytes_(segment_bytes), fds_(std::move(fds)), bases_(std::move(bases)) {}
  ~CpuDevicePool() override {
    for (std::byte* b : bases_) munmap(b, segment_bytes_);
    for (int fd : fds_) close(fd);
  }

  const char* backend() const override { return "cpu"; }
  int device() const override { return -1; }
  uint32_t num_segments() const override { return static_cast<uint32_t>(bases_.size()); }
  uint64_t segment_bytes() const override { return segment_bytes_; }

  absl::Status CopyIn(uint32_t segment, uint64_t offset, const std::byte* src,
                      uint64_t bytes) override {
    if (absl::Status s = CheckRange(segment, offset, bytes); !s.ok()) return s;
    std::memcpy(bases_[segment] + offset, src, bytes);
    return absl::OkStatus();
  }
  absl::Status CopyOut(uint32_t segment, uint64_t offset, std::byte* dst, uint64_t bytes) override {
    if (absl::Status s = CheckRange(segment, offset, bytes); !s.ok()) return s;
    std::memcpy(dst, bases_[segment] + offset, bytes);
    return absl::OkStatus();
  }
  absl::Status Export(uint32_t segment, SegmentExport* out) override {
    if (absl::Status s = CheckRange(segment, 0, 0); !s.ok()) return s;
    *out = SegmentExport{};
    out->backend = HbmWireBackend::kCpu;
    out->fd = fds_[segment];
    return absl::OkStatus();
  }

 private:
  uint64_t segment_bytes_;
  std::vector<int> fds_;
  std::vector<std::byte*> bases_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<DevicePool>> CreateCpuDevicePool(uint64_t capacity,
                                                                uint64_t max_segment_bytes) {
  absl::StatusOr<uint64_t> segment = HbmSegmentBytes(capacity, max_segment_bytes);
  if (!segment.ok()) return segment.status();
  const uint64_t n = capacity / *segment;
  std::vector<int> fds;
  std::vector<std::byte*> bases;
  auto fail = [&](absl::Status s) {
    for (std::byte* b : bases) munmap(b, *segment);
    for (int fd : fds) close(fd);
    return s;
  };
  for (uint64_t i = 0; i < n; ++i) {
    const int fd = memfd_create("kvtier-hbm-cpu-segment", MFD_CLOEXEC);
    if (fd < 0) {
      return fail(absl::InternalError(absl::StrFormat("memfd_create: %s", std::strerror(errno))));
    }
    fds.push_back(fd);
    if (int err = posix_fallocate(fd, 0, static_cast<off_t>(*segment)); err != 0) {
      return fail(absl::ResourceExhaustedError(
          absl::StrFormat("--hbm-capacity: cannot reserve %s of shared memory (cpu backend): %s",
                          FormatBytes(*segment), std::strerror(err))));
    }
    void* p = mmap(nullptr, *segment, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      return fail(absl::ResourceExhaustedError(
          absl::StrFormat("mmap of an HBM cpu segment: %s", std::strerror(errno))));
    }
    bases.push_back(static_cast<std::byte*>(p));
  }
  return std::unique_ptr<DevicePool>(
      std::make_unique<CpuDevicePool>(*segment, std::move(fds), std::move(bases)));
}

}  // namespace kvtier
