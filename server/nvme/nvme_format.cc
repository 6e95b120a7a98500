#include "server/nvme/nvme_format.h"

#include <xxhash.h>

#include <cstddef>
#include <cstring>
#include <memory>

#include "common/checksum.h"

namespace kvtier::nvme {

uint64_t HeaderChecksum(const RegionHeader& h) {
  return XXH3_64bits(&h, offsetof(RegionHeader, checksum));
}

uint64_t HeaderChecksum(const RecordHeader& h) {
  return XXH3_64bits(&h, offsetof(RecordHeader, checksum));
}

uint64_t PayloadChecksum(const std::byte* data, size_t bytes) { return BlockChecksum(data, bytes); }

std::optional<ScannedRegion> ScanRegion(uint64_t region_bytes, const PageReader& read) {
  // A region holds its header page and at least one record page.
  if (region_bytes < 2 * kPage || region_bytes % kPage != 0) return std::nullopt;
  auto page = std::make_unique<std::byte[]>(kPage);
  if (!read(0, page.get())) return std::nullopt;
  RegionHeader rh;
  std::memcpy(&rh, page.get(), sizeof(rh));
  if (rh.magic != kRegionMagic || rh.version != kFormatVersion || rh.region_bytes != region_bytes ||
      rh.checksum != HeaderChecksum(rh) || rh.seq == 0) {
    return std::nullopt;
  }
  ScannedRegion region;
  region.seq = rh.seq;
  region.write_ptr = kPage;
  // Records follow back to back; the first bad header ends the region (a torn tail).
  const uint64_t max_payload = region_bytes - 2 * kPage;
  while (region.write_ptr + kPage <= region_bytes) {
    if (!read(region.write_ptr, page.get())) break;
    RecordHeader h;
    std::memcpy(&h, page.get(), sizeof(h));
    // `bytes` is bounded before RecordBytes rounds it up: near 2^64 that would wrap to a small
    // size and let a record claim more bytes than its region holds.
    if (h.magic != kRecordMagic || h.version != kFormatVersion || h.checksum != HeaderChecksum(h) ||
        h.region_seq != rh.seq || h.bytes > max_payload ||
        region.write_ptr + RecordBytes(h.bytes) > region_bytes) {
      break;
    }
    region.records.push_back(
        ScannedRecord{h.ns, h.key_lo, h.key_hi, h.bytes, h.payload_checksum, region.write_ptr});
    region.write_ptr += RecordBytes(h.bytes);
  }
  return region;
}

}  // namespace kvtier::nvme
