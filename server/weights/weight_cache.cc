#include "server/weights/weight_cache.h"

#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "common/checksum.h"
#include "server/cluster/segments.h"
#include "spdlog/spdlog.h"

namespace kvtier {

struct WeightCache::FileState {
  explicit FileState(const FileIdentity& f) : identity(f), file_id(f.FileId()) {
    fresh.assign(f.chunks(), ChunkSource::kNone);
  }
  const FileIdentity identity;
  const uint64_t file_id;
  absl::Mutex mu;
  // Where a chunk came from when this daemon fetched it, until a Read reports it (so a pull's
  // origin/peer bytes count fetches started by readahead too).
  std::vector<ChunkSource> fresh ABSL_GUARDED_BY(mu);
  uint64_t readahead_mark ABSL_GUARDED_BY(mu) = 0;  // chunks below were asked for already
  std::atomic<uint64_t> origin_bytes{0}, peer_bytes{0};
};

const char* ChunkSourceName(ChunkSource s) {
  switch (s) {
    case ChunkSource::kOrigin:
      return "origin";
    case ChunkSource::kPeer:
      return "peer";
    case ChunkSource::kLocal:
      return "local";
    case ChunkSource::kNone:
      break;
  }
  return "none";
}

absl::StatusOr<std::unique_ptr<WeightCache>> WeightCache::Create(WeightOptions options,
                                                                 BlockStore* store,
                                                                 std::byte* arena,
                                                                 ClusterNode* cluster,
                                                                 WeightPeerConnector connect) {
  if (options.chunk_size < 4096 || options.chunk_size % 4096 != 0 ||
      options.chunk_size > (256ULL << 20)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--weight-chunk-size: %d bytes; give a multiple of 4KiB between 4KiB and 256MiB",
        options.chunk_size));
  }
  if (options.origin_readers == 0) {
    return absl::InvalidArgumentError("--weight-origin-readers: must be at least 1");
  }
  if (!options.open_origin) {
    options.open_origin = [](const std::string& uri) { return OpenOrigin(uri); };
  }
  // The namespace is registered with the store when the first file is (so a daemon that never
  // caches weights lists no weights namespace); its id is known now.
  NamespaceLayout layout;
  layout.model_id = "kvtier.weights";
  layout.layout_tag = "opaque";
  layout.block_bytes = options.chunk_size;
  auto normalized = NormalizeLayout(layout);
  if (!normalized.ok()) return normalized.status();
  const uint64_t ns = LayoutId(*normalized);
  std::unique_ptr<ChunkDisk> disk;
  if (!options.disk_dir.empty()) {
    auto opened = ChunkDisk::Open(options.disk_dir, options.disk_capacity);
    if (!opened.ok()) return opened.status();
    disk = std::move(*opened);
  }
  std::unique_ptr<WeightCache> cache(
      new WeightCache(std::move(options), store, arena, cluster, std::move(connect), ns));
  cache->layout_ = *normalized;
  cache->disk_ = std::move(disk);
  if (cache->disk_) {
    // Files pinned with `kvtier weights pin` keep their chunks on disk too.
    cache->disk_->SetKeep([pins = &cache->pins_](uint64_t id) { return pins->IsPinned(id); });
    for (const FileIdentity& f : cache->disk_->Files()) {
      if (f.chunk_size == cache->options_.chunk_size) cache->Register(f);
    }
  }
  return cache;
}

WeightCache::WeightCache(WeightOptions options, BlockStore* store, std::byte* arena,
                         ClusterNode* cluster, WeightPeerConnector connect, uint64_t ns)
    : options_(std::move(options)),
      store_(store),
      arena_(arena),
      cluster_(cluster),
      connect_(std::move(connect)),
      ns_(ns),
      pins_(store, ns, options_.chunk_size, options_.capacity) {
  serve_pool_ = std::make_unique<WorkerPool>(options_.serve_threads);
  fetch_pool_ = std::make_unique<WorkerPool>(options_.fetch_threads);
  request_pool_ = std::make_unique<WorkerPool>(options_.request_threads);
  renewer_ = std::make_unique<BackgroundLoop>(absl::Seconds(1), [this] {
    pins_.Renew();
    return false;
  });
}

