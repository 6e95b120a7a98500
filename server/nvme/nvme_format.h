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

}  // namespace kvtier::nvme
