// BlockStore: the HBM tier. A device pool (server/hbm/device_pool.h) above DRAM, holding copies
// of hot blocks that engines on this node read device-to-device.
//
// - Promotion: a read that brings a block's hits to StoreOptions::hbm_promote_hits queues it;
//   the mover (PromoteSome) copies it from its DRAM slot into an HBM slot, then publishes the
//   HBM copy. The DRAM slot is pinned (io_pins) for the copy.
// - A DRAM copy of a block that is also in HBM is clean: DRAM eviction drops it first, and the
//   block lives on in HBM only (the tier adds capacity, it is not only a mirror).
// - Room in HBM: SIEVE per size class (hbm_visited is set by every read of the HBM copy). A
//   clean victim (also in DRAM or on NVMe) only loses its HBM copy; a victim held only in HBM is
//   demoted: copied down into a new DRAM slot, then its HBM slot is freed. Blocks being read
//   (readers) or copied are never victims.
// - A reader that cannot read HBM (the CLI, a host-memory Load, a peer's pull) gets a block held
//   only in HBM copied down into DRAM first, like a promotion from NVMe.
#include <algorithm>

#include "absl/strings/str_format.h"
#include "server/policy/sieve_policy.h"
#include "server/store/block_store.h"
#include "spdlog/spdlog.h"