WeightCache::~WeightCache() {
  renewer_.reset();
  request_pool_.reset();
  fetch_pool_.reset();
  serve_pool_.reset();
}

std::shared_ptr<WeightCache::FileState> WeightCache::Register(const FileIdentity& identity) {
  std::call_once(ns_registered_, [this] {
    bool created = false;
    auto ns = store_->RegisterNamespace(layout_, &created);
    if (!ns.ok() || (*ns)->id != ns_) {
      spdlog::error("weights: cannot register the weights namespace: {}",
                    ns.ok() ? "another id" : std::string(ns.status().message()));
    }
  });
  absl::MutexLock lock(&mu_);
  std::shared_ptr<FileState>& f = files_[identity.FileId()];
  if (!f) f = std::make_shared<FileState>(identity);
  return f;
}

std::shared_ptr<WeightCache::FileState> WeightCache::Find(uint64_t file_id) {
  absl::MutexLock lock(&mu_);
  auto it = files_.find(file_id);
  return it == files_.end() ? nullptr : it->second;
}

absl::StatusOr<std::shared_ptr<Origin>> WeightCache::OriginFor(const std::string& uri) {
  {
    absl::MutexLock lock(&mu_);
    if (auto it = origins_.find(uri); it != origins_.end()) return it->second;
  }
  auto made = options_.open_origin(uri);
  if (!made.ok()) return made.status();
  std::shared_ptr<Origin> origin = std::move(*made);
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = origins_.emplace(uri, origin);
  return it->second;
}

absl::StatusOr<FileIdentity> WeightCache::Open(const std::string& uri) {
  auto origin = OriginFor(uri);
  if (!origin.ok()) return origin.status();
  const auto t0 = std::chrono::steady_clock::now();
  auto f = (*origin)->Stat();
  spdlog::debug(
      "weights: open of {} took {} ms", uri,
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count());
  if (!f.ok()) return f.status();
  f->chunk_size = options_.chunk_size;
  Register(*f);
  return f;
}

void WeightCache::OpenAsync(const std::string& uri,
                            std::function<void(absl::StatusOr<FileIdentity>)> done) {
  request_pool_->Post([this, uri, done = std::move(done)] {
    absl::StatusOr<FileIdentity> f = Open(uri);
    // A file is opened to be read, mostly from its start: its first chunks are fetched now, so
    // the origin pipe fills while the caller gets ready to read (CLI and client startup took
    // 0.3-1 s on a loaded machine, with the origin idle).
    if (f.ok()) {
      if (std::shared_ptr<FileState> file = Find(f->FileId())) Readahead(file, 0);
    }
    done(std::move(f));
  });
}

bool WeightCache::Present(const Key128& key) {
  auto answer = store_->Peek(ns_, std::span<const Key128>(&key, 1));
  return answer.ok() && answer->prefix_blocks == 1;
}

void WeightCache::NoteSource(FileState& file, uint64_t index, ChunkSource source) {
  absl::MutexLock lock(&file.mu);
  if (index < file.fresh.size()) file.fresh[index] = source;
}

absl::Status WeightCache::Insert(const FileState& file, uint64_t index,
                                 const std::function<absl::Status(std::byte*, uint64_t)>& fill,
                                 bool persist) {
  const Key128 key = file.identity.ChunkKey(index);
  auto grant = store_->Allocate(ns_, std::span<const Key128>(&key, 1), std::nullopt, 0);
  if (!grant.ok()) {
    return absl::Status(grant.status().code(), absl::StrFormat("chunk %d: no DRAM slot: %s", index,
                                                               grant.status().message()));
  }
  if (grant->lease_id == 0 || grant->offsets.empty() || grant->offsets[0] == kExistsOffset) {
    return absl::OkStatus();  // present, or being written by another fetch
  }
  std::byte* slot = arena_ + grant->offsets[0];
  const uint64_t len = file.identity.ChunkBytes(index);
  absl::Status s = fill(slot, len);
  if (!s.ok()) {
    (void)store_->Release(std::vector<uint64_t>{grant->lease_id});
    return s;
  }
  std::memset(slot + len, 0, grant->block_bytes - len);
  const uint64_t sum = BlockChecksum(slot, grant->block_bytes);
  if (persist && disk_) {
    if (absl::Status w = disk_->Write(file.identity, index, slot, len); w.ok()) {
      disk_writes_.fetch_add(1, std::memory_order_relaxed);
    } else {
      spdlog::warn("weights: chunk {} of {} not kept on disk: {}", index, file.identity.uri,
                   std::string(w.message()));
    }
  }
  const uint64_t sums[1] = {sum};
  auto committed = store_->Commit(grant->lease_id, {}, sums);
  return committed.ok() ? absl::OkStatus() : committed.status();
}

