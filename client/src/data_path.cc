// The data path: Save/Load copy through the shared arena; BeginWrite/AcquireRead hand the arena
// slots out as leases. Control messages carry offsets only; bytes move by memcpy.
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "client/src/client_impl.h"
#include "client/src/leases.h"
#include "client/src/wire.h"

namespace kvtier::client_internal {
namespace {

Status Invalid(const std::string& message) {
  return Status(Status::Code::kInvalidArgument, message);
}

std::string Hex(uint64_t id) {
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64, id);
  return buf;
}

// The daemon answered `block_bytes` per block; the caller's buffers hold ns.block_bytes.
Status CheckBlockBytes(const Namespace& ns, uint64_t block_bytes) {
  if (block_bytes == 0) {
    return Status(Status::Code::kInternal, "kvtierd answered a block size of 0 bytes");
  }
  if (ns.block_bytes != 0 && ns.block_bytes != block_bytes) {
    return Invalid("namespace " + Hex(ns.id) + " holds blocks of " + std::to_string(block_bytes) +
                   " bytes, but the Namespace passed says " + std::to_string(ns.block_bytes));
  }
  return Status();
}

Status CheckOffsets(const std::vector<uint64_t>& offsets, uint64_t block_bytes,
                    const ArenaMapping& arena) {
  for (uint64_t offset : offsets) {
    if (offset == kExistsOffset) continue;
    if (!arena.Contains(offset, block_bytes)) {
      return Status(Status::Code::kInternal, "kvtierd answered arena offset " +
                                                 std::to_string(offset) + " outside its arena of " +
                                                 std::to_string(arena.size()) + " bytes");
    }
  }
  return Status();
}

Status CheckBuffers(const Namespace& ns, size_t num_keys, size_t num_blocks,
                    const void* const* blocks, const char* call) {
  if (num_blocks != num_keys) {
    return Invalid(std::string(call) + ": " + std::to_string(num_keys) + " keys but " +
                   std::to_string(num_blocks) + " block buffers");
  }
  if (ns.block_bytes == 0) {
    return Invalid(std::string(call) + ": namespace " + Hex(ns.id) +
                   " has block_bytes 0 (use the Namespace RegisterNamespace returned)");
  }
  for (size_t i = 0; i < num_blocks; ++i) {
    if (blocks[i] == nullptr) {
      return Invalid(std::string(call) + ": block buffer " + std::to_string(i) + " is null");
    }
  }
  return Status();
}

}  // namespace

Status ClientImpl::BeginWrite(const Namespace& ns, std::span<const BlockKey> keys, BlockKey parent,
                              std::unique_ptr<WriteLease>* out) {
  if (out == nullptr) return Invalid("BeginWrite: out is null");
  std::shared_ptr<const ArenaMapping> arena;
  if (Status s = conn_->Arena(&arena); !s.ok()) return s;
  if (keys.empty()) {
    *out = std::make_unique<ArenaWriteLease>(conn_, std::move(arena), 0, ns.block_bytes,
                                             std::vector<uint64_t>());
    return Status();
  }

  v1::AllocateRequest request;
  request.set_namespace_id(ns.id);
  request.set_keys(EncodeBlockKeys(keys));
  if (parent.lo != 0 || parent.hi != 0) request.set_parent_key(EncodeBlockKey(parent));
  request.set_lease_ms(conn_->lease_ms());
  v1::AllocateResponse response;
  grpc::ClientContext context;
  conn_->Prepare(&context);
  if (Status s = conn_->CallStatus(conn_->stub().Allocate(&context, request, &response)); !s.ok()) {
    return s;
  }

  std::vector<uint64_t> offsets(response.offsets().begin(), response.offsets().end());
  // Owning the lease from here on: any check that fails below aborts it on the way out.
  auto lease = std::make_unique<ArenaWriteLease>(conn_, arena, response.lease_id(),
                                                 response.block_bytes(), offsets);
  if (offsets.size() != keys.size()) {
    return Status(Status::Code::kInternal, "kvtierd answered " + std::to_string(offsets.size()) +
                                               " offsets for " + std::to_string(keys.size()) +
                                               " keys");
  }
  if (Status s = CheckBlockBytes(ns, response.block_bytes()); !s.ok()) return s;
  if (Status s = CheckOffsets(offsets, response.block_bytes(), *arena); !s.ok()) return s;
  *out = std::move(lease);
  return Status();
}

Status ClientImpl::AcquireRead(const Namespace& ns, std::span<const BlockKey> keys,
                               std::unique_ptr<ReadLease>* out) {
  return Acquire(ns, keys, /*accept_hbm=*/false, out);
}

Status ClientImpl::AcquireReadTiered(const Namespace& ns, std::span<const BlockKey> keys,
                                     std::unique_ptr<ReadLease>* out) {
  return Acquire(ns, keys, /*accept_hbm=*/true, out);
}

Status ClientImpl::HbmTier(HbmTierInfo* out) {
  if (out == nullptr) return Invalid("HbmTier: out is null");
  *out = conn_->Hbm();
  return Status();
}

