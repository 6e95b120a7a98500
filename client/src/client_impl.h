// ClientImpl: the Client behind Client::Connect. Control calls are plain gRPC translations
// (client_impl.cc); the data path (Save/Load and the leases) is in data_path.cc.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "client/src/connection.h"
#include "kvtier/client.h"

namespace kvtier::client_internal {

class ClientImpl final : public Client {
 public:
  explicit ClientImpl(std::shared_ptr<Connection> conn) : conn_(std::move(conn)) {}

  Status RegisterNamespace(const NamespaceLayout& layout, Namespace* out) override;
  Status Lookup(uint64_t namespace_id, std::span<const BlockKey> keys, LookupResult* out) override;

  Status Save(const Namespace& ns, std::span<const BlockKey> keys,
              std::span<const void* const> blocks, size_t* saved, BlockKey parent) override;
  Status Load(const Namespace& ns, std::span<const BlockKey> keys, std::span<void* const> blocks,
              size_t* loaded) override;
  Status BeginWrite(const Namespace& ns, std::span<const BlockKey> keys, BlockKey parent,
                    std::unique_ptr<WriteLease>* out) override;
  Status AcquireRead(const Namespace& ns, std::span<const BlockKey> keys,
                     std::unique_ptr<ReadLease>* out) override;
  Status AcquireReadTiered(const Namespace& ns, std::span<const BlockKey> keys,
                           std::unique_ptr<ReadLease>* out) override;
  Status HbmTier(HbmTierInfo* out) override;

  Status Drop(uint64_t namespace_id, std::span<const BlockKey> keys, DropResult* out) override;
  Status DropAll(uint64_t namespace_id, DropResult* out) override;

  Status Stats(DaemonStats* out) override;
  Status Cluster(ClusterInfo* out) override;
  Status ListNamespaces(std::vector<NamespaceEntry>* out) override;
  Status ListBlocks(uint64_t namespace_id, uint32_t limit, std::vector<BlockEntry>* out,
                    bool* truncated, Tier tier) override;
  Status Prefetch(uint64_t namespace_id, std::span<const BlockKey> keys, size_t* present) override;

  const std::string& socket_path() const override { return conn_->socket_path(); }

 private:
  Status Acquire(const Namespace& ns, std::span<const BlockKey> keys, bool accept_hbm,
                 std::unique_ptr<ReadLease>* out);
  Status DropRequest(uint64_t namespace_id, std::span<const BlockKey> keys, bool all,
                     DropResult* out);

  std::shared_ptr<Connection> conn_;
};

}  // namespace kvtier::client_internal