absl::Status WeightCache::LoadFromDisk(FileState& file, uint64_t index) {
  absl::Status s = Insert(
      file, index,
      [&](std::byte* dst, uint64_t len) { return disk_->Read(file.identity, index, dst, len); },
      /*persist=*/false);
  if (s.ok()) disk_loads_.fetch_add(1, std::memory_order_relaxed);
  return s;
}

absl::Status WeightCache::ReadOrigin(FileState& file, uint64_t index) {
  auto origin = OriginFor(file.identity.uri);
  if (!origin.ok()) return origin.status();
  const uint64_t len = file.identity.ChunkBytes(index);
  {
    // Wait for a turn: lowest chunk index first.
    struct Turn {
      WeightCache* self;
      std::pair<uint64_t, uint64_t> me;
    };
    absl::MutexLock lock(&origin_mu_);
    Turn turn{this, {index, origin_arrivals_++}};
    origin_waiting_.insert(turn.me);
    origin_mu_.Await(absl::Condition(
        +[](Turn* t) ABSL_EXCLUSIVE_LOCKS_REQUIRED(t->self->origin_mu_) {
          return t->self->origin_active_ <
                     std::max<uint32_t>(1, t->self->options_.origin_streams) &&
                 *t->self->origin_waiting_.begin() == t->me;
        },
        &turn));
    origin_waiting_.erase(origin_waiting_.begin());
    ++origin_active_;
  }
  const auto t0 = std::chrono::steady_clock::now();
  spdlog::debug("weights: origin read of chunk {} starts", index);
  absl::Status s = Insert(
      file, index,
      [&](std::byte* dst, uint64_t n) {
        return (*origin)->Read(file.identity, index * file.identity.chunk_size, n, dst);
      },
      /*persist=*/true);
  {
    absl::MutexLock lock(&origin_mu_);
    --origin_active_;
  }
  if (!s.ok()) {
    origin_errors_.fetch_add(1, std::memory_order_relaxed);
    return s;
  }
  spdlog::debug(
      "weights: origin read of chunk {} took {} ms", index,
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count());
  origin_reads_.fetch_add(1, std::memory_order_relaxed);
  origin_bytes_.fetch_add(len, std::memory_order_relaxed);
  file.origin_bytes.fetch_add(len, std::memory_order_relaxed);
  return absl::OkStatus();
}

bool WeightCache::PullFromHolders(const Key128& key) {
  absl::Notification pulled;
  cluster_->PullMissing(ns_, std::vector<Key128>{key}, 0, [&pulled] { pulled.Notify(); });
  pulled.WaitForNotification();
  return Present(key);
}

ChunkSource WeightCache::Pulled(FileState& file, uint64_t index) {
  const uint64_t len = file.identity.ChunkBytes(index);
  peer_pulls_.fetch_add(1, std::memory_order_relaxed);
  peer_bytes_.fetch_add(len, std::memory_order_relaxed);
  file.peer_bytes.fetch_add(len, std::memory_order_relaxed);
  NoteSource(file, index, ChunkSource::kPeer);
  if (disk_) {  // kept for the next start too
    const Key128 key = file.identity.ChunkKey(index);
    auto grant = store_->Acquire(ns_, std::span<const Key128>(&key, 1), 0);
    if (grant.ok() && grant->offsets.size() == 1) {
      if (disk_->Write(file.identity, index, arena_ + grant->offsets[0], len).ok()) {
        disk_writes_.fetch_add(1, std::memory_order_relaxed);
      }
    }
    if (grant.ok() && grant->lease_id != 0) {
      (void)store_->Release(std::vector<uint64_t>{grant->lease_id});
    }
  }
  return ChunkSource::kPeer;
}

