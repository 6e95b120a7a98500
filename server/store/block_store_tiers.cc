// BlockStore: reads that promote blocks from NVMe, the writes that demote them, and warm restart.
#include <algorithm>
#include <future>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "server/nvme/nvme_format.h"
#include "server/store/block_store.h"
#include "spdlog/spdlog.h"

namespace kvtier {

// One Acquire: the keys it pinned, in order, and the promotions it waits for.
struct BlockStore::AcquireJob {
  uint64_t ns = 0;
  uint32_t lease_ms = 0;
  uint64_t block_bytes = 0;
  AcquireDone done;
  std::vector<Key128> keys;  // pinned (readers++), in request order
  absl::Mutex mu;
  std::vector<uint64_t> offsets ABSL_GUARDED_BY(mu);
  std::vector<HbmRef> hbm ABSL_GUARDED_BY(mu);  // accept_hbm only
  std::vector<bool> failed ABSL_GUARDED_BY(mu);
  bool accept_hbm = false;
  size_t outstanding ABSL_GUARDED_BY(mu) = 1;  // +1 while the request is still being walked
};

absl::StatusOr<ReadGrant> BlockStore::Acquire(uint64_t ns, std::span<const Key128> keys,
                                              uint32_t lease_ms, bool accept_hbm) {
  std::promise<absl::StatusOr<ReadGrant>> promise;
  AcquireAsync(
      ns, keys, lease_ms,
      [&promise](absl::StatusOr<ReadGrant> r) { promise.set_value(std::move(r)); }, accept_hbm);
  return promise.get_future().get();
}

void BlockStore::AcquireAsync(uint64_t ns_id, std::span<const Key128> keys, uint32_t lease_ms,
                              AcquireDone done, bool accept_hbm) {
  if (absl::Status s = CheckBatch(keys.size(), "keys"); !s.ok()) return done(s);
  absl::StatusOr<NamespaceRecord*> ns = registry_.Find(ns_id);
  if (!ns.ok()) return done(ns.status());
  absl::StatusOr<uint32_t> lease = LeaseMs(lease_ms);
  if (!lease.ok()) return done(lease.status());

  auto job = std::make_shared<AcquireJob>();
  job->ns = ns_id;
  job->lease_ms = *lease;
  job->block_bytes = (*ns)->block_bytes;
  job->done = std::move(done);
  job->accept_hbm = accept_hbm && hbm_ != nullptr;
  struct Promotion {
    BlockId id;
    uint64_t bytes, checksum;
    NvmeLocation at;
  };
  std::vector<Promotion> promotions;
  struct CopyDown {
    BlockId id;
    uint64_t bytes, hbm_offset;
  };
  std::vector<CopyDown> copy_downs;
  for (const Key128& key : keys) {
    const BlockId id{ns_id, key};
    const size_t index = job->keys.size();
    // Registered under the shard lock, so a promotion finishing meanwhile cannot miss it.
    auto waiter = [this, job, index](bool ok, uint64_t offset) {
      bool last;
      {
        absl::MutexLock lock(&job->mu);
        job->offsets[index] = offset;
        job->failed[index] = !ok;
        last = --job->outstanding == 0;
      }
      if (last) FinishAcquire(job);
    };
    bool stop = false;
    index_.WithShard(id, [&](BlockIndex::Map& map) {
      auto it = map.find(id);
      if (it == map.end() || it->second.state == BlockState::kWriting) {
        stop = true;
        return;
      }
      BlockEntry& e = it->second;
      ++e.readers;
      ++e.hits;
      e.visited = true;
      e.spared = false;  // a read re-arms the leaf-first tie-breaker
      const bool ready = e.state == BlockState::kReady;
      const bool hbm_hit = ready && job->accept_hbm && e.in_hbm;
      if (hbm_ != nullptr && ready && e.in_hbm) e.hbm_visited = true;
      if (hbm_ != nullptr) MaybeQueueHbm(id, e);
      absl::MutexLock lock(&job->mu);
      job->keys.push_back(key);
      job->offsets.push_back(ready && e.in_dram ? e.offset : kExistsOffset);
      job->hbm.push_back(hbm_hit ? HbmRefOf(e.hbm_offset) : HbmRef{});
      job->failed.push_back(false);
      if (hbm_hit) {  // read from the device pool by the engine: no DRAM copy needed
        hbm_hits_.fetch_add(1, std::memory_order_relaxed);
        hbm_bytes_out_.fetch_add(e.bytes, std::memory_order_relaxed);
        return;
      }
      if (ready && e.in_dram) return;  // a DRAM hit
      ++job->outstanding;
      absl::MutexLock promo(&promo_mu_);
      promo_waiters_[id].push_back(std::move(waiter));
      if (ready && e.in_hbm) {  // only in HBM: copied down into DRAM for this reader
        e.state = BlockState::kPromoting;
        copy_downs.push_back({id, e.bytes, e.hbm_offset});
      } else if (ready) {  // only on NVMe: this request reads it up
        e.state = BlockState::kPromoting;
        promotions.push_back({id, e.bytes, e.checksum, {e.nvme_region, e.nvme_offset}});
      }
    });
    if (stop) break;
  }
  hits_.fetch_add(job->keys.size(), std::memory_order_relaxed);
  misses_.fetch_add(keys.size() - job->keys.size(), std::memory_order_relaxed);
  for (const Promotion& p : promotions) StartPromotion(p.id, p.bytes, p.checksum, p.at);
  for (const CopyDown& c : copy_downs) CopyDownFromHbm(c.id, c.bytes, c.hbm_offset);
  bool finished;
  {
    absl::MutexLock lock(&job->mu);
    finished = --job->outstanding == 0;
  }
  if (finished) FinishAcquire(job);
}

void BlockStore::StartPromotion(const BlockId& id, uint64_t bytes, uint64_t checksum,
                                NvmeLocation at) {
  const uint64_t slot_bytes = SlabAllocator::SlotBytes(bytes);
  std::optional<uint64_t> slot;
  {
    absl::MutexLock space(&space_mu_);
    slot = AllocateSlotLocked(slot_bytes);
    if (slot) slot_owner_[*slot] = id;
  }
  if (!slot) {
    FinishPromotion(id, 0, 0, absl::ResourceExhaustedError("dram: no room to promote"));
    return;
  }
  nvme_->Read(at, arena_ + *slot, bytes, checksum,
              [this, id, slot = *slot, slot_bytes](absl::Status status) {
                FinishPromotion(id, slot, slot_bytes, status);
              });
}

void BlockStore::FinishPromotion(const BlockId& id, uint64_t slot, uint64_t slot_bytes,
                                 absl::Status status, bool from_hbm) {
  std::vector<std::function<void(bool, uint64_t)>> waiters;
  {
    absl::MutexLock space(&space_mu_);
    std::optional<BlockEntry> gone;
    bool found = true;
    index_.WithShard(id, [&](BlockIndex::Map& map) {
      auto it = map.find(id);
      if (it == map.end()) {  // readers > 0 keeps it: never expected
        found = false;
        return;
      }
      BlockEntry& e = it->second;
      if (status.ok()) {
        e.state = BlockState::kReady;
        e.in_dram = true;
        e.offset = slot;
        e.slot_bytes = slot_bytes;
      } else {
        e.state = BlockState::kReady;
        // A checksum mismatch means the record is bad (or was overwritten): forget it.
        if (!from_hbm && absl::IsDataLoss(status)) {
          gone = e;
          e.on_nvme = false;
        }
      }
      absl::MutexLock promo(&promo_mu_);
      waiters = std::move(promo_waiters_[id]);
      promo_waiters_.erase(id);
    });
    if (!found) {
      spdlog::error("promotion of {} finished for a block no longer indexed", KeyToHex(id.key));
      absl::MutexLock promo(&promo_mu_);
      waiters = std::move(promo_waiters_[id]);
      promo_waiters_.erase(id);
      if (slot_bytes != 0) FreeSlotLocked(slot, slot_bytes, /*was_ready=*/false);
      status = absl::InternalError("block left the index during its promotion");
    } else if (status.ok()) {
      PolicyLocked(slot_bytes).Insert(slot);
      dram_blocks_.fetch_add(1, std::memory_order_relaxed);
      (from_hbm ? hbm_copy_downs_ : promotions_).fetch_add(1, std::memory_order_relaxed);
    } else {
      if (slot_bytes != 0) FreeSlotLocked(slot, slot_bytes, /*was_ready=*/false);
      (from_hbm ? hbm_failures_ : promote_failures_).fetch_add(1, std::memory_order_relaxed);
      if (gone) nvme_blocks_.fetch_sub(1, std::memory_order_relaxed);
      spdlog::debug("promotion of {} failed: {}", KeyToHex(id.key), status.ToString());
    }
  }
  for (auto& w : waiters) w(status.ok(), slot);
}

void BlockStore::FinishAcquire(const std::shared_ptr<AcquireJob>& job) {
  std::vector<uint64_t> offsets;
  std::vector<HbmRef> hbm;
  std::vector<bool> failed;
  {
    absl::MutexLock lock(&job->mu);
    offsets = job->offsets;
    hbm = job->hbm;
    failed = job->failed;
  }
  size_t prefix = 0;
  while (prefix < job->keys.size() && !failed[prefix]) ++prefix;
  // Unpin what lies past the first failure; drop entries left with no copy at all.
  for (size_t i = prefix; i < job->keys.size(); ++i) {
    const BlockId id{job->ns, job->keys[i]};
    std::optional<BlockEntry> gone;
    index_.WithShard(id, [&](BlockIndex::Map& map) {
      auto it = map.find(id);
      if (it == map.end()) return;
      BlockEntry& e = it->second;
      if (e.readers > 0) --e.readers;
      if (!e.in_dram && !e.on_nvme && !e.in_hbm && e.readers == 0 &&
          e.state == BlockState::kReady) {
        gone = e;
        map.erase(it);
      }
    });
    if (gone) ForgetNvmeOnly(id, *gone);
  }
  ReadGrant grant;
  if (job->accept_hbm) grant.hbm.assign(hbm.begin(), hbm.begin() + static_cast<ptrdiff_t>(prefix));
  grant.block_bytes = job->block_bytes;
  grant.lease_ms = job->lease_ms;
  grant.offsets.assign(offsets.begin(), offsets.begin() + static_cast<ptrdiff_t>(prefix));
  bytes_out_.fetch_add(prefix * job->block_bytes, std::memory_order_relaxed);
  if (prefix > 0) {
    std::vector<Key128> held(job->keys.begin(), job->keys.begin() + static_cast<ptrdiff_t>(prefix));
    grant.lease_id =
        leases_.Add(Lease{0, LeaseKind::kRead, job->ns, NowMs() + job->lease_ms, std::move(held)});
  }
  job->done(std::move(grant));
}

absl::StatusOr<uint32_t> BlockStore::Prefetch(uint64_t ns, std::span<const Key128> keys) {
  ASSIGN_OR_RETURN(LookupAnswer answer, Lookup(ns, keys));
  if (nvme_ != nullptr &&
      std::find(answer.tiers.begin(), answer.tiers.end(), TierId::kNvme) != answer.tiers.end()) {
    // An Acquire whose lease is given back the moment the reads are done.
    AcquireAsync(ns, keys.first(answer.prefix_blocks), 0, [this](absl::StatusOr<ReadGrant> g) {
      if (g.ok() && g->lease_id != 0) (void)Release(std::vector<uint64_t>{g->lease_id});
    });
  }
  return answer.prefix_blocks;
}

void BlockStore::AttachNvme(NvmeStore* nvme, std::byte* arena) {
  nvme_ = nvme;
  arena_ = arena;
  nvme_->set_on_evicted(
      [this](uint32_t region, const std::vector<NvmeKey>& keys) { OnNvmeEvicted(region, keys); });
}

bool BlockStore::NvmeWritable() { return nvme_ != nullptr && !nvme_->Counters().degraded; }

void BlockStore::AdoptRecovered(const std::vector<RecoveredBlock>& blocks) {
  const int64_t now = NowMs();
  size_t adopted = 0;
  for (const RecoveredBlock& b : blocks) {
    const BlockId id{b.id.ns, b.id.key};
    index_.WithShard(id, [&](BlockIndex::Map& map) {
      BlockEntry e;
      e.bytes = b.bytes;
      e.state = BlockState::kReady;
      e.on_nvme = true;
      e.nvme_region = b.location.region;
      e.nvme_offset = b.location.offset;
      e.checksum = b.checksum;
      e.created_ms = now;
      // A key found twice (saved again after a drop): the later record wins.
      map.insert_or_assign(id, e);
    });
    if (BlockListener* l = listener_.load()) l->OnBlockReady(id, Key128{});
    ++adopted;
  }
  nvme_blocks_.store(index_.size(), std::memory_order_relaxed);
  if (adopted > 0) spdlog::info("warm restart: {} blocks back from NVMe", adopted);
}

void BlockStore::OnNvmeEvicted(uint32_t region, const std::vector<NvmeKey>& keys) {
  for (const NvmeKey& k : keys) {
    const BlockId id{k.ns, k.key};
    std::optional<BlockEntry> gone;
    index_.WithShard(id, [&](BlockIndex::Map& map) {
      auto it = map.find(id);
      if (it == map.end() || !it->second.on_nvme || it->second.nvme_region != region) return;
      BlockEntry& e = it->second;
      e.on_nvme = false;
      nvme_blocks_.fetch_sub(1, std::memory_order_relaxed);
      nvme_lost_.fetch_add(1, std::memory_order_relaxed);
      // Still in DRAM or HBM (or being read from this very record, which then fails its
      // checksum): keep the entry. Otherwise the block is gone from every tier.
      if (!e.in_dram && !e.in_hbm && e.state == BlockState::kReady && e.readers == 0) {
        gone = e;
        gone->on_nvme = false;
        map.erase(it);
      }
    });
    if (gone) ForgetNvmeOnly(id, *gone);
  }
}

size_t BlockStore::DemoteSome(size_t max_blocks) {
  if (!NvmeWritable()) return 0;
  struct Candidate {
    BlockId id;
    uint64_t offset, bytes;
  };
  std::vector<Candidate> picked;
  {
    absl::MutexLock space(&space_mu_);
    if (static_cast<double>(allocator_.used_bytes()) <
        options_.demote_watermark * static_cast<double>(allocator_.capacity())) {
      return 0;
    }
    // Coldest first, as eviction will take them; each class in turn.
    constexpr size_t kScanLimit = 4096;
    for (auto& [slot_bytes, policy] : policies_) {
      size_t scanned = 0;
      policy->ForEachColdest([&](uint64_t slot) {
        space_mu_.AssertHeld();
        const BlockId id = slot_owner_.at(slot);
        index_.WithShard(id, [&](BlockIndex::Map& map) {
          auto it = map.find(id);
          if (it == map.end()) return;
          BlockEntry& e = it->second;
          if (e.state != BlockState::kReady || !e.in_dram || e.on_nvme || e.io_pins > 0) return;
          // Larger than an NVMe region: it can only live in DRAM (else the mover would try again
          // on every pass).
          if (e.bytes > nvme_->max_block_bytes()) return;
          if (options_.nvme_admit == StoreOptions::Admit::kReused && e.hits == 0 &&
              e.children == 0) {
            return;  // not worth a write: it goes when evicted
          }
          ++e.io_pins;  // the slot must not move while the device reads it
          picked.push_back({id, e.offset, e.bytes});
        });
        return picked.size() < max_blocks && ++scanned < kScanLimit;
      });
      if (picked.size() >= max_blocks) break;
    }
  }
  for (const Candidate& c : picked) {
    const std::byte* src = arena_ + c.offset;
    const uint64_t checksum = nvme::PayloadChecksum(src, c.bytes);
    nvme_->Write({c.id.ns, c.id.key}, src, c.bytes, checksum,
                 [this, id = c.id, checksum](absl::StatusOr<NvmeLocation> at) {
                   index_.WithShard(id, [&](BlockIndex::Map& map) {
                     auto it = map.find(id);
                     if (it == map.end()) {  // io_pins > 0 keeps it: never expected
                       spdlog::error("NVMe write finished for a block no longer indexed");
                       return;
                     }
                     BlockEntry& e = it->second;
                     --e.io_pins;
                     if (!at.ok()) return;
                     e.on_nvme = true;
                     e.nvme_region = at->region;
                     e.nvme_offset = at->offset;
                     e.checksum = checksum;
                   });
                   if (at.ok()) {
                     nvme_blocks_.fetch_add(1, std::memory_order_relaxed);
                     demotions_.fetch_add(1, std::memory_order_relaxed);
                   }
                 });
  }
  return picked.size();
}

}  // namespace kvtier
