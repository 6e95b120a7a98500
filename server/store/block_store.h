// BlockStore: the DRAM tier of one node. Owns the index, the slot allocator, the eviction policy
// and the leases, and implements the client operations on them (proto-free; the service layer
// translates). It hands out arena offsets and never touches block bytes itself: clients copy into
// and out of the shared arena.
//
// Thread-safe. Lock order: space_mu_ -> one BlockIndex shard at a time -> promo_mu_ or
// hbm_queue_mu_; LeaseTable and NamespaceRegistry locks are leaves. Nothing is submitted to the
// NVMe engine while any of these is held (its completions take them). Reads (Lookup, Acquire, read
// Release) take shard locks only; writes, drops and evictions also take space_mu_, once per batch.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/block_key.h"
#include "server/dram/slab_allocator.h"
#include "server/hbm/device_pool.h"
#include "server/index/block_index.h"
#include "server/index/lease_table.h"
#include "server/index/namespace_registry.h"
#include "server/nvme/nvme_store.h"
#include "server/policy/eviction_policy.h"

namespace kvtier {

struct StoreOptions {
  uint32_t default_lease_ms = 30'000;
  uint32_t max_lease_ms = 600'000;
  uint32_t max_batch_keys = 4096;
  // With an NVMe tier: above this fraction of DRAM in use, the mover writes the coldest
  // DRAM-only blocks down, so eviction finds clean copies to drop.
  double demote_watermark = 0.8;
  // Which cold blocks are worth an NVMe write: every one, or only those read at least once or
  // heading a chain (resident children): the rest are mostly one-hit tails.
  enum class Admit { kAll, kReused };
  Admit nvme_admit = Admit::kReused;
  // With an HBM tier: a block is queued for promotion into HBM when a read brings its hit count
  // to this (2: read again after its first use, the sign of a shared prefix). 0: never promote.
  uint32_t hbm_promote_hits = 2;
  // Milliseconds on a monotonic clock; tests inject their own to drive lease expiry.
  std::function<int64_t()> now_ms;
};

// Offset answered for a key that needs no write (already present or being written).
inline constexpr uint64_t kExistsOffset = ~0ULL;

// kRemote: held by another daemon of the cluster (answered by the cluster layer, never by the
// store itself).
enum class TierId : int { kNone = 0, kHbm = 1, kDram = 2, kNvme = 3, kRemote = 4 };

// Told when blocks appear in and leave this node's index (the cluster layer announces them to
// their directories). Called with store locks held: implementations only queue and return.
class BlockListener {
 public:
  virtual ~BlockListener() = default;
  // A block became readable (committed, or recovered from NVMe). `parent` is the key before it in
  // its chain (zero: the chain's start, or unknown).
  virtual void OnBlockReady(const BlockId& id, const Key128& parent) = 0;
  // A readable block left the node (evicted from every tier, or dropped).
  virtual void OnBlockGone(const BlockId& id) = 0;
};

struct WriteGrant {
  uint64_t lease_id = 0;  // 0 when every key was present
  std::vector<uint64_t> offsets;
  uint64_t block_bytes = 0;
  uint32_t lease_ms = 0;
};

// Where a block lies in the HBM tier's device pool.
inline constexpr uint32_t kNoHbmSegment = ~0u;
struct HbmRef {
  uint32_t segment = kNoHbmSegment;  // kNoHbmSegment: not served from HBM
  uint64_t offset = 0;               // in the segment
};

struct ReadGrant {
  uint64_t lease_id = 0;  // 0 when nothing was acquired
  // The leading present prefix: DRAM offsets; kExistsOffset for a block served from HBM only.
  std::vector<uint64_t> offsets;
  // Only when the acquire accepted HBM: one per acquired key (segment kNoHbmSegment: DRAM).
  std::vector<HbmRef> hbm;
  uint64_t block_bytes = 0;
  uint32_t lease_ms = 0;
};

struct LookupAnswer {
  uint32_t prefix_blocks = 0;
  std::vector<TierId> tiers;
};

struct DropCounts {
  uint32_t dropped = 0;
  uint32_t busy = 0;
  uint32_t missing = 0;
};

struct TierCounters {
  std::string name;
  uint64_t capacity_bytes = 0;
  uint64_t used_bytes = 0;
  uint64_t blocks = 0;
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t evictions = 0;
  uint64_t bytes_in = 0;
  uint64_t bytes_out = 0;
  std::string status = "ok";  // or "degraded: <why>"
};

struct StoreStats {
  std::vector<TierCounters> tiers;
  uint64_t namespaces = 0;
  uint64_t leases = 0;
  uint64_t lookups = 0;
  uint64_t lookup_keys = 0;
  uint64_t lookup_hit_keys = 0;
  uint64_t rejected_writes = 0;
  uint64_t expired_leases = 0;
};

struct BlockSnapshot {
  BlockId id;
  TierId tier = TierId::kDram;
  uint64_t bytes = 0;
  BlockState state = BlockState::kReady;
  uint32_t readers = 0;
  uint64_t hits = 0;
  uint64_t age_ms = 0;
};

class BlockStore {
 public:
  BlockStore(uint64_t dram_capacity, StoreOptions options);