absl::StatusOr<ChunkSource> WeightCache::Ensure(const std::shared_ptr<FileState>& file,
                                                uint64_t index, bool serving) {
  const Key128 key = file->identity.ChunkKey(index);
  std::shared_ptr<Flight> flight;
  bool mine = false;
  {
    // A fetch in flight first: its chunk may be present already while the fetch has not yet
    // recorded where it came from.
    absl::MutexLock lock(&mu_);
    if (auto it = flights_.find(key); it != flights_.end()) flight = it->second;
  }
  if (flight) {
    flight->done.WaitForNotification();
    return flight->result;
  }
  if (Present(key)) return ChunkSource::kLocal;
  {
    absl::MutexLock lock(&mu_);
    std::shared_ptr<Flight>& slot = flights_[key];
    if (!slot) {
      slot = std::make_shared<Flight>();
      mine = true;
    }
    flight = slot;
  }
  if (!mine) {
    flight->done.WaitForNotification();
    return flight->result;
  }
  absl::StatusOr<ChunkSource> result = Fetch(file, index, serving);
  if (!result.ok()) {
    result = absl::Status(result.status().code(),
                          absl::StrFormat("chunk %d of %s: %s", index, file->identity.uri,
                                          result.status().message()));
  }
  flight->result = result;
  {
    absl::MutexLock lock(&mu_);
    flights_.erase(key);
  }
  flight->done.Notify();
  return result;
}

absl::StatusOr<ChunkSource> WeightCache::Fetch(const std::shared_ptr<FileState>& file,
                                               uint64_t index, bool serving) {
  const Key128 key = file->identity.ChunkKey(index);
  if (disk_ && disk_->Has(file->file_id, index)) {
    if (LoadFromDisk(*file, index).ok() && Present(key)) return ChunkSource::kLocal;
  }
  if (cluster_ != nullptr && PullFromHolders(key)) return Pulled(*file, index);
  if (cluster_ != nullptr && !serving) return AskOwners(file, index);
  if (absl::Status s = ReadOrigin(*file, index); !s.ok()) return s;
  NoteSource(*file, index, ChunkSource::kOrigin);
  return ChunkSource::kOrigin;
}

absl::StatusOr<ChunkSource> WeightCache::AskOwners(const std::shared_ptr<FileState>& file,
                                                   uint64_t index) {
  const Key128 key = file->identity.ChunkKey(index);
  const size_t owners = options_.origin_readers;
  std::vector<Member> order = cluster_->PlacementOrder(SegmentHash(ns_, key), owners + 2);
  const std::string& self = cluster_->self_id();
  auto read_here = [&]() -> absl::StatusOr<ChunkSource> {
    if (absl::Status s = ReadOrigin(*file, index); !s.ok()) return s;
    NoteSource(*file, index, ChunkSource::kOrigin);
    return ChunkSource::kOrigin;
  };
  for (size_t i = 0; i < std::min(owners, order.size()); ++i) {
    if (order[i].id == self) return read_here();
  }
  // Requesters start at different owners, so N owners share a chunk's origin reads.
  if (owners > 1 && order.size() > 1) {
    const size_t n = std::min(owners, order.size());
    std::rotate(order.begin(), order.begin() + (std::hash<std::string>{}(self) % n),
                order.begin() + n);
  }
  absl::Status last = absl::UnavailableError("no owner answered");
  for (const Member& m : order) {
    if (m.id == self) return read_here();
    std::shared_ptr<WeightPeerChannel> channel;
    {
      absl::MutexLock lock(&mu_);
      std::shared_ptr<WeightPeerChannel>& c = channels_[m.id];
      if (!c) c = connect_(m);
      channel = c;
    }
    const auto t0 = std::chrono::steady_clock::now();
    auto fetched = channel->FetchChunk(file->identity, index, options_.peer_fetch_timeout_ms);
    const auto t1 = std::chrono::steady_clock::now();
    if (!fetched.ok()) {
      peer_fetch_errors_.fetch_add(1, std::memory_order_relaxed);
      last = fetched.status();
      // The origin's own answer (missing file, changed file) is the same from anywhere.
      const absl::StatusCode code = fetched.status().code();
      if (code == absl::StatusCode::kNotFound || code == absl::StatusCode::kFailedPrecondition ||
          code == absl::StatusCode::kPermissionDenied ||
          code == absl::StatusCode::kInvalidArgument) {
        return fetched.status();
      }
      spdlog::info("weights: owner {} of chunk {} of {} failed ({}); asking the next", m.id, index,
                   file->identity.uri, std::string(fetched.status().message()));
      continue;
    }
    // From a holder its directory knows (two random choices: once a chunk has spread, its
    // readers spread over the copies), else straight from the daemon that answered (its
    // directory may be slow or gone).
    // The owner is alive and holds it: a failed pull (a first contact, a busy link) is worth
    // a few more tries before another daemon is asked (that could cost a second origin read).
    for (int attempt = 0; attempt < 10; ++attempt) {
      bool here = PullFromHolders(key);
      if (!here && attempt % 3 == 0) {
        absl::Notification pulled;
        cluster_->PullFrom(ns_, std::vector<Key128>{key}, m.id, [&pulled] { pulled.Notify(); });
        pulled.WaitForNotification();
        here = Present(key);
      }
      if (here) {
        spdlog::debug("weights: chunk {}: owner {} answered in {} ms, pulled in {} ms", index, m.id,
                      std::chrono::duration_cast<std::chrono::milliseconds>(t1 - t0).count(),
                      std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - t1)
                          .count());
        return Pulled(*file, index);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20 * (attempt + 1)));
    }
    last = absl::UnavailableError(absl::StrFormat("%s holds it but the pull failed", m.id));
    spdlog::warn(
        "weights: {} fetched chunk {} of {} but pulling it from there failed; asking the "
        "next member",
        m.id, index, file->identity.uri);
  }
  spdlog::warn("weights: no owner of chunk {} of {} could serve it ({}); reading the origin here",
               index, file->identity.uri, std::string(last.message()));
  return read_here();
}

