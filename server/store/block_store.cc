#include "server/store/block_store.h"

#include <chrono>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "common/size.h"
#include "common/status_macros.h"
#include "server/policy/sieve_policy.h"

namespace kvtier {
namespace {

int64_t SteadyNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

BlockStore::BlockStore(uint64_t dram_capacity, StoreOptions options)
    : options_(std::move(options)), allocator_(dram_capacity) {
  if (!options_.now_ms) options_.now_ms = SteadyNowMs;
}

absl::Status BlockStore::CheckBatch(size_t n, const char* field) const {
  if (n > options_.max_batch_keys) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: %d keys is over the batch limit of %d",
                                                      field, n, options_.max_batch_keys));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> BlockStore::LeaseMs(uint32_t asked) const {
  if (asked == 0) return options_.default_lease_ms;
  if (asked > options_.max_lease_ms) {
    return absl::InvalidArgumentError(
        absl::StrFormat("lease_ms: %d is over the maximum of %d", asked, options_.max_lease_ms));
  }
  return asked;
}

absl::StatusOr<NamespaceRecord*> BlockStore::RegisterNamespace(const NamespaceLayout& layout,
                                                               bool* created) {
  ASSIGN_OR_RETURN(NamespaceRecord * record, registry_.Register(layout, created));
  if (*created) {
    // Blocks of this namespace may already be here: found on NVMe at start-up.
    uint64_t found = 0;
    index_.ForEach([&](const BlockId& id, BlockEntry& e) {
      if (id.ns == record->id && e.state != BlockState::kWriting) ++found;
      return true;
    });
    record->blocks.store(found, std::memory_order_relaxed);
  }
  uint64_t capacity;
  {
    absl::MutexLock lock(&space_mu_);
    capacity = allocator_.capacity();
  }
  if (SlabAllocator::SlotBytes(record->block_bytes) > capacity) {
    return absl::InvalidArgumentError(
        absl::StrFormat("layout: a block of %s does not fit in the %s DRAM tier",
                        FormatBytes(record->block_bytes), FormatBytes(capacity)));
  }
  return record;
}

absl::StatusOr<LookupAnswer> BlockStore::Lookup(uint64_t ns, std::span<const Key128> keys) {
  ASSIGN_OR_RETURN(LookupAnswer answer, Peek(ns, keys));
  lookups_.fetch_add(1, std::memory_order_relaxed);
  lookup_keys_.fetch_add(keys.size(), std::memory_order_relaxed);
  lookup_hit_keys_.fetch_add(answer.prefix_blocks, std::memory_order_relaxed);
  return answer;
}

absl::StatusOr<LookupAnswer> BlockStore::Peek(uint64_t ns, std::span<const Key128> keys) {
  RETURN_IF_ERROR(CheckBatch(keys.size(), "keys"));
  RETURN_IF_ERROR(registry_.Find(ns).status());
  LookupAnswer answer;
  for (const Key128& key : keys) {
    const BlockId id{ns, key};
    const TierId tier = index_.WithShard(id, [&](BlockIndex::Map& map) {
      auto it = map.find(id);
      if (it == map.end() || it->second.state == BlockState::kWriting) return TierId::kNone;
      const BlockEntry& e = it->second;
      if (e.state == BlockState::kReady && e.in_hbm) return TierId::kHbm;
      if (e.state == BlockState::kReady && e.in_dram) return TierId::kDram;
      return e.on_nvme ? TierId::kNvme : TierId::kHbm;  // being read up, or copied down
    });
    if (tier == TierId::kNone) break;
    ++answer.prefix_blocks;
    answer.tiers.push_back(tier);
  }
  return answer;
}

absl::StatusOr<WriteGrant> BlockStore::Allocate(uint64_t ns_id, std::span<const Key128> keys,
                                                std::optional<Key128> parent, uint32_t lease_ms) {
  RETURN_IF_ERROR(CheckBatch(keys.size(), "keys"));
  ASSIGN_OR_RETURN(NamespaceRecord * ns, registry_.Find(ns_id));
  ASSIGN_OR_RETURN(const uint32_t lease, LeaseMs(lease_ms));
  const uint64_t slot_bytes = SlabAllocator::SlotBytes(ns->block_bytes);
  const int64_t now = NowMs();

  WriteGrant grant;
  grant.block_bytes = ns->block_bytes;
  grant.lease_ms = lease;
  grant.offsets.assign(keys.size(), kExistsOffset);
  const uint64_t lease_id = leases_.NewId();
  std::vector<Key128> reserved;

  absl::MutexLock space(&space_mu_);
  for (size_t i = 0; i < keys.size(); ++i) {
    const BlockId id{ns_id, keys[i]};
    const bool present =
        index_.WithShard(id, [&](BlockIndex::Map& map) { return map.contains(id); });
    if (present) continue;
    const Key128 parent_key = i == 0 ? parent.value_or(Key128{}) : keys[i - 1];
    // Linked before the slot is found, so making room never evicts this block's own parent.
    const bool linked = !parent_key.IsZero() && LinkToParent({ns_id, parent_key});
    std::optional<uint64_t> offset = AllocateSlotLocked(slot_bytes);
    if (!offset) {
      if (linked) UnlinkFromParent({ns_id, parent_key});
      for (const Key128& k : reserved) DiscardWritingLocked({ns_id, k}, lease_id);
      rejected_writes_.fetch_add(1, std::memory_order_relaxed);
      return absl::ResourceExhaustedError(absl::StrFormat(
          "dram: no room for %d blocks of %s: %s of %s in use and nothing evictable (blocks "
          "leased or being written)",
          keys.size(), FormatBytes(ns->block_bytes), FormatBytes(allocator_.used_bytes()),
          FormatBytes(allocator_.capacity())));
    }
    BlockEntry entry;
    entry.in_dram = true;
    entry.offset = *offset;
    entry.bytes = ns->block_bytes;
    entry.slot_bytes = slot_bytes;
    entry.state = BlockState::kWriting;
    entry.write_lease = lease_id;
    entry.parent = parent_key;
    entry.linked_to_parent = linked;
    entry.created_ms = now;
    index_.WithShard(id, [&](BlockIndex::Map& map) { map.emplace(id, entry); });
    slot_owner_[*offset] = id;
    grant.offsets[i] = *offset;
    reserved.push_back(keys[i]);
  }
  if (!reserved.empty()) {
    grant.lease_id =
        leases_.Add(Lease{lease_id, LeaseKind::kWrite, ns_id, now + lease, std::move(reserved)});
  }
  return grant;
}

absl::StatusOr<uint32_t> BlockStore::Commit(uint64_t lease_id, std::span<const Key128> keys,
                                            std::span<const uint64_t> checksums) {
  std::optional<Lease> lease = leases_.Get(lease_id);
  if (!lease || lease->kind != LeaseKind::kWrite) {
    return absl::NotFoundError(absl::StrFormat(
        "lease_id: %016x is not an open write lease (never allocated, already committed, "
        "released or expired)",
        lease_id));
  }
  std::vector<Key128> targets =
      keys.empty() ? lease->keys : std::vector<Key128>(keys.begin(), keys.end());
  RETURN_IF_ERROR(CheckBatch(targets.size(), "keys"));
  if (!checksums.empty() && checksums.size() != targets.size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("checksums: %d given for %d keys (give one per key, or none)",
                        checksums.size(), targets.size()));
  }
  ASSIGN_OR_RETURN(NamespaceRecord * ns, registry_.Find(lease->ns));

