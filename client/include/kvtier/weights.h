// kvtier weight cache, client side (issue 6): read model files through the local kvtierd, which
// fetches each chunk once per pool (from the origin on the chunk's owners, from peers elsewhere)
// and keeps it in DRAM and on NVMe for the next start.
//
//   std::unique_ptr<kvtier::WeightClient> weights;
//   kvtier::WeightClient::Connect({}, &weights);
//   kvtier::WeightFile f;
//   weights->OpenFile("http://blobs/model-00001.safetensors", &f);   // f.size
//   weights->Read(f, offset, length, host_buffer);
//
// Bytes never travel over gRPC: the daemon pins the chunks in its DRAM arena (mapped into this
// process) and Read copies out of it, or ReadSpans lends them in place (no copy at all: e.g. a
// write to a file or a device straight from the arena). Thread-safe; calls may run concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kvtier/client.h"

namespace kvtier {

// One version of one origin file, as OpenFile found it. A file changed at the origin is a new
// version: reads of the old handle then fail with FAILED_PRECONDITION naming the change (or, when
// the old chunks are cached, still answer the old version's bytes, never a mix).
struct WeightFile {
  uint64_t file_id = 0;
  std::string uri;
  uint64_t size = 0;
  std::string version;  // ETag / Last-Modified / "mtime:<ns>"
  uint64_t chunk_size = 0;
  uint64_t chunks = 0;
};

// Where the bytes of a read came from the first time this daemon served them.
struct WeightReadStats {
  uint64_t origin_bytes = 0;  // read from the origin by this daemon
  uint64_t peer_bytes = 0;    // pulled from other daemons
  uint64_t local_bytes = 0;   // already cached here
};

struct WeightFileInfo {
  WeightFile file;
  uint64_t dram_chunks = 0;
  uint64_t nvme_chunks = 0;
  bool pinned = false;
  std::map<std::string, uint64_t> holders;  // other daemons -> chunks, pool-wide
  uint64_t holders_unknown = 0;  // chunks whose directory did not answer (not in `holders`)
  uint64_t origin_bytes = 0, peer_bytes = 0;
};

struct WeightListing {
  std::vector<WeightFileInfo> files;
  uint64_t chunk_size = 0;
  uint64_t capacity_bytes = 0;
  uint64_t pinned_bytes = 0;
};

class WeightClient {
 public:
  // ClientOptions as for Client; `read_timeout_ms` bounds one Read (the origin may be slow).
  static Status Connect(const ClientOptions& options, std::unique_ptr<WeightClient>* out,
                        int read_timeout_ms = 600'000);
  virtual ~WeightClient() = default;

  // Looks the file up at its origin (file:///path, http(s)://...).
  virtual Status OpenFile(const std::string& uri, WeightFile* out) = 0;
  // Copies [offset, offset + length) of the file into host memory at `dst`.
  virtual Status Read(const WeightFile& file, uint64_t offset, uint64_t length, void* dst,
                      WeightReadStats* stats = nullptr) = 0;
  // A piece of a file in the daemon's arena: `length` bytes at `data` are the file's bytes from
  // `file_offset`. `data` is read-only and stays pinned until the callback returns (within the
  // read lease, ClientOptions::lease_ms). Each piece is one chunk, or the part of it the read
  // covers; chunks sit in arena slots aligned to 4 KiB, so the pieces of a chunk-aligned read
  // suit O_DIRECT (check the alignment anyway: it is a property of this daemon, not a promise).
  using SpanFn = std::function<Status(uint64_t file_offset, const void* data, uint64_t length)>;
  // Zero copy: hands [offset, offset + length) of the file to `use` piece by piece, in file
  // order, straight out of the mapped arena. A `use` that fails ends the read with its status.
  virtual Status ReadSpans(const WeightFile& file, uint64_t offset, uint64_t length,
                           const SpanFn& use, WeightReadStats* stats = nullptr) = 0;
  // Starts fetching every chunk of the file into this node's cache; returns at once.
  virtual Status Prefetch(const std::string& uri, WeightFile* out = nullptr) = 0;
  // Keeps the file's chunks out of KV churn's reach (within --weight-capacity), and fetches
  // them; `unpin` lets them go again.
  virtual Status Pin(const std::string& uri, bool unpin = false) = 0;
  virtual Status ListFiles(WeightListing* out) = 0;
  virtual const std::string& socket_path() const = 0;
};

}  // namespace kvtier
