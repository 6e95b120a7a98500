#include "server/weights/chunk_pins.h"

#include "spdlog/spdlog.h"

namespace kvtier {

ChunkPins::ChunkPins(BlockStore* store, uint64_t ns, uint64_t chunk_bytes, uint64_t capacity)
    : store_(store), ns_(ns), chunk_bytes_(chunk_bytes), capacity_(capacity) {}

uint64_t ChunkPins::Lease(const Key128& key) {
  auto grant =
      store_->Acquire(ns_, std::span<const Key128>(&key, 1), store_->options().max_lease_ms);
  if (!grant.ok() || grant->lease_id == 0) return 0;
  return grant->lease_id;
}

void ChunkPins::Release(const std::vector<uint64_t>& leases) {
  if (!leases.empty()) (void)store_->Release(leases);
}

void ChunkPins::Hold(uint64_t file_id, const Key128& key) {
  {
    absl::MutexLock lock(&mu_);
    if (auto it = held_.find(key); it != held_.end()) {
      lru_.splice(lru_.end(), lru_, it->second.lru);
      return;
    }
  }
  const uint64_t lease = Lease(key);
  if (lease == 0) return;
  std::vector<uint64_t> let_go;
  {
    absl::MutexLock lock(&mu_);
    if (held_.contains(key)) {
      let_go.push_back(lease);  // held meanwhile by another call
    } else {
      // Room first: the least recently used chunks of files not pinned by name.
      for (auto it = lru_.begin();
           (held_.size() + 1) * chunk_bytes_ > capacity_ && it != lru_.end();) {
        Held& h = held_.at(*it);
        if (pinned_files_.contains(h.file_id)) {
          ++it;
          continue;
        }
        let_go.push_back(h.lease);
        held_.erase(*it);
        it = lru_.erase(it);
      }
      if ((held_.size() + 1) * chunk_bytes_ > capacity_) {
        if (!warned_full_) {
          spdlog::warn(
              "weights: the weight quota ({} bytes) is full of pinned files' chunks; "
              "further chunks are cached without protection from KV churn",
              capacity_);
          warned_full_ = true;
        }
        let_go.push_back(lease);
      } else {
        lru_.push_back(key);
        held_[key] = Held{file_id, lease, store_->NowMs(), std::prev(lru_.end())};
      }
    }
  }
  Release(let_go);
}

void ChunkPins::PinFile(uint64_t file_id, bool pinned) {
  absl::MutexLock lock(&mu_);
  if (pinned) {
    pinned_files_.insert(file_id);
  } else {
    pinned_files_.erase(file_id);
  }
  warned_full_ = false;
}

bool ChunkPins::IsPinned(uint64_t file_id) {
  absl::MutexLock lock(&mu_);
  return pinned_files_.contains(file_id);
}

void ChunkPins::Renew() {
  const int64_t now = store_->NowMs();
  const int64_t half = store_->options().max_lease_ms / 2;
  std::vector<std::pair<Key128, uint64_t>> due;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, h] : held_) {
      if (now - h.since_ms >= half) due.emplace_back(key, h.lease);
    }
  }
  std::vector<uint64_t> old;
  for (const auto& [key, lease] : due) {
    const uint64_t fresh = Lease(key);
    absl::MutexLock lock(&mu_);
    auto it = held_.find(key);
    if (it == held_.end() || it->second.lease != lease) {
      if (fresh != 0) old.push_back(fresh);
      continue;
    }
    old.push_back(lease);
    if (fresh == 0) {  // gone meanwhile (dropped by an operator)
      lru_.erase(it->second.lru);
      held_.erase(it);
    } else {
      it->second.lease = fresh;
      it->second.since_ms = now;
    }
  }
  Release(old);
}

uint64_t ChunkPins::used_bytes() {
  absl::MutexLock lock(&mu_);
  return held_.size() * chunk_bytes_;
}

}  // namespace kvtier