  absl::MutexLock space(&space_mu_);
  // Check every key first, so a bad batch changes nothing.
  absl::flat_hash_set<Key128> seen;
  for (size_t i = 0; i < targets.size(); ++i) {
    const BlockId id{lease->ns, targets[i]};
    if (!seen.insert(targets[i]).second) {
      return absl::InvalidArgumentError(
          absl::StrFormat("keys[%d]: %s appears twice", i, KeyToHex(targets[i])));
    }
    absl::Status status = index_.WithShard(id, [&](BlockIndex::Map& map) -> absl::Status {
      auto it = map.find(id);
      if (it != map.end() && it->second.state == BlockState::kWriting &&
          it->second.write_lease == lease_id) {
        return absl::OkStatus();
      }
      if (it != map.end() && it->second.state == BlockState::kReady) {
        return absl::FailedPreconditionError(
            absl::StrFormat("keys[%d]: %s is already committed", i, KeyToHex(targets[i])));
      }
      return absl::FailedPreconditionError(
          absl::StrFormat("keys[%d]: %s was not allocated under lease %016x (or the lease expired)",
                          i, KeyToHex(targets[i]), lease_id));
    });
    RETURN_IF_ERROR(status);
  }
  for (size_t i = 0; i < targets.size(); ++i) {
    const BlockId id{lease->ns, targets[i]};
    uint64_t offset = 0, slot_bytes = 0;
    index_.WithShard(id, [&](BlockIndex::Map& map) {
      BlockEntry& e = map.at(id);
      e.state = BlockState::kReady;
      e.write_lease = kNoLease;
      e.checksum = checksums.empty() ? 0 : checksums[i];
      e.created_ms = NowMs();
      offset = e.offset;
      slot_bytes = e.slot_bytes;
      if (BlockListener* l = listener_.load()) l->OnBlockReady(id, e.parent);
    });
    PolicyLocked(slot_bytes).Insert(offset);
  }
  ns->blocks.fetch_add(targets.size(), std::memory_order_relaxed);
  dram_blocks_.fetch_add(targets.size(), std::memory_order_relaxed);
  bytes_in_.fetch_add(targets.size() * ns->block_bytes, std::memory_order_relaxed);
  leases_.RemoveKeys(lease_id, targets);
  return static_cast<uint32_t>(targets.size());
}