void WeightCache::Readahead(const std::shared_ptr<FileState>& file, uint64_t from) {
  const uint64_t end =
      std::min<uint64_t>(file->identity.chunks(), from + options_.readahead_chunks);
  uint64_t start = from;
  {
    absl::MutexLock lock(&file->mu);
    start = std::max(start, file->readahead_mark);
    if (start >= end) return;
    file->readahead_mark = end;
  }
  for (uint64_t j = start; j < end; ++j) {
    fetch_pool_->Post([this, file, j] {
      if (Ensure(file, j, false).ok()) pins_.Hold(file->file_id, file->identity.ChunkKey(j));
    });
  }
}

void WeightCache::Read(uint64_t file_id, uint64_t offset, uint64_t length, uint32_t lease_ms,
                       std::function<void(absl::StatusOr<ReadAnswer>)> done) {
  request_pool_->Post([this, file_id, offset, length, lease_ms, done = std::move(done)] {
    const auto t0 = std::chrono::steady_clock::now();
    absl::StatusOr<ReadAnswer> answer = ReadBlocking(file_id, offset, length, lease_ms);
    spdlog::debug(
        "weights: read of {} bytes at {} took {} ms", length, offset,
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count());
    done(std::move(answer));
  });
}

absl::StatusOr<ReadAnswer> WeightCache::ReadBlocking(uint64_t file_id, uint64_t offset,
                                                     uint64_t length, uint32_t lease_ms) {
  std::shared_ptr<FileState> file = Find(file_id);
  if (!file) {
    return absl::NotFoundError(
        absl::StrFormat("file_id: %016x is not open on this daemon (OpenFile first)", file_id));
  }
  const FileIdentity& id = file->identity;
  if (length == 0) return absl::InvalidArgumentError("length: 0");
  if (offset > id.size || length > id.size - offset) {
    return absl::OutOfRangeError(
        absl::StrFormat("offset: [%d, %d) goes past the end of %s (%d bytes)", offset,
                        offset + length, id.uri, id.size));
  }
  const uint64_t first = offset / id.chunk_size;
  const uint64_t last = (offset + length - 1) / id.chunk_size;
  if (last - first + 1 > options_.max_read_chunks) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "length: %d bytes cover %d chunks; at most %d chunks (%d bytes) per read", length,
        last - first + 1, options_.max_read_chunks, options_.max_read_chunks * id.chunk_size));
  }
  // Every chunk of the range at once, then the ones after it.
  struct Pending {
    absl::Mutex mu;
    size_t left ABSL_GUARDED_BY(mu) = 0;
    absl::Status error ABSL_GUARDED_BY(mu);
  } pending;
  {
    absl::MutexLock lock(&pending.mu);
    pending.left = last - first + 1;
  }
  for (uint64_t i = first; i <= last; ++i) {
    fetch_pool_->Post([this, file, i, &pending] {
      absl::StatusOr<ChunkSource> r = Ensure(file, i, false);
      absl::MutexLock lock(&pending.mu);
      if (!r.ok() && pending.error.ok()) pending.error = r.status();
      --pending.left;
    });
  }
  Readahead(file, last + 1);
  {
    absl::MutexLock lock(&pending.mu);
    pending.mu.Await(absl::Condition(
        +[](Pending* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu) { return p->left == 0; }, &pending));
    if (!pending.error.ok()) return pending.error;
  }
  std::vector<Key128> keys;
  for (uint64_t i = first; i <= last; ++i) keys.push_back(id.ChunkKey(i));
  absl::StatusOr<ReadGrant> grant = store_->Acquire(ns_, keys, lease_ms);
  for (int attempt = 0; attempt < 3 && grant.ok() && grant->offsets.size() < keys.size();
       ++attempt) {
    // A chunk left DRAM between its fetch and the pin (DRAM under pressure): fetch it again.
    (void)store_->Release(std::vector<uint64_t>{grant->lease_id});
    for (uint64_t i = first + grant->offsets.size(); i <= last; ++i) {
      if (auto r = Ensure(file, i, false); !r.ok()) return r.status();
    }
    grant = store_->Acquire(ns_, keys, lease_ms);
  }
  if (!grant.ok()) return grant.status();
  if (grant->offsets.size() < keys.size()) {
    if (grant->lease_id != 0) (void)store_->Release(std::vector<uint64_t>{grant->lease_id});
    return absl::ResourceExhaustedError(absl::StrFormat(
        "length: chunk %d of %s could not be kept in DRAM long enough to pin it (DRAM too small "
        "for a read of %d chunks?)",
        first + grant->offsets.size(), id.uri, keys.size()));
  }
  ReadAnswer answer;
  answer.lease_id = grant->lease_id;
  const uint64_t end = offset + length;
  for (uint64_t i = first; i <= last; ++i) {
    ReadSpan span;
    span.arena_offset = grant->offsets[i - first];
    const uint64_t chunk_start = i * id.chunk_size;
    span.skip = i == first ? offset - chunk_start : 0;
    span.length = std::min(id.ChunkBytes(i) - span.skip, end - (chunk_start + span.skip));
    answer.spans.push_back(span);
    ChunkSource source = ChunkSource::kNone;
    {
      absl::MutexLock lock(&file->mu);
      std::swap(source, file->fresh[i]);
    }
    (source == ChunkSource::kOrigin ? answer.origin_bytes
     : source == ChunkSource::kPeer ? answer.peer_bytes
                                    : answer.local_bytes) += span.length;
    pins_.Hold(file_id, keys[i - first]);
  }
  local_bytes_.fetch_add(answer.local_bytes, std::memory_order_relaxed);
  return answer;
}