  absl::StatusOr<NamespaceRecord*> RegisterNamespace(const NamespaceLayout& layout, bool* created);
  std::vector<NamespaceSnapshot> ListNamespaces() { return registry_.List(); }
  // Access checks (--allow-models): the model id of namespace `ns` (NOT_FOUND naming
  // namespace_id), and the namespace of an open lease.
  absl::StatusOr<std::string> NamespaceModel(uint64_t ns) {
    auto record = registry_.Find(ns);
    if (!record.ok()) return record.status();
    return (*record)->layout.model_id;
  }
  std::optional<uint64_t> LeaseNamespace(uint64_t lease_id) {
    std::optional<Lease> lease = leases_.Get(lease_id);
    if (!lease) return std::nullopt;
    return lease->ns;
  }

  // Longest present prefix of `keys` (one chain, in order).
  absl::StatusOr<LookupAnswer> Lookup(uint64_t ns, std::span<const Key128> keys);
  // The same answer without counting it in the lookup statistics.
  absl::StatusOr<LookupAnswer> Peek(uint64_t ns, std::span<const Key128> keys);

  // Reserves a slot for each key not present; all or nothing (RESOURCE_EXHAUSTED when the space
  // cannot be found, even after eviction). `parent` is the key before keys[0] in its chain.
  absl::StatusOr<WriteGrant> Allocate(uint64_t ns, std::span<const Key128> keys,
                                      std::optional<Key128> parent, uint32_t lease_ms);
  // Makes the named keys of a write lease (all of them when `keys` is empty) readable. Checks
  // every key before changing any.
  absl::StatusOr<uint32_t> Commit(uint64_t lease_id, std::span<const Key128> keys,
                                  std::span<const uint64_t> checksums);
  // Pins the leading present keys under a read lease. Blocks only on NVMe are first read into
  // DRAM (one IO per block, shared by concurrent readers); `done` runs once they are there, on
  // the IO thread or the caller's. A block whose read fails ends the prefix (a miss).
  // `accept_hbm`: the reader can read the HBM tier's segments (an engine on this node), so
  // blocks in HBM are answered there (ReadGrant::hbm) and need no DRAM copy. Without it, a block
  // held only in HBM is first copied down into a DRAM slot, like a promotion from NVMe.
  using AcquireDone = std::function<void(absl::StatusOr<ReadGrant>)>;
  void AcquireAsync(uint64_t ns, std::span<const Key128> keys, uint32_t lease_ms, AcquireDone done,
                    bool accept_hbm = false);
  // AcquireAsync, waiting for the answer.
  absl::StatusOr<ReadGrant> Acquire(uint64_t ns, std::span<const Key128> keys, uint32_t lease_ms,
                                    bool accept_hbm = false);
  // Ends leases: a read lease unpins, an uncommitted write lease frees its slots. Unknown ids are
  // NOT_FOUND (the known ones are still released).
  absl::StatusOr<uint32_t> Release(std::span<const uint64_t> lease_ids);
  absl::StatusOr<DropCounts> Drop(uint64_t ns, std::span<const Key128> keys, bool all);

  StoreStats Stats();
  // Up to `limit` blocks of namespace `ns` (0 = every namespace) in `tier` (kNone = any).
  std::vector<BlockSnapshot> ListBlocks(uint64_t ns, size_t limit, bool* truncated,
                                        TierId tier = TierId::kNone);
  // Starts reading the leading present keys that are only on NVMe into DRAM and returns at once
  // with how many leading keys are present. Nothing stays pinned.
  absl::StatusOr<uint32_t> Prefetch(uint64_t ns, std::span<const Key128> keys);

