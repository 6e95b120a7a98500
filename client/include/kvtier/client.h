// kvtier client library: the C++ API an inference engine uses to save and load KV-cache blocks
// through the local kvtierd.
//
// Self-contained: only the standard library. Bulk bytes move by memcpy into and out of the
// daemon's shared DRAM arena, which the client maps once at Connect; control travels over gRPC on
// the daemon's unix socket. Every call has a deadline (ClientOptions::timeout_ms).
//
// Thread-safety: a Client may be used from many threads at once. WriteLease and ReadLease objects
// belong to one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kvtier {

// Result of every call. Codes have the same numbers as gRPC status codes.
class Status {
 public:
  enum class Code : int {
    kOk = 0,
    kCancelled = 1,
    kUnknown = 2,
    kInvalidArgument = 3,
    kDeadlineExceeded = 4,
    kNotFound = 5,
    kAlreadyExists = 6,
    kPermissionDenied = 7,
    kResourceExhausted = 8,
    kFailedPrecondition = 9,
    kAborted = 10,
    kOutOfRange = 11,
    kUnimplemented = 12,
    kInternal = 13,
    kUnavailable = 14,
    kDataLoss = 15,
  };

  Status() = default;  // OK
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "OK" or "RESOURCE_EXHAUSTED: dram: no free slot ...".
  std::string ToString() const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

// 128-bit name of one block's immutable content.
struct BlockKey {
  uint64_t lo = 0;
  uint64_t hi = 0;
  friend bool operator==(const BlockKey&, const BlockKey&) = default;
};

// kRemote: held by another daemon of the cluster; Load/Acquire pull it into this node's DRAM.
enum class Tier : int { kNone = 0, kHbm = 1, kDram = 2, kNvme = 3, kRemote = 4 };
const char* TierName(Tier tier);  // "none" "hbm" "dram" "nvme" "remote"

// Everything that makes KV bytes compatible (see docs/api.md). Either a shape (layers, heads, ...)
// or layout_tag "opaque" with block_bytes.
struct NamespaceLayout {
  std::string model_id;
  std::string model_revision;
  uint32_t num_layers = 0;
  uint32_t kv_heads = 0;
  uint32_t head_size = 0;
  std::string dtype;  // "bf16" "fp16" "fp32" "fp8_e4m3" "fp8_e5m2" "int8"
  uint32_t tokens_per_block = 0;
  uint32_t tp_rank = 0;
  uint32_t tp_size = 1;
  uint32_t pp_rank = 0;
  uint32_t pp_size = 1;
  std::string layout_tag;  // "flash" "flashinfer" "mla" "contiguous" "opaque"; empty = default
  uint64_t block_bytes = 0;
};

struct Namespace {
  uint64_t id = 0;
  uint64_t block_bytes = 0;
};

// Chained block keys over token ids: key_i = XXH3-128(seed = namespace id, key_{i-1} || tokens of
// block i || extra). Identical to the daemon's hash, so keys agree across processes and nodes.
class PrefixHasher {
 public:
  PrefixHasher(uint64_t namespace_id, uint32_t tokens_per_block)
      : seed_(namespace_id), tokens_per_block_(tokens_per_block) {}

  // One key per full block of `tokens` (a trailing partial block gets none), chained from
  // `parent` (the zero key starts a chain). `extra` is mixed into the first block only (salt,
  // LoRA id).
  std::vector<BlockKey> HashTokens(std::span<const int32_t> tokens, BlockKey parent = {},
                                   std::string_view extra = {}) const;
  // Maps an engine's own block hash (e.g. vLLM's) to a key of this namespace.
  BlockKey FromEngineHash(std::string_view engine_hash) const;

