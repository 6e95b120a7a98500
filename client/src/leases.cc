#include "client/src/leases.h"

#include "client/src/wire.h"

namespace kvtier::client_internal {
namespace {

Status Closed(const char* what) {
  return Status(Status::Code::kFailedPrecondition, std::string("lease already ") + what);
}

}  // namespace

ArenaWriteLease::ArenaWriteLease(std::shared_ptr<Connection> conn,
                                 std::shared_ptr<const ArenaMapping> arena, uint64_t lease_id,
                                 uint64_t block_bytes, std::vector<uint64_t> offsets)
    : conn_(std::move(conn)),
      arena_(std::move(arena)),
      lease_id_(lease_id),
      block_bytes_(block_bytes),
      offsets_(std::move(offsets)) {}

ArenaWriteLease::~ArenaWriteLease() {
  if (open_) (void)Abort();
}

std::span<std::byte> ArenaWriteLease::block(size_t i) {
  if (!open_ || i >= offsets_.size() || offsets_[i] == kExistsOffset) return {};
  return {arena_->base() + offsets_[i], block_bytes_};
}

Status ArenaWriteLease::Commit() {
  if (!open_) return Closed("ended");
  if (lease_id_ != 0) {
    // On failure the lease stays open, so Abort() or the destructor still frees the slots.
    if (Status s = conn_->CommitLease(lease_id_); !s.ok()) return s;
  }
  open_ = false;
  return Status();
}

Status ArenaWriteLease::Abort() {
  if (!open_) return Closed("ended");
  open_ = false;
  if (lease_id_ == 0) return Status();
  return conn_->ReleaseLease(lease_id_);
}

ArenaReadLease::ArenaReadLease(std::shared_ptr<Connection> conn,
                               std::shared_ptr<const ArenaMapping> arena, uint64_t lease_id,
                               uint64_t block_bytes, std::vector<uint64_t> offsets,
                               std::vector<HbmBlockRef> hbm)
    : hbm_(std::move(hbm)),
      conn_(std::move(conn)),
      arena_(std::move(arena)),
      lease_id_(lease_id),
      block_bytes_(block_bytes),
      offsets_(std::move(offsets)) {}

ArenaReadLease::~ArenaReadLease() {
  if (open_) (void)Release();
}

std::span<const std::byte> ArenaReadLease::block(size_t i) const {
  if (!open_ || i >= offsets_.size() || offsets_[i] == kExistsOffset) return {};
  return {arena_->base() + offsets_[i], block_bytes_};
}

HbmBlockRef ArenaReadLease::hbm(size_t i) const {
  if (!open_ || i >= hbm_.size()) return {};
  return hbm_[i];
}

Status ArenaReadLease::Release() {
  if (!open_) return Closed("released");
  open_ = false;
  if (lease_id_ == 0) return Status();
  return conn_->ReleaseLease(lease_id_);
}

}  // namespace kvtier::client_internal