void WeightCache::Prefetch(const std::string& uri,
                           std::function<void(absl::StatusOr<FileIdentity>)> done) {
  request_pool_->Post([this, uri, done = std::move(done)] {
    absl::StatusOr<FileIdentity> f = Open(uri);
    if (f.ok()) {
      std::shared_ptr<FileState> file = Find(f->FileId());
      for (uint64_t j = 0; j < f->chunks(); ++j) {
        fetch_pool_->Post([this, file, j] {
          if (Ensure(file, j, false).ok()) pins_.Hold(file->file_id, file->identity.ChunkKey(j));
        });
      }
    }
    done(f);
  });
}

void WeightCache::Pin(const std::string& uri, bool unpin,
                      std::function<void(absl::StatusOr<FileIdentity>)> done) {
  request_pool_->Post([this, uri, unpin, done = std::move(done)] {
    absl::StatusOr<FileIdentity> f = Open(uri);
    if (f.ok()) pins_.PinFile(f->FileId(), !unpin);
    done(f);
  });
  if (!unpin) Prefetch(uri, [](absl::StatusOr<FileIdentity>) {});
}

void WeightCache::FetchForPeer(const FileIdentity& identity, uint64_t index,
                               std::function<void(absl::StatusOr<ChunkSource>)> done) {
  if (identity.chunk_size != options_.chunk_size) {
    done(absl::FailedPreconditionError(absl::StrFormat(
        "identity.chunk_size: %d differs from this daemon's --weight-chunk-size %d (every daemon "
        "of a pool needs the same)",
        identity.chunk_size, options_.chunk_size)));
    return;
  }
  if (index >= identity.chunks()) {
    done(absl::InvalidArgumentError(absl::StrFormat("index: %d, but %s has %d chunks", index,
                                                    identity.uri, identity.chunks())));
    return;
  }
  std::shared_ptr<FileState> file = Register(identity);
  serve_pool_->Post([this, file, index, done = std::move(done)] {
    absl::StatusOr<ChunkSource> r = Ensure(file, index, /*serving=*/true);
    if (r.ok()) {
      pins_.Hold(file->file_id, file->identity.ChunkKey(index));
      if (cluster_ != nullptr) cluster_->FlushAnnouncements();  // the directory knows first
    }
    done(r);
  });
}