 private:
  uint64_t seed_;
  uint32_t tokens_per_block_;
};

struct ClientOptions {
  // Daemon socket. Empty: $KVTIER_SOCKET, else ./var/kvtier.sock.
  std::string socket_path;
  int timeout_ms = 5000;  // deadline of each call
  uint32_t lease_ms = 0;  // lease on acquired/allocated blocks; 0 = the daemon's default
  bool map_arena = true;  // false: control calls only (Save/Load/leases are unavailable)
  bool prefault = true;   // fault the whole arena mapping in at Connect (steady copy speed)
  // TCP instead of the unix socket: HOST:PORT of a kvtierd --listen. Control calls only (set
  // map_arena = false: the arena is shared over the unix socket alone).
  std::string address;
  // Mutual TLS on `address` (all three or none): PEM paths of this client's certificate, its key,
  // and the CA that signed the daemon's certificate.
  std::string tls_cert;
  std::string tls_key;
  std::string tls_ca;
  std::string tls_server_name;  // name expected in the daemon's certificate ("" = address host)
  // Sent as x-request-id metadata on every call when not empty (the daemon logs it with slow or
  // failed calls); otherwise the daemon makes one up.
  std::string request_id;
};

struct LookupResult {
  size_t prefix_blocks = 0;  // leading keys present
  std::vector<Tier> tiers;   // one per present key
};

struct DropResult {
  uint32_t dropped = 0;
  uint32_t busy = 0;
  uint32_t missing = 0;
};

struct TierStats {
  std::string name;
  uint64_t capacity_bytes = 0;
  uint64_t used_bytes = 0;
  uint64_t blocks = 0;
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t evictions = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  std::string status;           // "ok", or "degraded: <why>" (the tier takes no more writes)
  double read_bytes_per_s = 0;  // over the daemon's last sampling interval (1 s)
  double write_bytes_per_s = 0;
};

struct DaemonStats {
  std::string node_id;
  std::string version;
  uint64_t uptime_ms = 0;
  std::string arena_pages;  // pages behind the DRAM arena: "2 MiB (thp)", "4 KiB", ...
  std::vector<TierStats> tiers;
  uint64_t namespaces = 0;
  uint64_t leases = 0;
  uint64_t lookups = 0;
  uint64_t lookup_keys = 0;
  uint64_t lookup_hit_keys = 0;
  uint64_t rejected_writes = 0;
  // Cluster (zero on a single node).
  uint64_t remote_hit_keys = 0;  // lookup keys found only on other daemons
  uint64_t remote_pulls = 0;     // blocks pulled from other daemons
  uint64_t remote_pull_bytes = 0;
  uint64_t remote_pull_failures = 0;  // blocks that were to be pulled and became misses
};

struct ClusterMemberInfo {
  std::string id;
  std::string address;    // its peer service host:port
  uint32_t slot = 0;      // placement ordinal
  std::string state;      // "self" "alive" "unreachable" "unknown"
  uint64_t bytes_in = 0;  // pulled from it
  uint64_t pulls = 0;
  uint64_t calls = 0;
  uint64_t errors = 0;
  double latency_ms_p50 = 0;
  double latency_ms_p99 = 0;
  std::string last_error;
};

struct ClusterInfo {
  bool enabled = false;  // false: a single node
  std::string self_id;
  std::string membership;         // "static", "etcd <endpoint>" or "none"
  std::string membership_status;  // "ok" or why not
  uint64_t roster_version = 0;
  std::string transport;  // how bytes move between daemons
  uint64_t directory_entries = 0;
  uint64_t stale_roster_rejects = 0;
  std::vector<ClusterMemberInfo> members;
};

struct NamespaceEntry {
  Namespace ns;
  NamespaceLayout layout;
  uint64_t blocks = 0;
  uint64_t bytes = 0;
};

struct BlockEntry {
  uint64_t namespace_id = 0;
  BlockKey key;
  Tier tier = Tier::kNone;
  uint64_t bytes = 0;
  std::string state;  // "writing" "ready" "evicting"
  uint32_t readers = 0;
  uint64_t hits = 0;
  uint64_t age_ms = 0;
};

// Where a block of a read lease lies in the daemon's HBM tier: (segment, offset) in its device
// pool. segment == kNoHbmSegment: not answered from HBM.
inline constexpr uint32_t kNoHbmSegment = 0xffffffffu;
struct HbmBlockRef {
  uint32_t segment = kNoHbmSegment;
  uint64_t offset = 0;
  bool valid() const { return segment != kNoHbmSegment; }
};

// The daemon's HBM tier as engines on its node see it (Client::HbmTier).
struct HbmTierInfo {
  bool present = false;
  std::string socket_path;  // the segment hand-out socket (<socket>.hbm)
  std::string backend;      // "cuda" (CUDA IPC handles) or "cpu" (memfd segments)
  int device = -1;          // CUDA device of the pool
  uint32_t segments = 0;
  uint64_t segment_bytes = 0;
  uint64_t generation = 0;  // of the daemon that answered (its arena generation)
};

// Zero-copy write: arena slots reserved for keys not yet cached. Fill them, then Commit().
// Destroying an uncommitted lease aborts it (the slots are freed).
class WriteLease {
 public:
  virtual ~WriteLease() = default;
  virtual size_t size() const = 0;  // number of keys asked for
  // Slot for keys[i], or an empty span when that key is already cached (nothing to write).
  virtual std::span<std::byte> block(size_t i) = 0;
  virtual Status Commit() = 0;
  virtual Status Abort() = 0;
};

// Zero-copy read: the leading present blocks, pinned until Release() or destruction (or the lease
// deadline, when the process dies).
class ReadLease {
 public:
  virtual ~ReadLease() = default;
  virtual size_t size() const = 0;  // blocks acquired (the present prefix)
  // Empty for a block answered from HBM only (see hbm(i)).
  virtual std::span<const std::byte> block(size_t i) const = 0;
  // Where block i lies in the HBM tier, when the lease came from AcquireReadTiered and the daemon
  // answered it there; invalid otherwise.
  virtual HbmBlockRef hbm(size_t /*i*/) const { return {}; }
  virtual Status Release() = 0;
};

class Client {
 public:
  // Connects, reads the arena's description and (map_arena) maps it. Fails with UNAVAILABLE and a
  // one-line message when no daemon answers on the socket.
  static Status Connect(const ClientOptions& options, std::unique_ptr<Client>* out);
  virtual ~Client() = default;