  // Ends every lease whose deadline has passed; returns how many. Run by the lease reaper.
  size_t ExpireLeases();

  // Adds the NVMe tier under DRAM. `arena` is the DRAM arena's base (the IO buffers). Call
  // before serving; the store does not own `nvme`.
  void AttachNvme(NvmeStore* nvme, std::byte* arena);
  // Takes in the blocks found on the device at start-up (warm restart).
  void AdoptRecovered(const std::vector<RecoveredBlock>& blocks);
  // Starts NVMe writes of up to `max_blocks` of the coldest DRAM-only blocks when DRAM use is
  // over the watermark; returns how many it started. Run by the daemon's mover loop.
  size_t DemoteSome(size_t max_blocks);

  // Adds the HBM tier (block_store_hbm.cc): `pool` is cut into slots like the DRAM arena (one
  // SlabAllocator per segment); `arena` is the DRAM arena's base. Call before serving; not owned.
  void AttachHbm(DevicePool* pool, std::byte* arena);
  // Copies up to `max_blocks` queued hot blocks from DRAM into HBM, making room by dropping the
  // coldest clean HBM copies and copying HBM-only blocks down to DRAM (demotion). Returns how
  // many it promoted. Run by the daemon's HBM mover loop.
  size_t PromoteSome(size_t max_blocks);
  // Blocks waiting for PromoteSome.
  size_t HbmQueued();

  // Set once before serving; not owned.
  void SetListener(BlockListener* listener) { listener_.store(listener); }
  // The XXH3-64 recorded for a ready block (0: none recorded yet), and recording one.
  std::optional<uint64_t> Checksum(const BlockId& id);
  void SetChecksum(const BlockId& id, uint64_t checksum);

  int64_t NowMs() const { return options_.now_ms(); }
  const StoreOptions& options() const { return options_; }

 private:
  struct AcquireJob;
  absl::Status CheckBatch(size_t n, const char* field) const;
  absl::StatusOr<uint32_t> LeaseMs(uint32_t asked) const;