absl::StatusOr<ChunkSource> WeightCache::EnsureForTest(uint64_t file_id, uint64_t index) {
  std::shared_ptr<FileState> file = Find(file_id);
  if (!file) return absl::NotFoundError("file_id: unknown");
  return Ensure(file, index, false);
}

std::vector<WeightFileView> WeightCache::List() {
  std::vector<std::shared_ptr<FileState>> files;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, f] : files_) files.push_back(f);
  }
  std::sort(files.begin(), files.end(),
            [](const auto& a, const auto& b) { return a->identity.uri < b->identity.uri; });
  std::vector<WeightFileView> out;
  for (const auto& f : files) {
    WeightFileView v;
    v.identity = f->identity;
    v.file_id = f->file_id;
    v.chunks = f->identity.chunks();
    v.pinned = pins_.IsPinned(f->file_id);
    v.origin_bytes = f->origin_bytes.load();
    v.peer_bytes = f->peer_bytes.load();
    std::vector<Key128> keys;
    for (uint64_t i = 0; i < v.chunks; ++i) keys.push_back(f->identity.ChunkKey(i));
    for (const Key128& key : keys) {
      auto a = store_->Peek(ns_, std::span<const Key128>(&key, 1));
      if (a.ok() && a->prefix_blocks == 1 && a->tiers[0] == TierId::kDram) ++v.dram_chunks;
    }
    if (disk_) v.nvme_chunks = disk_->ChunkCount(f->file_id);
    if (cluster_ != nullptr) {
      // Holders pool-wide: every chunk's directory is asked, the peers' at once, each call within
      // the peer deadline, so a dead directory costs `ls` one deadline, and its chunks are
      // counted as unknown rather than held by nobody. Chunks are parentless blocks: each is its
      // own segment head.
      struct Answer {
        absl::Notification done;
        std::vector<std::vector<std::string>> lists;
        size_t failed = 0;
      };
      auto answer = std::make_shared<Answer>();
      cluster_->LookupRootHolders(
          ns_, keys, [answer](std::vector<std::vector<std::string>> lists, size_t failed) {
            answer->lists = std::move(lists);
            answer->failed = failed;
            answer->done.Notify();
          });
      answer->done.WaitForNotification();
      for (size_t i = 0; i < answer->lists.size(); ++i) {
        for (const std::string& h : answer->lists[i]) ++v.holders[h];
      }
      v.holders_unknown = answer->failed;
    }
    out.push_back(std::move(v));
  }
  return out;
}

WeightCounters WeightCache::Counters() {
  WeightCounters c;
  c.origin_bytes = origin_bytes_.load();
  c.origin_reads = origin_reads_.load();
  c.origin_errors = origin_errors_.load();
  c.peer_bytes = peer_bytes_.load();
  c.peer_pulls = peer_pulls_.load();
  c.peer_fetch_errors = peer_fetch_errors_.load();
  c.local_bytes = local_bytes_.load();
  c.disk_loads = disk_loads_.load();
  c.disk_writes = disk_writes_.load();
  c.pinned_bytes = pins_.used_bytes();
  c.capacity = pins_.capacity();
  absl::MutexLock lock(&mu_);
  c.files = files_.size();
  return c;
}

}  // namespace kvtier
