// ChunkDisk: the weight chunks this node keeps on local NVMe, one file per chunk, so they survive
// a daemon restart and are never given back by KV churn (the KV tier's NVMe log is separate).
//
// Layout under `dir`: <file id, 16 hex digits>/identity (uri, size, version, chunk size, one per
// line) and <file id>/<index>.chunk: a 32-byte header (magic "KVTWCHK1", index, length, XXH3-64
// of the payload) then the payload. A chunk file is written under a temporary name and renamed,
// and its checksum is verified on every read: a torn or corrupt file is deleted and counts as
// missing, never served. When a new version of a URI is written, the older versions' files go
// (a changed origin file is a new identity, and the old one will not be read again).
// A write that does not fit in `capacity` bytes evicts whole files, least recently used first
// (a read or a write uses a file; after a restart, files are ordered by when they were first
// written), never the file being written nor files the keep predicate names (pinned ones). A
// write that still does not fit is refused (the chunk stays in DRAM only).
//
// Thread-safe. The keep predicate is called with mu_ held: it must not call back in here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/weights/file_identity.h"

namespace kvtier {

class ChunkDisk {
 public:
  // Creates `dir` when missing and scans what is there.
  static absl::StatusOr<std::unique_ptr<ChunkDisk>> Open(const std::string& dir, uint64_t capacity);
  // Files for which `keep(file_id)` is true are never evicted to make room.
  void SetKeep(std::function<bool(uint64_t file_id)> keep);

  // The files found (at Open, or written since).
  std::vector<FileIdentity> Files();
  size_t ChunkCount(uint64_t file_id);
  bool Has(uint64_t file_id, uint64_t index);
  absl::Status Write(const FileIdentity& file, uint64_t index, const std::byte* data,
                     uint64_t length);
  // Reads chunk `index` into `dst` (`length` bytes) and verifies it. NOT_FOUND when absent;
  // DATA_LOSS (and the file is deleted) when it does not check out.
  absl::Status Read(const FileIdentity& file, uint64_t index, std::byte* dst, uint64_t length);
  uint64_t used_bytes();
  uint64_t capacity() const { return capacity_; }
  uint64_t evicted_files();  // since Open

 private:
  struct Entry {
    FileIdentity identity;
    absl::btree_set<uint64_t> chunks;
    uint64_t last_used = 0;  // a tick of clock_
  };
  ChunkDisk(std::string dir, uint64_t capacity) : dir_(std::move(dir)), capacity_(capacity) {}
  void Scan();
  std::string FileDir(uint64_t file_id) const;
  std::string ChunkPath(uint64_t file_id, uint64_t index) const;
  // Registers `file` (writes its identity file) and drops older versions of the same URI.
  absl::Status AddFileLocked(const FileIdentity& file) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RemoveFileLocked(uint64_t file_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Evicts least recently used files (not `writing`, not kept) until `bytes` more fit; false when
  // they cannot.
  bool MakeRoomLocked(uint64_t bytes, uint64_t writing) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void TouchLocked(uint64_t file_id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string dir_;
  const uint64_t capacity_;
  absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, Entry> files_ ABSL_GUARDED_BY(mu_);
  uint64_t used_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t clock_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t evicted_files_ ABSL_GUARDED_BY(mu_) = 0;
  std::function<bool(uint64_t)> keep_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvtier
