// NvmeStore: the NVMe tier's device. A preallocated file (or a block device) opened O_DIRECT,
// cut into regions written front to back through io_uring (format: nvme_format.h). It stores
// and returns block bytes and says where they are; which blocks live here is the BlockStore's
// business (it keeps NvmeLocation in its index).
//
// Thread-safe. Callbacks run on the IO engine's completion thread: keep them short.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/block_key.h"
#include "server/nvme/uring_engine.h"

namespace kvtier {

struct NvmeOptions {
  std::string path;
  uint64_t capacity = 0;
  uint64_t region_bytes = 0;  // 0: capacity / 16, between 4 MiB and 64 MiB
  unsigned queue_depth = 32;
  // Test hook: after this many successful writes every write fails with EIO (0 = never).
  uint64_t fail_writes_after = 0;
};

struct NvmeKey {
  uint64_t ns = 0;
  Key128 key;
};

// Where a record is: its region and the device offset of its header page.
struct NvmeLocation {
  uint32_t region = 0;
  uint64_t offset = 0;
};

// A record found intact on the device at start-up.
struct RecoveredBlock {
  NvmeKey id;
  uint64_t bytes = 0;
  uint64_t checksum = 0;
  NvmeLocation location;
};

struct NvmeCounters {
  uint64_t capacity_bytes = 0;
  uint64_t used_bytes = 0;  // bytes of regions holding records (live or stale)
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  uint64_t corrupt_blocks = 0;  // payload checksum mismatches found on read
  uint64_t io_errors = 0;
  uint64_t regions_evicted = 0;
  bool degraded = false;
  std::string degraded_reason;
};

class NvmeStore {
 public:
  using WriteDone = std::function<void(absl::StatusOr<NvmeLocation>)>;
  using ReadDone = std::function<void(absl::Status)>;
  // Told (outside any NvmeStore lock) which records were lost when `region` was given back.
  using EvictedFn = std::function<void(uint32_t region, const std::vector<NvmeKey>&)>;

  // Opens or creates the device, checks it (errors name --nvme-path / --nvme-capacity), registers
  // `arena` for fixed-buffer reads, and scans it: every intact record is put in *recovered.
  static absl::StatusOr<std::unique_ptr<NvmeStore>> Open(const NvmeOptions& options,
                                                         std::byte* arena, uint64_t arena_bytes,
                                                         std::vector<RecoveredBlock>* recovered);
  ~NvmeStore();

  void set_on_evicted(EvictedFn fn) { on_evicted_ = std::move(fn); }

  // Appends a record. `src` is 4 KiB aligned and holds RoundUpPage(bytes) readable bytes;
  // `checksum` is PayloadChecksum of the first `bytes`. `src` must stay valid until `done`.
  void Write(const NvmeKey& id, const std::byte* src, uint64_t bytes, uint64_t checksum,
             WriteDone done);
  // Reads a record's payload into `dst` (RoundUpPage(bytes) writable, 4 KiB aligned) and checks
  // it: DATA_LOSS when the checksum does not match (counted; the bytes must not be served).
  void Read(const NvmeLocation& location, std::byte* dst, uint64_t bytes, uint64_t checksum,
            ReadDone done);

  NvmeCounters Counters();
  uint64_t region_bytes() const { return region_bytes_; }
  bool fixed_buffers() const { return engine_->fixed_buffers(); }
  // Largest payload one record can carry.
  uint64_t max_block_bytes() const;

 private:
  struct Region {
    uint64_t seq = 0;        // 0: free
    uint64_t write_ptr = 0;  // bytes used from the region start (the header page counts)
    uint32_t pending_writes = 0;
    std::vector<NvmeKey> records;
  };

  NvmeStore(int fd, std::string path, uint64_t region_bytes, uint64_t num_regions);
  absl::Status Scan(std::vector<RecoveredBlock>* recovered);
  // A region with room for `record_bytes`, opening (and if need be evicting) one. A newly opened
  // region's header page must then be written with WriteRegionHeader (outside mu_: nothing is
  // submitted to the engine under a lock its completions take).
  absl::StatusOr<uint32_t> RegionForLocked(uint64_t record_bytes, std::vector<NvmeKey>* evicted,
                                           int64_t* evicted_region, bool* opened)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteRegionHeader(uint32_t region);
  void Degrade(const std::string& why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  int fd_;
  std::string path_;
  uint64_t region_bytes_;
  uint64_t num_regions_;
  uint64_t fail_writes_after_ = 0;
  std::unique_ptr<UringEngine> engine_;
  EvictedFn on_evicted_;
  std::byte* region_header_pages_ = nullptr;  // one aligned page per region

  absl::Mutex mu_;
  std::vector<Region> regions_ ABSL_GUARDED_BY(mu_);
  int64_t open_region_ ABSL_GUARDED_BY(mu_) = -1;
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t writes_started_ ABSL_GUARDED_BY(mu_) = 0;
  NvmeCounters counters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvtier
