#include "server/nvme/nvme_store.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "common/size.h"
#include "server/nvme/nvme_format.h"
#include "spdlog/spdlog.h"

namespace kvtier {

using nvme::kPage;

namespace {

constexpr uint64_t kMinRegion = 4ULL << 20;
constexpr uint64_t kMaxRegion = 64ULL << 20;

struct AlignedFree {
  void operator()(std::byte* p) const { std::free(p); }
};
using PageBuffer = std::unique_ptr<std::byte, AlignedFree>;
PageBuffer AllocPages(uint64_t bytes) {
  return PageBuffer(static_cast<std::byte*>(std::aligned_alloc(kPage, bytes)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<NvmeStore>> NvmeStore::Open(const NvmeOptions& options,
                                                           std::byte* arena, uint64_t arena_bytes,
                                                           std::vector<RecoveredBlock>* recovered) {
  const std::string& path = options.path;
  if (path.empty()) return absl::InvalidArgumentError("--nvme-path: must not be empty");
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--nvme-path: directory '%s' does not exist", dir.string()));
  }
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0600);
  if (fd < 0) {
    const int err = errno;
    if (err == EINVAL) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "--nvme-path: '%s' is on a file system without O_DIRECT (tmpfs?); put it on a disk",
          path));
    }
    return absl::InvalidArgumentError(
        absl::StrFormat("--nvme-path: cannot open '%s': %s", path, std::strerror(err)));
  }
  auto fail = [fd](absl::Status s) {
    close(fd);
    return s;
  };
  struct stat st;
  if (fstat(fd, &st) != 0) return fail(absl::InternalError("fstat of --nvme-path failed"));
  uint64_t capacity = options.capacity;
  if (S_ISBLK(st.st_mode)) {
    uint64_t device_bytes = 0;
    if (ioctl(fd, BLKGETSIZE64, &device_bytes) != 0) {
      return fail(absl::InternalError("--nvme-path: BLKGETSIZE64 failed"));
    }
    if (capacity == 0 || capacity > device_bytes) capacity = device_bytes;
  } else if (!S_ISREG(st.st_mode)) {
    return fail(absl::InvalidArgumentError(
        absl::StrFormat("--nvme-path: '%s' is neither a file nor a block device", path)));
  }
  uint64_t region = options.region_bytes;
  if (region == 0) region = std::clamp<uint64_t>(capacity / 16, kMinRegion, kMaxRegion);
  region = region / kPage * kPage;
  const uint64_t num_regions = region ? capacity / region : 0;
  if (region < kMinRegion || num_regions < 2) {
    return fail(absl::InvalidArgumentError(absl::StrFormat(
        "--nvme-capacity: %s is too small (at least two regions of at least 4 MiB: 8 MiB)",
        FormatBytes(capacity))));
  }
  if (S_ISREG(st.st_mode)) {
    if (int err = posix_fallocate(fd, 0, static_cast<off_t>(num_regions * region)); err != 0) {
      return fail(absl::ResourceExhaustedError(
          absl::StrFormat("--nvme-capacity: cannot reserve %s at '%s': %s",
                          FormatBytes(num_regions * region), path, std::strerror(err))));
    }
  }
  auto store = std::unique_ptr<NvmeStore>(new NvmeStore(fd, path, region, num_regions));
  store->fail_writes_after_ = options.fail_writes_after;
  auto engine = UringEngine::Create(fd, options.queue_depth, arena, arena_bytes);
  if (!engine.ok()) return engine.status();
  store->engine_ = std::move(*engine);
  if (absl::Status s = store->Scan(recovered); !s.ok()) return s;
  return store;
}

NvmeStore::NvmeStore(int fd, std::string path, uint64_t region_bytes, uint64_t num_regions)
    : fd_(fd), path_(std::move(path)), region_bytes_(region_bytes), num_regions_(num_regions) {
  region_header_pages_ = static_cast<std::byte*>(std::aligned_alloc(kPage, num_regions * kPage));
  absl::MutexLock lock(&mu_);
  regions_.resize(num_regions);
  counters_.capacity_bytes = num_regions * region_bytes;
}

NvmeStore::~NvmeStore() {
  engine_.reset();  // waits for IO in flight
  std::free(region_header_pages_);
  close(fd_);
}

uint64_t NvmeStore::max_block_bytes() const { return region_bytes_ - 2 * kPage; }