  // Space management; all under space_mu_.
  std::optional<uint64_t> AllocateSlotLocked(uint64_t slot_bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(space_mu_);
  // Evicts one block of the size class. Clean blocks (also on NVMe) only lose their DRAM copy;
  // dirty ones are dropped whole, and only when `allow_dirty`.
  bool EvictFromClassLocked(uint64_t slot_bytes, bool allow_dirty)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(space_mu_);
  // Gives a DRAM slot back (its entry no longer names it).
  void FreeSlotLocked(uint64_t offset, uint64_t slot_bytes, bool was_ready)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(space_mu_);
  // After an entry left the index: free its slot, unlink it from its parent, count it.
  void ForgetLocked(const BlockId& id, const BlockEntry& gone)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(space_mu_);
  // The same for an entry with no DRAM slot.
  void ForgetNvmeOnly(const BlockId& id, const BlockEntry& gone);
  // Removes a still-uncommitted block of `lease_id`; false if it is not one.
  bool DiscardWritingLocked(const BlockId& id, uint64_t lease_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(space_mu_);
  EvictionPolicy& PolicyLocked(uint64_t slot_bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(space_mu_);

  // Chain links: a block with resident children is never evicted before them.
  bool LinkToParent(const BlockId& parent);
  void UnlinkFromParent(const BlockId& parent);

  void EndLease(const Lease& lease);
  // NVMe tier plumbing (block_store_tiers.cc).
  void OnNvmeEvicted(uint32_t region, const std::vector<NvmeKey>& keys);
  void StartPromotion(const BlockId& id, uint64_t bytes, uint64_t checksum, NvmeLocation at);
  // `from_hbm`: the copy came down from HBM (counted there), not up from NVMe.
  void FinishPromotion(const BlockId& id, uint64_t slot, uint64_t slot_bytes, absl::Status status,
                       bool from_hbm = false);
  void FinishAcquire(const std::shared_ptr<AcquireJob>& job);
  bool NvmeWritable();
  // HBM tier plumbing (block_store_hbm.cc).
  // A free HBM slot (pool-wide offset), making room as needed: clean HBM copies are dropped at
  // once; blocks held only in HBM are marked for demotion (state kPromoting, pinned) and named in
  // *demote, and then nullopt is answered: the caller copies them down and asks again.
  std::optional<uint64_t> AllocateHbmSlotLocked(uint64_t slot_bytes, std::vector<BlockId>* demote)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(space_mu_);
  bool EvictHbmFromClassLocked(uint64_t slot_bytes, std::vector<BlockId>* demote)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(space_mu_);
  void FreeHbmSlotLocked(uint64_t hbm_offset, uint64_t slot_bytes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(space_mu_);
  EvictionPolicy& HbmPolicyLocked(uint64_t slot_bytes) ABSL_EXCLUSIVE_LOCKS_REQUIRED(space_mu_);
  // Copies a block held in HBM into a new DRAM slot; finishes like a promotion (its waiters run).
  // The block is pinned by the caller (readers).
  void CopyDownFromHbm(const BlockId& id, uint64_t bytes, uint64_t hbm_offset);
  // Demotes a block marked by AllocateHbmSlotLocked: copy down, then its HBM slot is freed.
  void DemoteHbmBlock(const BlockId& id);
  // Queues `e` for promotion when it is hot enough (called under its shard lock).
  void MaybeQueueHbm(const BlockId& id, BlockEntry& e);
  HbmRef HbmRefOf(uint64_t hbm_offset) const;

  StoreOptions options_;
  NamespaceRegistry registry_;
  BlockIndex index_;
  LeaseTable leases_;

  absl::Mutex space_mu_;
  SlabAllocator allocator_ ABSL_GUARDED_BY(space_mu_);
  absl::flat_hash_map<uint64_t, std::unique_ptr<EvictionPolicy>> policies_
      ABSL_GUARDED_BY(space_mu_);  // per slot size
  absl::flat_hash_map<uint64_t, BlockId> slot_owner_ ABSL_GUARDED_BY(space_mu_);
  // The HBM tier's space: one allocator per pool segment, a SIEVE per size class, slot owners
  // by pool-wide offset.
  std::vector<SlabAllocator> hbm_allocators_ ABSL_GUARDED_BY(space_mu_);
  absl::flat_hash_map<uint64_t, std::unique_ptr<EvictionPolicy>> hbm_policies_
      ABSL_GUARDED_BY(space_mu_);
  absl::flat_hash_map<uint64_t, BlockId> hbm_slot_owner_ ABSL_GUARDED_BY(space_mu_);

  std::atomic<BlockListener*> listener_{nullptr};
  NvmeStore* nvme_ = nullptr;  // null: no NVMe tier
  std::byte* arena_ = nullptr;
  // Promotions in flight: who waits for each (ok, slot offset). Lock order: shard -> promo_mu_.
  absl::Mutex promo_mu_;
  absl::flat_hash_map<BlockId, std::vector<std::function<void(bool, uint64_t)>>> promo_waiters_
      ABSL_GUARDED_BY(promo_mu_);

  DevicePool* hbm_ = nullptr;  // null: no HBM tier
  // Blocks waiting to be promoted into HBM. A leaf lock (taken under a shard lock).
  absl::Mutex hbm_queue_mu_;
  std::vector<BlockId> hbm_queue_ ABSL_GUARDED_BY(hbm_queue_mu_);

  std::atomic<uint64_t> dram_blocks_{0}, nvme_blocks_{0}, hbm_blocks_{0};
  std::atomic<uint64_t> hbm_hits_{0}, hbm_promotions_{0}, hbm_demotions_{0}, hbm_evictions_{0};
  std::atomic<uint64_t> hbm_copy_downs_{0}, hbm_failures_{0}, hbm_bytes_in_{0}, hbm_bytes_out_{0};
  std::atomic<uint64_t> promotions_{0}, promote_failures_{0}, demotions_{0}, nvme_lost_{0};
  std::atomic<uint64_t> hits_{0}, misses_{0}, evictions_{0}, bytes_in_{0}, bytes_out_{0};
  std::atomic<uint64_t> lookups_{0}, lookup_keys_{0}, lookup_hit_keys_{0};
  std::atomic<uint64_t> rejected_writes_{0}, expired_leases_{0};
};

}  // namespace kvtier
