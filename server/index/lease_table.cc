#include "server/index/lease_table.h"

#include <random>

#include "absl/container/flat_hash_set.h"

namespace kvtier {

LeaseTable::LeaseTable() {
  // Ids start at a random point so a restarted daemon does not accept a stale client's lease.
  std::random_device rd;
  next_id_ = ((static_cast<uint64_t>(rd()) << 32) | rd()) | 1;
}

uint64_t LeaseTable::NewId() {
  absl::MutexLock lock(&mu_);
  uint64_t id = next_id_++;
  if (id == 0) id = next_id_++;
  return id;
}

uint64_t LeaseTable::Add(Lease lease) {
  if (lease.id == 0) lease.id = NewId();
  const uint64_t id = lease.id;
  absl::MutexLock lock(&mu_);
  leases_.emplace(id, std::move(lease));
  return id;
}

std::optional<Lease> LeaseTable::Take(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return std::nullopt;
  Lease lease = std::move(it->second);
  leases_.erase(it);
  return lease;
}

std::optional<Lease> LeaseTable::Get(uint64_t id) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return std::nullopt;
  return it->second;
}

void LeaseTable::RemoveKeys(uint64_t id, const std::vector<Key128>& keys) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(id);
  if (it == leases_.end()) return;
  absl::flat_hash_set<Key128> gone(keys.begin(), keys.end());
  std::erase_if(it->second.keys, [&](const Key128& k) { return gone.contains(k); });
  if (it->second.keys.empty()) leases_.erase(it);
}

std::vector<uint64_t> LeaseTable::Expired(int64_t now_ms) {
  absl::MutexLock lock(&mu_);
  std::vector<uint64_t> out;
  for (const auto& [id, lease] : leases_) {
    if (lease.deadline_ms <= now_ms) out.push_back(id);
  }
  return out;
}

size_t LeaseTable::size() {
  absl::MutexLock lock(&mu_);
  return leases_.size();
}

}  // namespace kvtier
