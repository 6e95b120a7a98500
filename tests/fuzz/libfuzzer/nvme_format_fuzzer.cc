// libFuzzer target for the NVMe tier's on-device format: nvme::ScanRegion, which turns a region's
// pages (read back from the device at start) into the blocks the index trusts.
//
// Input: byte 0 is flags, the rest the first bytes of each page of a 16-page region (64 KiB):
// chunk i (sizeof(RecordHeader) bytes) is the start of page i, the rest of every page is zero
// (ScanRegion reads only headers). Flags: bit 0 recomputes the region header's checksum, bit 1
// every record header's checksum (so the fuzzer gets past them), bits 4-7 name a page whose
// read fails (0: none).
//
// Checks against an independent reading of the format (with 128-bit sizes, so no wrap-around):
// the region is accepted exactly when its header is valid; every record returned has a valid
// header of that region, starts where the previous one ended and fits in the region; the scan
// stops at the first page that is not such a record; nothing is read outside the region.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "server/nvme/nvme_format.h"

namespace {

using kvtier::nvme::kPage;
using kvtier::nvme::RecordHeader;
using kvtier::nvme::RegionHeader;

constexpr uint64_t kPages = 16;
constexpr uint64_t kRegion = kPages * kPage;

[[noreturn]] void Fail(const char* what, uint64_t a = 0, uint64_t b = 0) {
  std::fprintf(stderr, "nvme format check failed: %s (%llu, %llu)\n", what,
               static_cast<unsigned long long>(a), static_cast<unsigned long long>(b));
  std::abort();
}

bool ValidRegionHeader(const RegionHeader& h) {
  return h.magic == kvtier::nvme::kRegionMagic && h.version == kvtier::nvme::kFormatVersion &&
         h.region_bytes == kRegion && h.seq != 0 && h.checksum == kvtier::nvme::HeaderChecksum(h);
}

// Whether a record with this header at `at` is intact and fits in the region.
bool ValidRecord(const RecordHeader& h, uint64_t region_seq, uint64_t at) {
  const unsigned __int128 pages = (static_cast<unsigned __int128>(h.bytes) + kPage - 1) / kPage;
  const unsigned __int128 end = static_cast<unsigned __int128>(at) + kPage + pages * kPage;
  return h.magic == kvtier::nvme::kRecordMagic && h.version == kvtier::nvme::kFormatVersion &&
         h.region_seq == region_seq && h.checksum == kvtier::nvme::HeaderChecksum(h) &&
         end <= kRegion;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return -1;
  const uint8_t flags = data[0];
  const uint64_t failing_page = flags >> 4;
  std::vector<std::byte> image(kRegion);
  const uint8_t* rest = data + 1;
  size_t left = size - 1;
  for (uint64_t p = 0; p < kPages && left > 0; ++p) {
    const size_t n = left < sizeof(RecordHeader) ? left : sizeof(RecordHeader);
    std::memcpy(image.data() + p * kPage, rest, n);
    rest += n;
    left -= n;
  }
  if (flags & 1) {
    RegionHeader h;
    std::memcpy(&h, image.data(), sizeof(h));
    h.checksum = kvtier::nvme::HeaderChecksum(h);
    std::memcpy(image.data(), &h, sizeof(h));
  }
  if (flags & 2) {
    for (uint64_t p = 1; p < kPages; ++p) {
      RecordHeader h;
      std::memcpy(&h, image.data() + p * kPage, sizeof(h));
      h.checksum = kvtier::nvme::HeaderChecksum(h);
      std::memcpy(image.data() + p * kPage, &h, sizeof(h));
    }
  }

  auto read = [&](uint64_t offset, std::byte* page) {
    if (offset % kPage != 0 || offset >= kRegion) Fail("read outside the region", offset);
    if (failing_page != 0 && offset / kPage == failing_page) return false;
    std::memcpy(page, image.data() + offset, kPage);
    return true;
  };
  const auto scanned = kvtier::nvme::ScanRegion(kRegion, read);

  RegionHeader rh;
  std::memcpy(&rh, image.data(), sizeof(rh));
  if (scanned.has_value() != ValidRegionHeader(rh)) Fail("region accepted", scanned.has_value());
  if (!scanned) return 0;
  if (scanned->seq != rh.seq) Fail("region seq", scanned->seq, rh.seq);
  uint64_t at = kPage;
  for (const kvtier::nvme::ScannedRecord& r : scanned->records) {
    if (r.offset != at) Fail("record offset", r.offset, at);
    RecordHeader h;
    std::memcpy(&h, image.data() + at, sizeof(h));
    if (!ValidRecord(h, rh.seq, at)) Fail("invalid record accepted", at, h.bytes);
    if (r.bytes != h.bytes || r.ns != h.ns || r.key_lo != h.key_lo || r.key_hi != h.key_hi ||
        r.payload_checksum != h.payload_checksum) {
      Fail("record fields", at);
    }
    if (r.bytes > kRegion - 2 * kPage) Fail("record larger than a region holds", r.bytes);
    if (failing_page != 0 && at / kPage == failing_page) Fail("a failed read gave a record", at);
    at += kvtier::nvme::RecordBytes(r.bytes);
    if (at > kRegion) Fail("record past the region's end", at);
  }
  if (scanned->write_ptr != at) Fail("write pointer", scanned->write_ptr, at);
  // The scan stopped at the first page that is not an intact record (or the region's end).
  if (at + kPage <= kRegion && !(failing_page != 0 && at / kPage == failing_page)) {
    RecordHeader h;
    std::memcpy(&h, image.data() + at, sizeof(h));
    if (ValidRecord(h, rh.seq, at)) Fail("the scan stopped before an intact record", at);
  }
  return 0;
}
