// On-device format of the NVMe tier (version 1). All multi-byte fields little-endian.
//
//   device = region 0 | region 1 | ... (each region_bytes, a multiple of 4 KiB)
//   region = RegionHeader (one 4 KiB page) | record | record | ...   (appended, log-like)
//   record = RecordHeader (one 4 KiB page) | payload, padded to 4 KiB
//
// Regions are written front to back and given back whole (oldest first), so the device sees
// large sequential writes. Every header carries its own checksum and every payload an XXH3-64
// checksum, so a restarted daemon can rebuild its index from the device and never serves a torn
// or corrupt block: a bad header ends the scan of its region, a bad payload is found on read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

namespace kvtier::nvme {

inline constexpr uint64_t kPage = 4096;
inline constexpr uint64_t kRegionMagic = 0x314752454954564bULL;  // "KVTIERG1"
inline constexpr uint64_t kRecordMagic = 0x314b4f4c4254564bULL;  // "KVTBLOK1"
inline constexpr uint32_t kFormatVersion = 1;

struct RegionHeader {
  uint64_t magic = kRegionMagic;
  uint32_t version = kFormatVersion;
  uint32_t reserved = 0;
  uint64_t seq = 0;  // increases with every region opened; orders regions by age
  uint64_t region_bytes = 0;
  uint64_t checksum = 0;  // XXH3-64 of the fields above
};

struct RecordHeader {
  uint64_t magic = kRecordMagic;
  uint32_t version = kFormatVersion;
  uint32_t reserved = 0;
  uint64_t region_seq = 0;  // the seq of the region it was written into (stale records differ)
  uint64_t ns = 0;
  uint64_t key_lo = 0;
  uint64_t key_hi = 0;
  uint64_t bytes = 0;             // payload bytes that matter (the rest is padding)
  uint64_t payload_checksum = 0;  // XXH3-64 of those bytes
  uint64_t checksum = 0;          // XXH3-64 of the fields above
};

// Checksum of a header: XXH3-64 of everything before its `checksum` field.
uint64_t HeaderChecksum(const RegionHeader& h);
uint64_t HeaderChecksum(const RecordHeader& h);
uint64_t PayloadChecksum(const std::byte* data, size_t bytes);

inline uint64_t RoundUpPage(uint64_t n) { return (n + kPage - 1) / kPage * kPage; }
// Bytes a record of `bytes` payload takes on the device.
inline uint64_t RecordBytes(uint64_t bytes) { return kPage + RoundUpPage(bytes); }

// One intact record of a region, as the scan at start finds it.
struct ScannedRecord {
  uint64_t ns = 0;
  uint64_t key_lo = 0;
  uint64_t key_hi = 0;
  uint64_t bytes = 0;  // at most region_bytes - 2 pages
  uint64_t payload_checksum = 0;
  uint64_t offset = 0;  // of its header page, from the start of the region
};
struct ScannedRegion {
  uint64_t seq = 0;        // nonzero
  uint64_t write_ptr = 0;  // end of the last intact record (kPage when there is none)
  std::vector<ScannedRecord> records;
};
// Reads the kPage bytes at `offset` (from the start of the region) into `page`; false on a failed
// read.
using PageReader = std::function<bool(uint64_t offset, std::byte* page)>;

// Parses one region of `region_bytes` from its pages: nullopt when its header is not a valid
// header of this format and size (never written, or by another layout: the region is free);
// otherwise its records in order, up to the first page that is not a valid record header of this
// region that fits in it (a torn tail). Only headers are read and checked; payload checksums are
// verified when a block is read. This is where a device's bytes are first trusted: the libFuzzer
// target tests/fuzz/libfuzzer/nvme_format_fuzzer.cc feeds it arbitrary pages.
std::optional<ScannedRegion> ScanRegion(uint64_t region_bytes, const PageReader& read);

}  // namespace kvtier::nvme
