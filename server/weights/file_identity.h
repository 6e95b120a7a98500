// FileIdentity: one version of one origin file (URI + size + ETag/mtime) and how it is cut into
// chunks. Everything derived from it (chunk keys, the file id) changes when any part does, so a
// changed origin file is a new identity whose chunks never mix with the old one's.
#pragma once

#include <cstdint>
#include <string>

#include "common/block_key.h"

namespace kvtier {

struct FileIdentity {
  std::string uri;
  uint64_t size = 0;
  std::string version;  // ETag or Last-Modified (http), "mtime:<ns>" (file://)
  uint64_t chunk_size = 0;

  uint64_t chunks() const { return chunk_size == 0 ? 0 : (size + chunk_size - 1) / chunk_size; }
  // Bytes of chunk `index` (the last one may be short).
  uint64_t ChunkBytes(uint64_t index) const;
  // XXH3-64 of the canonical encoding: the handle clients read with; never 0.
  uint64_t FileId() const;
  // The block key of chunk `index` in the weights namespace: XXH3-128 of the canonical encoding
  // and the index.
  Key128 ChunkKey(uint64_t index) const;
  // Whether two stats name the same version of the file.
  bool SameVersion(const FileIdentity& other) const {
    return uri == other.uri && size == other.size && version == other.version;
  }
  friend bool operator==(const FileIdentity&, const FileIdentity&) = default;
};

}  // namespace kvtier
