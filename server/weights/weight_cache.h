// WeightCache: the model-weight fan-out read cache of one daemon (issue 6).
//
// A file (one origin version, FileIdentity) is cut into fixed-size chunks; chunk i is the block
// ChunkKey(i) of the weights namespace ("kvtier.weights", opaque blocks of --weight-chunk-size
// bytes), so chunks live in the node's tiers like KV blocks, are announced to their directories,
// and move between daemons by the cluster's pulls (checksummed). What a chunk read does, first
// that answers:
//   1. in the store (DRAM, or the KV tier's NVMe)            -> local
//   2. on the weights disk (ChunkDisk, survives restarts)   -> local
//   3. a holder elsewhere, by its directory, chosen by two   -> peer
//      random choices (ClusterNode::PullMissing)
//   4. the chunk's owners: the first --weight-origin-readers members of the placement order of
//      the chunk (Placement::TopR). An owner reads it from the origin; any other daemon asks an
//      owner (WeightPeer.FetchChunk) and then pulls it (3). When every owner fails, the next
//      members of the order are asked, and a daemon that finds itself in the order reads the
//      origin itself: a dead owner delays a chunk, never stops a pull.
// Every step is single flight per chunk: concurrent reads of a chunk wait on one fetch. So at most
// --weight-origin-readers daemons read a chunk from the origin at once, whatever the pool size
// (each requester asks one owner at a time). A chunk read from the origin gets an XXH3-64, which
// travels with it (pulls verify it). Reads start fetching the next `readahead_chunks` chunks.
//
// Thread-safe. Blocking work (origin IO, waits on peers) runs on the cache's worker pools, never
// on the caller's thread for the asynchronous calls.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/background_loop.h"
#include "server/cluster/cluster_node.h"
#include "server/store/block_store.h"
#include "server/weights/chunk_disk.h"
#include "server/weights/chunk_pins.h"
#include "server/weights/origin.h"
#include "server/weights/weight_peer.h"
#include "server/weights/worker_pool.h"

namespace kvtier {

struct WeightOptions {
  uint64_t chunk_size = 4ULL << 20;
  uint64_t capacity = 0;           // DRAM bytes held for chunks (ChunkPins)
  uint32_t origin_readers = 1;     // owners per chunk (at most this many origin reads at once)
  uint32_t readahead_chunks = 16;  // chunks fetched ahead of a read
  // This daemon's origin reads at once, lowest chunk index first. A few streams keep the origin
  // pipe full, and chunks then finish one after another, so peers pull the first ones while the
  // origin sends the rest (all of them at once would share the pipe and all finish at the end).
  uint32_t origin_streams = 3;
  uint32_t max_read_chunks = 64;        // chunks one Read may cover
  int fetch_threads = 16;               // this daemon's chunk fetches
  int serve_threads = 16;               // fetches asked by peers
  int request_threads = 8;              // Open/Read/Prefetch requests
  int peer_fetch_timeout_ms = 300'000;  // a FetchChunk (the owner may wait on a slow origin)
  std::string disk_dir;                 // "" = no weights disk (nothing survives a restart)
  uint64_t disk_capacity = 0;
  // Makes origins (tests inject their own); default OpenOrigin.
  std::function<absl::StatusOr<std::unique_ptr<Origin>>(const std::string&)> open_origin;
};

enum class ChunkSource : uint8_t { kNone = 0, kLocal, kPeer, kOrigin };
const char* ChunkSourceName(ChunkSource s);

struct ReadSpan {
  uint64_t arena_offset = 0;
  uint64_t skip = 0;
  uint64_t length = 0;
};

struct ReadAnswer {
  uint64_t lease_id = 0;
  std::vector<ReadSpan> spans;
  uint64_t origin_bytes = 0, peer_bytes = 0, local_bytes = 0;
};

struct WeightFileView {
  FileIdentity identity;
  uint64_t file_id = 0;
  uint64_t chunks = 0, dram_chunks = 0, nvme_chunks = 0;
  bool pinned = false;
  std::map<std::string, uint64_t> holders;  // other daemons -> chunks, by the chunks' directories
  uint64_t holders_unknown = 0;  // chunks whose directory did not answer (missing from holders)
  uint64_t origin_bytes = 0, peer_bytes = 0;
};

struct WeightCounters {
  uint64_t origin_bytes = 0, origin_reads = 0, origin_errors = 0;
  uint64_t peer_bytes = 0, peer_pulls = 0, peer_fetch_errors = 0;
  uint64_t local_bytes = 0;  // chunk reads answered from this node's cache
  uint64_t disk_loads = 0, disk_writes = 0;
  uint64_t pinned_bytes = 0, capacity = 0, files = 0;
};

class WeightCache {
 public:
  // `store` and `arena` (its DRAM base) outlive this; `cluster` (null on a single node) too.
  static absl::StatusOr<std::unique_ptr<WeightCache>> Create(WeightOptions options,
                                                             BlockStore* store, std::byte* arena,
                                                             ClusterNode* cluster,
                                                             WeightPeerConnector connect);
  ~WeightCache();
  WeightCache(const WeightCache&) = delete;
  WeightCache& operator=(const WeightCache&) = delete;

