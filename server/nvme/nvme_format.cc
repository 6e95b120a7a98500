#include "server/nvme/nvme_format.h"

#include <xxhash.h>

#include <cstddef>

namespace kvtier::nvme {

uint64_t HeaderChecksum(const RegionHeader& h) {
  return XXH3_64bits(&h, offsetof(RegionHeader, checksum));
}

uint64_t HeaderChecksum(const RecordHeader& h) {
  return XXH3_64bits(&h, offsetof(RecordHeader, checksum));
}

uint64_t PayloadChecksum(const std::byte* data, size_t bytes) { return XXH3_64bits(data, bytes); }

}  // namespace kvtier::nvme
