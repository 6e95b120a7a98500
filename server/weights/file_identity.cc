#include "server/weights/file_identity.h"

#include <xxhash.h>

#include <algorithm>
#include <cstring>

namespace kvtier {
namespace {

// uri \0 size(le64) version \0 chunk_size(le64)
std::string Canonical(const FileIdentity& f) {
  std::string out;
  out.reserve(f.uri.size() + f.version.size() + 18);
  out.append(f.uri);
  out.push_back('\0');
  char buf[8];
  std::memcpy(buf, &f.size, 8);
  out.append(buf, 8);
  out.append(f.version);
  out.push_back('\0');
  std::memcpy(buf, &f.chunk_size, 8);
  out.append(buf, 8);
  return out;
}

}  // namespace

uint64_t FileIdentity::ChunkBytes(uint64_t index) const {
  if (index >= chunks()) return 0;
  return std::min(chunk_size, size - index * chunk_size);
}

uint64_t FileIdentity::FileId() const {
  const std::string c = Canonical(*this);
  const uint64_t id = XXH3_64bits(c.data(), c.size());
  return id == 0 ? 1 : id;
}

Key128 FileIdentity::ChunkKey(uint64_t index) const {
  std::string c = Canonical(*this);
  char buf[8];
  std::memcpy(buf, &index, 8);
  c.append(buf, 8);
  const XXH128_hash_t h = XXH3_128bits(c.data(), c.size());
  return Key128{h.low64, h.high64};
}

}  // namespace kvtier