absl::Status NvmeStore::Scan(std::vector<RecoveredBlock>* recovered) {
  PageBuffer page = AllocPages(kPage);
  uint64_t max_seq = 0, found = 0, regions = 0;
  absl::MutexLock lock(&mu_);
  for (uint32_t r = 0; r < num_regions_; ++r) {
    const uint64_t start = static_cast<uint64_t>(r) * region_bytes_;
    std::optional<nvme::ScannedRegion> scanned =
        nvme::ScanRegion(region_bytes_, [&](uint64_t offset, std::byte* out) {
          if (engine_->ReadSync(page.get(), kPage, start + offset) != static_cast<int>(kPage)) {
            return false;
          }
          std::memcpy(out, page.get(), kPage);
          return true;
        });
    if (!scanned) continue;  // never written, or by another layout: free
    Region& region = regions_[r];
    region.seq = scanned->seq;
    region.write_ptr = scanned->write_ptr;
    max_seq = std::max(max_seq, scanned->seq);
    ++regions;
    for (const nvme::ScannedRecord& rec : scanned->records) {
      NvmeKey id{rec.ns, Key128{rec.key_lo, rec.key_hi}};
      recovered->push_back(
          {id, rec.bytes, rec.payload_checksum, NvmeLocation{r, start + rec.offset}});
      region.records.push_back(id);
      ++found;
    }
    counters_.used_bytes += region.write_ptr;
  }
  next_seq_ = max_seq + 1;
  spdlog::info(
      "nvme: {} on {} ({} regions of {}), io_uring fixed buffers {}; found {} blocks in "
      "{} regions",
      FormatBytes(counters_.capacity_bytes), path_, num_regions_, FormatBytes(region_bytes_),
      engine_->fixed_buffers() ? "on" : "off", found, regions);
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> NvmeStore::RegionForLocked(uint64_t record_bytes,
                                                    std::vector<NvmeKey>* evicted,
                                                    int64_t* evicted_region, bool* opened) {
  *opened = false;
  if (open_region_ >= 0 && regions_[open_region_].write_ptr + record_bytes <= region_bytes_) {
    return static_cast<uint32_t>(open_region_);
  }
  // Open a free region, or give back the oldest one that has no write in flight.
  int64_t pick = -1;
  for (uint32_t r = 0; r < num_regions_; ++r) {
    if (regions_[r].seq == 0 && r != open_region_) {
      pick = r;
      break;
    }
  }
  if (pick < 0) {
    for (uint32_t r = 0; r < num_regions_; ++r) {
      const Region& c = regions_[r];
      if (r == open_region_ || c.pending_writes > 0) continue;
      if (pick < 0 || c.seq < regions_[pick].seq) pick = r;
    }
    if (pick < 0) return absl::ResourceExhaustedError("nvme: every region has writes in flight");
    Region& old = regions_[pick];
    evicted->insert(evicted->end(), old.records.begin(), old.records.end());
    *evicted_region = pick;
    counters_.used_bytes -= old.write_ptr;
    ++counters_.regions_evicted;
    old = Region{};
  }
  Region& fresh = regions_[pick];
  fresh.seq = next_seq_++;
  fresh.write_ptr = kPage;
  counters_.used_bytes += kPage;
  open_region_ = pick;
  ++fresh.pending_writes;  // the header write, started by the caller
  *opened = true;
  return static_cast<uint32_t>(pick);
}

void NvmeStore::WriteRegionHeader(uint32_t r) {
  // A crash before the header lands only loses this region's records: the scan skips it.
  nvme::RegionHeader rh;
  {
    absl::MutexLock lock(&mu_);
    rh.seq = regions_[r].seq;
  }
  rh.region_bytes = region_bytes_;
  rh.checksum = nvme::HeaderChecksum(rh);
  std::byte* page = region_header_pages_ + static_cast<uint64_t>(r) * kPage;
  std::memset(page, 0, kPage);
  std::memcpy(page, &rh, sizeof(rh));
  engine_->Writev({{page, kPage}}, static_cast<uint64_t>(r) * region_bytes_, [this, r](int res) {
    absl::MutexLock lock(&mu_);
    --regions_[r].pending_writes;
    if (res != static_cast<int>(kPage)) {
      ++counters_.io_errors;
      Degrade(
          absl::StrFormat("region header write failed: %s", std::strerror(res < 0 ? -res : EIO)));
    }
  });
}

void NvmeStore::Degrade(const std::string& why) {
  if (counters_.degraded) return;
  counters_.degraded = true;
  counters_.degraded_reason = why;
  spdlog::error("nvme: {}; the NVMe tier is degraded and takes no more writes", why);
}

void NvmeStore::Write(const NvmeKey& id, const std::byte* src, uint64_t bytes, uint64_t checksum,
                      WriteDone done) {
  const uint64_t record = nvme::RecordBytes(bytes);
  std::vector<NvmeKey> evicted;
  int64_t evicted_region = -1;
  bool opened = false;
  uint32_t region = 0;
  uint64_t offset = 0, seq = 0;
  bool inject_error = false;
  {
    absl::MutexLock lock(&mu_);
    if (counters_.degraded) {
      done(absl::UnavailableError("nvme: tier degraded: " + counters_.degraded_reason));
      return;
    }
    if (record + kPage > region_bytes_) {
      done(absl::InvalidArgumentError(absl::StrFormat("nvme: a %s block does not fit a %s region",
                                                      FormatBytes(bytes),
                                                      FormatBytes(region_bytes_))));
      return;
    }
    auto r = RegionForLocked(record, &evicted, &evicted_region, &opened);
    if (!r.ok()) {
      done(r.status());
      return;
    }
    region = *r;
    Region& reg = regions_[region];
    offset = static_cast<uint64_t>(region) * region_bytes_ + reg.write_ptr;
    reg.write_ptr += record;
    reg.records.push_back(id);
    ++reg.pending_writes;
    seq = reg.seq;
    counters_.used_bytes += record;
    inject_error = fail_writes_after_ != 0 && writes_started_ >= fail_writes_after_;
    ++writes_started_;
  }
  if (opened) WriteRegionHeader(region);
  if (evicted_region >= 0 && on_evicted_)
    on_evicted_(static_cast<uint32_t>(evicted_region), evicted);

  auto header = std::shared_ptr<std::byte>(AllocPages(kPage).release(), AlignedFree());
  std::memset(header.get(), 0, kPage);
  nvme::RecordHeader h;
  h.region_seq = seq;
  h.ns = id.ns;
  h.key_lo = id.key.lo;
  h.key_hi = id.key.hi;
  h.bytes = bytes;
  h.payload_checksum = checksum;
  h.checksum = nvme::HeaderChecksum(h);
  std::memcpy(header.get(), &h, sizeof(h));
  const uint64_t expect = record;
  auto finish = [this, region, offset, bytes, expect, header, done = std::move(done)](int res) {
    absl::Status status;
    {
      absl::MutexLock lock(&mu_);
      --regions_[region].pending_writes;
      if (res != static_cast<int>(expect)) {
        ++counters_.io_errors;
        Degrade(absl::StrFormat("write of %d bytes at offset %d failed: %s", expect, offset,
                                res < 0 ? std::strerror(-res) : "short write"));
        status = absl::UnavailableError("nvme: write failed");
      } else {
        counters_.bytes_in += bytes;
      }
    }
    if (status.ok()) {
      done(NvmeLocation{region, offset});
    } else {
      done(status);
    }
  };
  if (inject_error) {
    finish(-EIO);
    return;
  }
  engine_->Writev({{header.get(), kPage}, {const_cast<std::byte*>(src), nvme::RoundUpPage(bytes)}},
                  offset, std::move(finish));
}

void NvmeStore::Read(const NvmeLocation& location, std::byte* dst, uint64_t bytes,
                     uint64_t checksum, ReadDone done) {
  const uint64_t len = nvme::RoundUpPage(bytes);
  engine_->Read(dst, len, location.offset + kPage,
                [this, dst, bytes, len, checksum, done = std::move(done)](int res) {
                  absl::Status status;
                  if (res != static_cast<int>(len)) {
                    status = absl::UnavailableError(absl::StrFormat(
                        "nvme: read failed: %s", res < 0 ? std::strerror(-res) : "short read"));
                  } else if (nvme::PayloadChecksum(dst, bytes) != checksum) {
                    status = absl::DataLossError("nvme: block checksum mismatch");
                  }
                  {
                    absl::MutexLock lock(&mu_);
                    if (absl::IsDataLoss(status)) ++counters_.corrupt_blocks;
                    if (absl::IsUnavailable(status)) ++counters_.io_errors;
                    if (status.ok()) counters_.bytes_out += bytes;
                  }
                  done(status);
                });
}

NvmeCounters NvmeStore::Counters() {
  absl::MutexLock lock(&mu_);
  return counters_;
}

}  // namespace kvtier
