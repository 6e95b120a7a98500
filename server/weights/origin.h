// Origin: where a model file really lives. file:// (any mounted path: a local disk, NFS,
// blobfuse) and http(s):// (range GETs through libcurl; blob stores through pre-signed or SAS
// URLs). Origins are slow and shared by the whole pool: the weight cache reads each chunk from
// one at most once per pool, and only on the chunk's owners.
//
// Thread-safe: Stat and Read may run concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/uri.h"  // UriBaseName: the file name a pull writes
#include "server/weights/file_identity.h"

namespace kvtier {

class Origin {
 public:
  virtual ~Origin() = default;
  // The file's current identity (uri, size, version; chunk_size left 0). NOT_FOUND when there is
  // no such file; UNAVAILABLE when the origin did not answer.
  virtual absl::StatusOr<FileIdentity> Stat() = 0;
  // Reads [offset, offset + length) of the version `expected` into `dst`. FAILED_PRECONDITION,
  // naming what changed, when the file is no longer that version (its bytes are never mixed with
  // the old ones); UNAVAILABLE for errors worth a retry (5xx, a reset connection).
  virtual absl::Status Read(const FileIdentity& expected, uint64_t offset, uint64_t length,
                            std::byte* dst) = 0;
};

struct OriginOptions {
  // PEM file of the CAs that https origins' certificates must chain to (--weight-ca-file); ""
  // for libcurl's default bundle (the system's). The server's certificate and host name are
  // always verified.
  std::string ca_file;
};

// An origin for `uri`: file:///absolute/path, http://host[:port]/path or https://...
// INVALID_ARGUMENT naming `uri` for any other form.
absl::StatusOr<std::unique_ptr<Origin>> OpenOrigin(const std::string& uri,
                                                   const OriginOptions& options = {});

}  // namespace kvtier