  virtual Status RegisterNamespace(const NamespaceLayout& layout, Namespace* out) = 0;
  virtual Status Lookup(uint64_t namespace_id, std::span<const BlockKey> keys,
                        LookupResult* out) = 0;
  // Starts moving the leading present keys that sit on NVMe into DRAM, so a Load soon after is a
  // DRAM hit; returns at once. *present (optional) = leading keys present in some tier.
  virtual Status Prefetch(uint64_t namespace_id, std::span<const BlockKey> keys,
                          size_t* present = nullptr) = 0;

  // Copies blocks[i] (ns.block_bytes each) into the cache under keys[i]. Keys already cached are
  // skipped. `parent` is the key before keys[0] in its chain (zero when keys[0] starts it).
  // *saved (optional) = number of blocks written.
  virtual Status Save(const Namespace& ns, std::span<const BlockKey> keys,
                      std::span<const void* const> blocks, size_t* saved = nullptr,
                      BlockKey parent = {}) = 0;
  // Copies the longest cached prefix of keys into blocks[0..*loaded).
  virtual Status Load(const Namespace& ns, std::span<const BlockKey> keys,
                      std::span<void* const> blocks, size_t* loaded) = 0;

  virtual Status BeginWrite(const Namespace& ns, std::span<const BlockKey> keys, BlockKey parent,
                            std::unique_ptr<WriteLease>* out) = 0;
  virtual Status AcquireRead(const Namespace& ns, std::span<const BlockKey> keys,
                             std::unique_ptr<ReadLease>* out) = 0;
  // AcquireRead for a reader that can open the HBM tier's segments (GpuKv): blocks held in HBM
  // are answered there (ReadLease::hbm) and get no DRAM copy.
  virtual Status AcquireReadTiered(const Namespace& ns, std::span<const BlockKey> keys,
                                   std::unique_ptr<ReadLease>* out) {
    return AcquireRead(ns, keys, out);
  }
  // The daemon's HBM tier as of the last arena check (no call to the daemon).
  virtual Status HbmTier(HbmTierInfo* out) {
    *out = HbmTierInfo{};
    return Status();
  }

  virtual Status Drop(uint64_t namespace_id, std::span<const BlockKey> keys, DropResult* out) = 0;
  virtual Status DropAll(uint64_t namespace_id, DropResult* out) = 0;

  virtual Status Stats(DaemonStats* out) = 0;
  virtual Status ListNamespaces(std::vector<NamespaceEntry>* out) = 0;
  // limit 0 = the daemon's default (1000). *truncated (optional) is set when more exist.
  // `tier` kNone lists every tier.
  virtual Status ListBlocks(uint64_t namespace_id, uint32_t limit, std::vector<BlockEntry>* out,
                            bool* truncated = nullptr, Tier tier = Tier::kNone) = 0;

  // The cluster as the daemon sees it (members, their state, roster version).
  virtual Status Cluster(ClusterInfo* out) = 0;

  // The socket this client talks to (after the environment and default rules).
  virtual const std::string& socket_path() const = 0;
};

// The socket path a client uses for `explicit_path`: itself if not empty, else $KVTIER_SOCKET,
// else "./var/kvtier.sock".
std::string ResolveSocketPath(const std::string& explicit_path);

}  // namespace kvtier