std::optional<uint64_t> BlockStore::Checksum(const BlockId& id) {
  return index_.WithShard(id, [&](BlockIndex::Map& map) -> std::optional<uint64_t> {
    auto it = map.find(id);
    if (it == map.end() || it->second.state == BlockState::kWriting) return std::nullopt;
    return it->second.checksum;
  });
}

void BlockStore::SetChecksum(const BlockId& id, uint64_t checksum) {
  index_.WithShard(id, [&](BlockIndex::Map& map) {
    auto it = map.find(id);
    if (it != map.end() && it->second.state != BlockState::kWriting) {
      it->second.checksum = checksum;
    }
  });
}

absl::StatusOr<uint32_t> BlockStore::Release(std::span<const uint64_t> lease_ids) {
  RETURN_IF_ERROR(CheckBatch(lease_ids.size(), "lease_ids"));
  uint32_t released = 0;
  std::optional<size_t> unknown;
  for (size_t i = 0; i < lease_ids.size(); ++i) {
    std::optional<Lease> lease = leases_.Take(lease_ids[i]);
    if (!lease) {
      if (!unknown) unknown = i;
      continue;
    }
    EndLease(*lease);
    ++released;
  }
  if (unknown) {
    return absl::NotFoundError(absl::StrFormat(
        "lease_ids[%d]: %016x is not an open lease (already released, committed or expired); "
        "%d other leases released",
        *unknown, lease_ids[*unknown], released));
  }
  return released;
}

void BlockStore::EndLease(const Lease& lease) {
  if (lease.kind == LeaseKind::kRead) {
    for (const Key128& key : lease.keys) {
      const BlockId id{lease.ns, key};
      index_.WithShard(id, [&](BlockIndex::Map& map) {
        auto it = map.find(id);
        if (it != map.end() && it->second.readers > 0) --it->second.readers;
      });
    }
    return;
  }
  absl::MutexLock space(&space_mu_);
  for (const Key128& key : lease.keys) DiscardWritingLocked({lease.ns, key}, lease.id);
}

size_t BlockStore::ExpireLeases() {
  size_t n = 0;
  for (uint64_t id : leases_.Expired(NowMs())) {
    if (std::optional<Lease> lease = leases_.Take(id)) {
      EndLease(*lease);
      ++n;
    }
  }
  expired_leases_.fetch_add(n, std::memory_order_relaxed);
  return n;
}

}  // namespace kvtier
