// BlockStore: space management (allocation, eviction, removal) and the admin operations.
#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "server/policy/sieve_policy.h"
#include "server/store/block_store.h"

namespace kvtier {

EvictionPolicy& BlockStore::PolicyLocked(uint64_t slot_bytes) {
  std::unique_ptr<EvictionPolicy>& policy = policies_[slot_bytes];
  if (!policy) policy = std::make_unique<SievePolicy>();
  return *policy;
}

std::optional<uint64_t> BlockStore::AllocateSlotLocked(uint64_t slot_bytes) {
  // Each round either returns a slot or evicts one block, so this ends. Clean blocks (copies of
  // NVMe records) go first; a dirty block is dropped only when no clean one can go.
  for (;;) {
    if (std::optional<uint64_t> offset = allocator_.Allocate(slot_bytes)) return offset;
    bool evicted = false;
    for (bool allow_dirty : {false, true}) {
      if (!allow_dirty && nvme_ == nullptr && hbm_ == nullptr) continue;
      if (EvictFromClassLocked(slot_bytes, allow_dirty)) {
        evicted = true;
        break;
      }
      // Nothing of this size can go: free whole slabs held by other sizes.
      for (auto& [other, policy] : policies_) {
        if (other != slot_bytes && EvictFromClassLocked(other, allow_dirty)) {
          evicted = true;
          break;
        }
      }
      if (evicted) break;
    }
    if (!evicted) return std::nullopt;
  }
}

bool BlockStore::EvictFromClassLocked(uint64_t slot_bytes, bool allow_dirty) {
  auto pit = policies_.find(slot_bytes);
  if (pit == policies_.end() || pit->second->size() == 0) return false;
  BlockId victim;
  BlockEntry gone;
  bool whole = false;  // the entry left the index (no NVMe copy to fall back on)
  std::optional<uint64_t> slot = pit->second->EvictOne([&](uint64_t candidate) {
    // The judge runs inside EvictOne, still under space_mu_; lambdas need saying so.
    space_mu_.AssertHeld();
    victim = slot_owner_.at(candidate);
    return index_.WithShard(victim, [&](BlockIndex::Map& map) {
      auto it = map.find(victim);
      if (it == map.end()) return Verdict::kPinned;
      BlockEntry& e = it->second;
      if (e.state != BlockState::kReady || e.readers > 0 || e.io_pins > 0) return Verdict::kPinned;
      // Clean: another tier (NVMe, HBM) holds the same bytes, so only the DRAM copy goes.
      const bool clean = e.on_nvme || e.in_hbm;
      if (!clean && !allow_dirty) return Verdict::kPinned;
      // Leaf first as a tie-breaker, not a pin: a dirty block with resident children is passed
      // over once (its chain's tail goes before it), then judged like any other until a read
      // re-arms it. Pinning it for as long as it had children made the hand skip every head,
      // lap the queue once per ~500 evictions and take one tail block per chain per lap whatever
      // the chain's age: dead chains stayed, young ones were trimmed (trace hit ratio 0.228 vs
      // 0.290 now, LRU 0.278). A clean block's head stays reachable on NVMe: no rule needed.
      if (!clean && e.children > 0 && !e.spared) {
        e.spared = true;
        return Verdict::kSecondChance;
      }
      if (e.visited) {
        e.visited = false;
        return Verdict::kSecondChance;
      }
      gone = e;
      if (clean) {
        e.in_dram = false;  // the NVMe record or the HBM copy stays the block's home
      } else {
        map.erase(it);
        whole = true;
      }
      return Verdict::kEvict;
    });
  });
  if (!slot) return false;
  if (whole) {
    ForgetLocked(victim, gone);
  } else {
    FreeSlotLocked(gone.offset, gone.slot_bytes, /*was_ready=*/true);
  }
  evictions_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void BlockStore::FreeSlotLocked(uint64_t offset, uint64_t slot_bytes, bool was_ready) {
  slot_owner_.erase(offset);
  allocator_.Free(offset, slot_bytes);
  if (was_ready) dram_blocks_.fetch_sub(1, std::memory_order_relaxed);
}

void BlockStore::ForgetLocked(const BlockId& id, const BlockEntry& gone) {
  if (gone.in_dram) {
    FreeSlotLocked(gone.offset, gone.slot_bytes, gone.state == BlockState::kReady);
  }
  if (gone.in_hbm) {
    HbmPolicyLocked(gone.hbm_slot_bytes).Remove(gone.hbm_offset);
    FreeHbmSlotLocked(gone.hbm_offset, gone.hbm_slot_bytes);
  }
  ForgetNvmeOnly(id, gone);
}

void BlockStore::ForgetNvmeOnly(const BlockId& id, const BlockEntry& gone) {
  if (gone.linked_to_parent) UnlinkFromParent({id.ns, gone.parent});
  if (gone.on_nvme) nvme_blocks_.fetch_sub(1, std::memory_order_relaxed);
  if (gone.state != BlockState::kWriting) {
    if (BlockListener* l = listener_.load()) l->OnBlockGone(id);
    if (auto ns = registry_.Find(id.ns); ns.ok()) {
      (*ns)->blocks.fetch_sub(1, std::memory_order_relaxed);
    }
  }
}

bool BlockStore::DiscardWritingLocked(const BlockId& id, uint64_t lease_id) {
  std::optional<BlockEntry> gone =
      index_.WithShard(id, [&](BlockIndex::Map& map) -> std::optional<BlockEntry> {
        auto it = map.find(id);
        if (it == map.end() || it->second.state != BlockState::kWriting ||
            it->second.write_lease != lease_id) {
          return std::nullopt;
        }
        BlockEntry e = it->second;
        map.erase(it);
        return e;
      });
  if (!gone) return false;
  ForgetLocked(id, *gone);
  return true;
}

bool BlockStore::LinkToParent(const BlockId& parent) {
  return index_.WithShard(parent, [&](BlockIndex::Map& map) {
    auto it = map.find(parent);
    if (it == map.end()) return false;
    ++it->second.children;
    return true;
  });
}

void BlockStore::UnlinkFromParent(const BlockId& parent) {
  index_.WithShard(parent, [&](BlockIndex::Map& map) {
    auto it = map.find(parent);
    // The parent may have been dropped (and even saved again) since: never go below zero.
    if (it != map.end() && it->second.children > 0) --it->second.children;
  });
}

absl::StatusOr<DropCounts> BlockStore::Drop(uint64_t ns, std::span<const Key128> keys, bool all) {
  if (all && !keys.empty()) {
    return absl::InvalidArgumentError("keys: must be empty when 'all' is set");
  }
  if (!all && keys.empty()) {
    return absl::InvalidArgumentError("keys: empty; name the keys to drop or set 'all'");
  }
  RETURN_IF_ERROR(CheckBatch(keys.size(), "keys"));
  RETURN_IF_ERROR(registry_.Find(ns).status());
  std::vector<Key128> targets(keys.begin(), keys.end());
  if (all) {
    index_.ForEach([&](const BlockId& id, BlockEntry&) {
      if (id.ns == ns) targets.push_back(id.key);
      return true;
    });
  }
  DropCounts counts;
  absl::MutexLock space(&space_mu_);
  for (const Key128& key : targets) {
    const BlockId id{ns, key};
    enum { kMissing, kBusy, kDropped } outcome;
    BlockEntry gone;
    index_.WithShard(id, [&](BlockIndex::Map& map) {
      auto it = map.find(id);
      if (it == map.end()) {
        outcome = kMissing;
      } else if (it->second.state != BlockState::kReady || it->second.readers > 0 ||
                 it->second.io_pins > 0) {
        outcome = kBusy;
      } else {
        gone = it->second;
        map.erase(it);
        outcome = kDropped;
      }
    });
    if (outcome == kMissing) {
      ++counts.missing;
    } else if (outcome == kBusy) {
      ++counts.busy;
    } else {
      if (gone.in_dram) PolicyLocked(gone.slot_bytes).Remove(gone.offset);
      ForgetLocked(id, gone);
      ++counts.dropped;
    }
  }
  return counts;
}

StoreStats BlockStore::Stats() {
  StoreStats s;
  TierCounters dram;
  dram.name = "dram";
  {
    absl::MutexLock space(&space_mu_);
    dram.capacity_bytes = allocator_.capacity();
    dram.used_bytes = allocator_.used_bytes();
  }
  dram.blocks = dram_blocks_.load(std::memory_order_relaxed);
  dram.hits = hits_.load(std::memory_order_relaxed);
  dram.misses = misses_.load(std::memory_order_relaxed);
  dram.evictions = evictions_.load(std::memory_order_relaxed);
  dram.bytes_in = bytes_in_.load(std::memory_order_relaxed);
  dram.bytes_out = bytes_out_.load(std::memory_order_relaxed);
  s.tiers.push_back(dram);
  if (nvme_ != nullptr) {
    NvmeCounters n = nvme_->Counters();
    TierCounters t;
    t.name = "nvme";
    t.capacity_bytes = n.capacity_bytes;
    t.used_bytes = n.used_bytes;
    t.blocks = nvme_blocks_.load(std::memory_order_relaxed);
    t.hits = promotions_.load(std::memory_order_relaxed);
    t.misses = promote_failures_.load(std::memory_order_relaxed);
    t.evictions = nvme_lost_.load(std::memory_order_relaxed);
    t.bytes_in = n.bytes_in;
    t.bytes_out = n.bytes_out;
    if (n.degraded) t.status = "degraded: " + n.degraded_reason;
    s.tiers.push_back(t);
  }
  if (hbm_ != nullptr) {
    TierCounters t;
    t.name = "hbm";
    {
      absl::MutexLock space(&space_mu_);
      for (const SlabAllocator& a : hbm_allocators_) {
        t.capacity_bytes += a.capacity();
        t.used_bytes += a.used_bytes();
      }
    }
    t.blocks = hbm_blocks_.load(std::memory_order_relaxed);
    t.hits = hbm_hits_.load(std::memory_order_relaxed);
    t.misses = hbm_failures_.load(std::memory_order_relaxed);
    t.evictions = hbm_evictions_.load(std::memory_order_relaxed);
    t.bytes_in = hbm_bytes_in_.load(std::memory_order_relaxed);
    t.bytes_out = hbm_bytes_out_.load(std::memory_order_relaxed);
    s.tiers.push_back(t);
  }
  s.namespaces = registry_.size();
  s.leases = leases_.size();
  s.lookups = lookups_.load(std::memory_order_relaxed);
  s.lookup_keys = lookup_keys_.load(std::memory_order_relaxed);
  s.lookup_hit_keys = lookup_hit_keys_.load(std::memory_order_relaxed);
  s.rejected_writes = rejected_writes_.load(std::memory_order_relaxed);
  s.expired_leases = expired_leases_.load(std::memory_order_relaxed);
  return s;
}

std::vector<BlockSnapshot> BlockStore::ListBlocks(uint64_t ns, size_t limit, bool* truncated,
                                                  TierId tier_filter) {
  std::vector<BlockSnapshot> out;
  *truncated = false;
  const int64_t now = NowMs();
  index_.ForEach([&](const BlockId& id, BlockEntry& e) {
    if (ns != 0 && id.ns != ns) return true;
    if (out.size() == limit) {
      *truncated = true;
      return false;
    }
    const TierId tier = e.state == BlockState::kReady && e.in_hbm        ? TierId::kHbm
                        : e.state != BlockState::kPromoting && e.in_dram ? TierId::kDram
                        : e.on_nvme                                      ? TierId::kNvme
                                                                         : TierId::kHbm;
    if (tier_filter != TierId::kNone && tier != tier_filter) return true;
    out.push_back({id, tier, e.bytes, e.state, e.readers, e.hits,
                   static_cast<uint64_t>(std::max<int64_t>(0, now - e.created_ms))});
    return true;
  });
  return out;
}

}  // namespace kvtier