  // Stats the origin (blocking: call from a worker). The file's current identity and handle.
  absl::StatusOr<FileIdentity> Open(const std::string& uri);
  // Makes [offset, offset + length) of the file readable in DRAM and pins it under a read lease.
  void Read(uint64_t file_id, uint64_t offset, uint64_t length, uint32_t lease_ms,
            std::function<void(absl::StatusOr<ReadAnswer>)> done);
  // Open, then starts fetching the file's first `readahead_chunks` chunks.
  void OpenAsync(const std::string& uri, std::function<void(absl::StatusOr<FileIdentity>)> done);
  // Opens the file and starts fetching every chunk; answers how many were started.
  void Prefetch(const std::string& uri, std::function<void(absl::StatusOr<FileIdentity>)> done);
  void Pin(const std::string& uri, bool unpin,
           std::function<void(absl::StatusOr<FileIdentity>)> done);
  std::vector<WeightFileView> List();
  // A peer asks this daemon to hold a chunk (it is one of the chunk's owners, or the next in
  // line): from its cache, a holder, or the origin; never by asking another owner.
  void FetchForPeer(const FileIdentity& file, uint64_t index,
                    std::function<void(absl::StatusOr<ChunkSource>)> done);

  WeightCounters Counters();
  uint64_t ns() const { return ns_; }
  const WeightOptions& options() const { return options_; }

  // Blocking: makes chunk `index` of `file_id` present in the store. For tests.
  absl::StatusOr<ChunkSource> EnsureForTest(uint64_t file_id, uint64_t index);

 private:
  struct FileState;
  struct Flight {
    absl::Notification done;
    absl::StatusOr<ChunkSource> result = ChunkSource::kNone;
  };

  WeightCache(WeightOptions options, BlockStore* store, std::byte* arena, ClusterNode* cluster,
              WeightPeerConnector connect, uint64_t ns);
  std::shared_ptr<FileState> Register(const FileIdentity& identity);
  std::shared_ptr<FileState> Find(uint64_t file_id);
  absl::StatusOr<std::shared_ptr<Origin>> OriginFor(const std::string& uri);
  absl::StatusOr<ReadAnswer> ReadBlocking(uint64_t file_id, uint64_t offset, uint64_t length,
                                          uint32_t lease_ms);

  bool Present(const Key128& key);
  // Single flight around Fetch.
  absl::StatusOr<ChunkSource> Ensure(const std::shared_ptr<FileState>& file, uint64_t index,
                                     bool serving);
  absl::StatusOr<ChunkSource> Fetch(const std::shared_ptr<FileState>& file, uint64_t index,
                                    bool serving);
  // Reads the chunk from the weights disk or the origin straight into a new DRAM slot.
  absl::Status LoadFromDisk(FileState& file, uint64_t index);
  absl::Status ReadOrigin(FileState& file, uint64_t index);
  // Allocates the chunk's slot, fills it with `fill`, zeroes the tail, checksums and commits.
  absl::Status Insert(const FileState& file, uint64_t index,
                      const std::function<absl::Status(std::byte*, uint64_t)>& fill, bool persist);
  bool PullFromHolders(const Key128& key);
  absl::StatusOr<ChunkSource> AskOwners(const std::shared_ptr<FileState>& file, uint64_t index);
  void Readahead(const std::shared_ptr<FileState>& file, uint64_t from);
  void NoteSource(FileState& file, uint64_t index, ChunkSource source);
  // Books a chunk just pulled from a peer (counters, source) and keeps it on the weights disk.
  ChunkSource Pulled(FileState& file, uint64_t index);

  const WeightOptions options_;
  BlockStore* const store_;
  std::byte* const arena_;
  ClusterNode* const cluster_;
  const WeightPeerConnector connect_;
  const uint64_t ns_;
  NamespaceLayout layout_;  // of ns_, registered with the store by the first Register
  std::once_flag ns_registered_;
  std::unique_ptr<ChunkDisk> disk_;
  ChunkPins pins_;

  absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::shared_ptr<FileState>> files_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<Origin>> origins_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<Key128, std::shared_ptr<Flight>> flights_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<WeightPeerChannel>> channels_
      ABSL_GUARDED_BY(mu_);

  // Origin read turns (options_.origin_streams at once; waiting: (chunk index, arrival)).
  absl::Mutex origin_mu_;
  uint32_t origin_active_ ABSL_GUARDED_BY(origin_mu_) = 0;
  uint64_t origin_arrivals_ ABSL_GUARDED_BY(origin_mu_) = 0;
  std::set<std::pair<uint64_t, uint64_t>> origin_waiting_ ABSL_GUARDED_BY(origin_mu_);

  std::atomic<uint64_t> origin_bytes_{0}, origin_reads_{0}, origin_errors_{0}, peer_bytes_{0},
      peer_pulls_{0}, peer_fetch_errors_{0}, local_bytes_{0}, disk_loads_{0}, disk_writes_{0};

  // Last: stopped first (their tasks use everything above).
  std::unique_ptr<WorkerPool> serve_pool_, fetch_pool_, request_pool_;
  std::unique_ptr<BackgroundLoop> renewer_;
};

}  // namespace kvtier
