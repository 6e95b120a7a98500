// The zero-copy leases: spans into the mapped arena, ended through the Connection that made them.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "client/src/arena_mapping.h"
#include "client/src/connection.h"
#include "kvtier/client.h"

namespace kvtier::client_internal {

// Slots reserved by Allocate. offsets[i] == kExistsOffset: keys[i] needs no write.
class ArenaWriteLease final : public WriteLease {
 public:
  ArenaWriteLease(std::shared_ptr<Connection> conn, std::shared_ptr<const ArenaMapping> arena,
                  uint64_t lease_id, uint64_t block_bytes, std::vector<uint64_t> offsets);
  ~ArenaWriteLease() override;  // aborts when still open (best effort)

  size_t size() const override { return offsets_.size(); }
  std::span<std::byte> block(size_t i) override;
  Status Commit() override;
  Status Abort() override;

 private:
  std::shared_ptr<Connection> conn_;
  std::shared_ptr<const ArenaMapping> arena_;
  uint64_t lease_id_;  // 0: the daemon made no lease (nothing to write)
  uint64_t block_bytes_;
  std::vector<uint64_t> offsets_;
  bool open_ = true;
};

// Blocks pinned by Acquire: the leading present prefix of the keys asked for.
class ArenaReadLease final : public ReadLease {
 public:
  // `hbm`: empty, or one per offset (AcquireReadTiered); offsets[i] is kExistsOffset for a
  // block answered from HBM only.
  ArenaReadLease(std::shared_ptr<Connection> conn, std::shared_ptr<const ArenaMapping> arena,
                 uint64_t lease_id, uint64_t block_bytes, std::vector<uint64_t> offsets,
                 std::vector<HbmBlockRef> hbm = {});
  ~ArenaReadLease() override;  // releases when still open (best effort)

  size_t size() const override { return open_ ? offsets_.size() : 0; }
  std::span<const std::byte> block(size_t i) const override;
  HbmBlockRef hbm(size_t i) const override;
  Status Release() override;

 private:
  std::vector<HbmBlockRef> hbm_;
  std::shared_ptr<Connection> conn_;
  std::shared_ptr<const ArenaMapping> arena_;
  uint64_t lease_id_;  // 0: nothing acquired
  uint64_t block_bytes_;
  std::vector<uint64_t> offsets_;
  bool open_ = true;
};

}  // namespace kvtier::client_internal