namespace kvtier {
namespace {

constexpr size_t kMaxHbmQueue = 4096;

}  // namespace

void BlockStore::AttachHbm(DevicePool* pool, std::byte* arena) {
  absl::MutexLock space(&space_mu_);
  hbm_ = pool;
  arena_ = arena;
  hbm_allocators_.clear();
  for (uint32_t i = 0; i < pool->num_segments(); ++i) {
    hbm_allocators_.emplace_back(pool->segment_bytes());
  }
}

HbmRef BlockStore::HbmRefOf(uint64_t hbm_offset) const {
  const uint64_t segment = hbm_->segment_bytes();
  return HbmRef{static_cast<uint32_t>(hbm_offset / segment), hbm_offset % segment};
}

EvictionPolicy& BlockStore::HbmPolicyLocked(uint64_t slot_bytes) {
  std::unique_ptr<EvictionPolicy>& policy = hbm_policies_[slot_bytes];
  if (!policy) policy = std::make_unique<SievePolicy>();
  return *policy;
}

void BlockStore::MaybeQueueHbm(const BlockId& id, BlockEntry& e) {
  if (options_.hbm_promote_hits == 0 || e.in_hbm || e.hbm_queued ||
      e.hits < options_.hbm_promote_hits || e.bytes > hbm_->segment_bytes()) {
    return;
  }
  absl::MutexLock lock(&hbm_queue_mu_);
  if (hbm_queue_.size() >= kMaxHbmQueue) return;  // a later read queues it again
  e.hbm_queued = true;
  hbm_queue_.push_back(id);
}

size_t BlockStore::HbmQueued() {
  absl::MutexLock lock(&hbm_queue_mu_);
  return hbm_queue_.size();
}

std::optional<uint64_t> BlockStore::AllocateHbmSlotLocked(uint64_t slot_bytes,
                                                          std::vector<BlockId>* demote) {
  const uint64_t segment_bytes = hbm_->segment_bytes();
  for (;;) {
    for (size_t i = 0; i < hbm_allocators_.size(); ++i) {
      if (std::optional<uint64_t> at = hbm_allocators_[i].Allocate(slot_bytes)) {
        return i * segment_bytes + *at;
      }
    }
    bool evicted = EvictHbmFromClassLocked(slot_bytes, demote);
    for (auto it = hbm_policies_.begin(); !evicted && it != hbm_policies_.end(); ++it) {
      if (it->first != slot_bytes) evicted = EvictHbmFromClassLocked(it->first, demote);
    }
    if (!evicted || !demote->empty()) return std::nullopt;
  }
}

bool BlockStore::EvictHbmFromClassLocked(uint64_t slot_bytes, std::vector<BlockId>* demote) {
  auto pit = hbm_policies_.find(slot_bytes);
  if (pit == hbm_policies_.end() || pit->second->size() == 0) return false;
  bool dropped = false;
  std::optional<uint64_t> slot = pit->second->EvictOne([&](uint64_t candidate) {
    space_mu_.AssertHeld();
    const BlockId victim = hbm_slot_owner_.at(candidate);
    return index_.WithShard(victim, [&](BlockIndex::Map& map) {
      auto it = map.find(victim);
      if (it == map.end()) return Verdict::kPinned;
      BlockEntry& e = it->second;
      if (e.state != BlockState::kReady || e.readers > 0 || e.io_pins > 0) return Verdict::kPinned;
      if (e.hbm_visited) {
        e.hbm_visited = false;
        return Verdict::kSecondChance;
      }
      if (e.in_dram || e.on_nvme) {  // clean: only the HBM copy goes
        e.in_hbm = false;
        dropped = true;
        return Verdict::kEvict;
      }
      // Only here: copied down into DRAM by the caller; readers wait for it like a promotion.
      e.state = BlockState::kPromoting;
      ++e.readers;
      demote->push_back(victim);
      return Verdict::kEvict;
    });
  });
  if (!slot) return false;
  if (dropped) FreeHbmSlotLocked(*slot, slot_bytes);
  hbm_evictions_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void BlockStore::FreeHbmSlotLocked(uint64_t hbm_offset, uint64_t slot_bytes) {
  const uint64_t segment_bytes = hbm_->segment_bytes();
  hbm_slot_owner_.erase(hbm_offset);
  hbm_allocators_[hbm_offset / segment_bytes].Free(hbm_offset % segment_bytes, slot_bytes);
  hbm_blocks_.fetch_sub(1, std::memory_order_relaxed);
}

void BlockStore::CopyDownFromHbm(const BlockId& id, uint64_t bytes, uint64_t hbm_offset) {
  const uint64_t slot_bytes = SlabAllocator::SlotBytes(bytes);
  std::optional<uint64_t> slot;
  {
    absl::MutexLock space(&space_mu_);
    slot = AllocateSlotLocked(slot_bytes);
    if (slot) slot_owner_[*slot] = id;
  }
  if (!slot) {
    FinishPromotion(id, 0, 0, absl::ResourceExhaustedError("dram: no room to copy down from hbm"),
                    /*from_hbm=*/true);
    return;
  }
  const HbmRef at = HbmRefOf(hbm_offset);
  absl::Status status = hbm_->CopyOut(at.segment, at.offset, arena_ + *slot, bytes);
  if (status.ok()) hbm_bytes_out_.fetch_add(bytes, std::memory_order_relaxed);
  if (!status.ok())
    spdlog::warn("hbm: copy down of {} failed: {}", KeyToHex(id.key), status.ToString());
  FinishPromotion(id, *slot, slot_bytes, status, /*from_hbm=*/true);
}

void BlockStore::DemoteHbmBlock(const BlockId& id) {
  uint64_t bytes = 0, hbm_offset = 0, hbm_slot_bytes = 0;
  index_.WithShard(id, [&](BlockIndex::Map& map) {
    const BlockEntry& e = map.at(id);  // pinned (readers) by AllocateHbmSlotLocked
    bytes = e.bytes;
    hbm_offset = e.hbm_offset;
    hbm_slot_bytes = e.hbm_slot_bytes;
  });
  CopyDownFromHbm(id, bytes, hbm_offset);
  absl::MutexLock space(&space_mu_);
  std::optional<BlockEntry> gone;
  bool demoted = false;
  index_.WithShard(id, [&](BlockIndex::Map& map) {
    auto it = map.find(id);
    if (it == map.end()) return;
    BlockEntry& e = it->second;
    if (e.readers > 0) --e.readers;
    e.in_hbm = false;
    demoted = e.in_dram;
    // The copy down failed (DRAM full of pinned blocks): the block is gone, it was only cache.
    if (!e.in_dram && !e.on_nvme && e.readers == 0 && e.state == BlockState::kReady) {
      gone = e;
      map.erase(it);
    }
  });
  FreeHbmSlotLocked(hbm_offset, hbm_slot_bytes);
  if (demoted) hbm_demotions_.fetch_add(1, std::memory_order_relaxed);
  if (gone) ForgetLocked(id, *gone);
}

size_t BlockStore::PromoteSome(size_t max_blocks) {
  if (hbm_ == nullptr) return 0;
  std::vector<BlockId> batch;
  {
    absl::MutexLock lock(&hbm_queue_mu_);
    const size_t n = std::min(max_blocks, hbm_queue_.size());
    batch.assign(hbm_queue_.begin(), hbm_queue_.begin() + static_cast<ptrdiff_t>(n));
    hbm_queue_.erase(hbm_queue_.begin(), hbm_queue_.begin() + static_cast<ptrdiff_t>(n));
  }
  size_t promoted = 0;
  for (const BlockId& id : batch) {
    std::optional<uint64_t> hbm_slot;
    uint64_t bytes = 0, dram_offset = 0, slot_bytes = 0;
    // A few rounds: each either finds a slot, gives up, or demotes what stood in the way.
    for (int round = 0; round < 4 && !hbm_slot; ++round) {
      std::vector<BlockId> demote;
      bool eligible = true;
      {
        absl::MutexLock space(&space_mu_);
        index_.WithShard(id, [&](BlockIndex::Map& map) {
          auto it = map.find(id);
          if (it == map.end()) {
            eligible = false;
            return;
          }
          BlockEntry& e = it->second;
          if (e.state != BlockState::kReady || !e.in_dram || e.in_hbm) {
            e.hbm_queued = false;
            eligible = false;
            return;
          }
          bytes = e.bytes;
          dram_offset = e.offset;
        });
        if (!eligible) break;
        slot_bytes = SlabAllocator::SlotBytes(bytes);
        hbm_slot = AllocateHbmSlotLocked(slot_bytes, &demote);
        if (hbm_slot) {
          // Pin the DRAM copy for the device copy; the entry may have changed meanwhile only
          // through readers (Acquire takes no space lock), which leave the slot where it is.
          index_.WithShard(id, [&](BlockIndex::Map& map) { ++map.at(id).io_pins; });
          hbm_slot_owner_[*hbm_slot] = id;
          hbm_blocks_.fetch_add(1, std::memory_order_relaxed);  // FreeHbmSlotLocked takes it back
        }
      }
      for (const BlockId& victim : demote) DemoteHbmBlock(victim);
      if (!hbm_slot && demote.empty()) break;  // everything in HBM is pinned or being read
    }
    if (!hbm_slot) {
      index_.WithShard(id, [&](BlockIndex::Map& map) {
        if (auto it = map.find(id); it != map.end()) it->second.hbm_queued = false;
      });
      continue;
    }
    const HbmRef at = HbmRefOf(*hbm_slot);
    absl::Status copied = hbm_->CopyIn(at.segment, at.offset, arena_ + dram_offset, bytes);
    absl::MutexLock space(&space_mu_);
    bool kept = false;
    index_.WithShard(id, [&](BlockIndex::Map& map) {
      BlockEntry& e = map.at(id);  // io_pins > 0 kept it
      --e.io_pins;
      e.hbm_queued = false;
      if (!copied.ok()) return;
      e.in_hbm = true;
      e.hbm_offset = *hbm_slot;
      e.hbm_slot_bytes = slot_bytes;
      e.hbm_visited = false;
      kept = true;
    });
    if (!kept) {
      spdlog::warn("hbm: promotion of {} failed: {}", KeyToHex(id.key), copied.ToString());
      hbm_failures_.fetch_add(1, std::memory_order_relaxed);
      FreeHbmSlotLocked(*hbm_slot, slot_bytes);
      continue;
    }
    HbmPolicyLocked(slot_bytes).Insert(*hbm_slot);
    hbm_promotions_.fetch_add(1, std::memory_order_relaxed);
    hbm_bytes_in_.fetch_add(bytes, std::memory_order_relaxed);
    ++promoted;
  }
  return promoted;
}

}  // namespace kvtier