Status ClientImpl::Acquire(const Namespace& ns, std::span<const BlockKey> keys, bool accept_hbm,
                           std::unique_ptr<ReadLease>* out) {
  if (out == nullptr) return Invalid("AcquireRead: out is null");
  std::shared_ptr<const ArenaMapping> arena;
  if (Status s = conn_->Arena(&arena); !s.ok()) return s;
  if (keys.empty()) {
    *out = std::make_unique<ArenaReadLease>(conn_, std::move(arena), 0, ns.block_bytes,
                                            std::vector<uint64_t>());
    return Status();
  }

  v1::AcquireRequest request;
  request.set_namespace_id(ns.id);
  request.set_keys(EncodeBlockKeys(keys));
  request.set_lease_ms(conn_->lease_ms());
  request.set_accept_hbm(accept_hbm);
  v1::AcquireResponse response;
  grpc::ClientContext context;
  conn_->Prepare(&context);
  if (Status s = conn_->CallStatus(conn_->stub().Acquire(&context, request, &response)); !s.ok()) {
    return s;
  }

  std::vector<uint64_t> offsets(response.offsets().begin(), response.offsets().end());
  std::vector<HbmBlockRef> hbm;
  if (response.hbm_segments_size() > 0) {
    if (!accept_hbm || response.hbm_segments_size() != response.hbm_offsets_size() ||
        static_cast<size_t>(response.hbm_segments_size()) != offsets.size()) {
      return Status(Status::Code::kInternal, "kvtierd answered HBM locations that do not match");
    }
    for (int i = 0; i < response.hbm_segments_size(); ++i) {
      hbm.push_back({response.hbm_segments(i), response.hbm_offsets(i)});
    }
  }
  const HbmTierInfo tier = conn_->Hbm();
  auto lease = std::make_unique<ArenaReadLease>(conn_, arena, response.lease_id(),
                                                response.block_bytes(), offsets, hbm);
  if (offsets.size() > keys.size()) {
    return Status(Status::Code::kInternal, "kvtierd answered " + std::to_string(offsets.size()) +
                                               " offsets for " + std::to_string(keys.size()) +
                                               " keys");
  }
  if (!offsets.empty()) {
    if (Status s = CheckBlockBytes(ns, response.block_bytes()); !s.ok()) return s;
    for (size_t i = 0; i < offsets.size(); ++i) {
      const bool in_hbm = i < hbm.size() && hbm[i].valid();
      if (in_hbm && (hbm[i].segment >= tier.segments || hbm[i].offset > tier.segment_bytes ||
                     response.block_bytes() > tier.segment_bytes - hbm[i].offset)) {
        return Status(Status::Code::kInternal,
                      "kvtierd answered an HBM location outside its pool for an acquired key");
      }
      if (offsets[i] == kExistsOffset && !in_hbm) {
        return Status(Status::Code::kInternal, "kvtierd answered no offset for an acquired key");
      }
    }
    if (Status s = CheckOffsets(offsets, response.block_bytes(), *arena); !s.ok()) return s;
  }
  *out = std::move(lease);
  return Status();
}

Status ClientImpl::Save(const Namespace& ns, std::span<const BlockKey> keys,
                        std::span<const void* const> blocks, size_t* saved, BlockKey parent) {
  if (Status s = CheckBuffers(ns, keys.size(), blocks.size(), blocks.data(), "Save"); !s.ok()) {
    return s;
  }
  if (keys.empty()) {
    if (saved != nullptr) *saved = 0;
    return Status();
  }
  std::unique_ptr<WriteLease> lease;
  if (Status s = BeginWrite(ns, keys, parent, &lease); !s.ok()) return s;
  size_t written = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    std::span<std::byte> slot = lease->block(i);
    if (slot.empty()) continue;  // already cached (or being written by another process)
    std::memcpy(slot.data(), blocks[i], slot.size());
    ++written;
  }
  // A failed commit leaves the lease open; its destructor aborts it.
  if (Status s = lease->Commit(); !s.ok()) return s;
  if (saved != nullptr) *saved = written;
  return Status();
}

Status ClientImpl::Load(const Namespace& ns, std::span<const BlockKey> keys,
                        std::span<void* const> blocks, size_t* loaded) {
  if (Status s = CheckBuffers(ns, keys.size(), blocks.size(), blocks.data(), "Load"); !s.ok()) {
    return s;
  }
  if (keys.empty()) {
    if (loaded != nullptr) *loaded = 0;
    return Status();
  }
  std::unique_ptr<ReadLease> lease;
  if (Status s = AcquireRead(ns, keys, &lease); !s.ok()) return s;
  const size_t n = lease->size();
  for (size_t i = 0; i < n; ++i) {
    std::span<const std::byte> slot = lease->block(i);
    std::memcpy(blocks[i], slot.data(), slot.size());
  }
  // The bytes were copied while pinned, so they are good whatever Release answers; a release
  // that fails only leaves the pin until the lease deadline.
  (void)lease->Release();
  if (loaded != nullptr) *loaded = n;
  return Status();
}

}  // namespace kvtier::client_internal
