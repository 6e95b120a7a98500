#include "client/src/client_impl.h"

#include "client/src/wire.h"

namespace kvtier {

Status Client::Connect(const ClientOptions& options, std::unique_ptr<Client>* out) {
  if (out == nullptr) return Status(Status::Code::kInvalidArgument, "Connect: out is null");
  std::shared_ptr<client_internal::Connection> conn;
  if (Status s = client_internal::Connection::Open(options, &conn); !s.ok()) return s;
  *out = std::make_unique<client_internal::ClientImpl>(std::move(conn));
  return Status();
}

namespace client_internal {
namespace {

Status NullOutput(const char* call) {
  return Status(Status::Code::kInvalidArgument, std::string(call) + ": output pointer is null");
}

}  // namespace

Status ClientImpl::RegisterNamespace(const NamespaceLayout& layout, Namespace* out) {
  if (out == nullptr) return NullOutput("RegisterNamespace");
  v1::RegisterNamespaceRequest request;
  ToProtoLayout(layout, request.mutable_layout());
  v1::RegisterNamespaceResponse response;
  grpc::ClientContext context;
  conn_->Prepare(&context);
  if (Status s = conn_->CallStatus(conn_->stub().RegisterNamespace(&context, request, &response));
      !s.ok()) {
    return s;
  }
  out->id = response.namespace_id();
  out->block_bytes = response.block_bytes();
  return Status();
}

Status ClientImpl::Prefetch(uint64_t namespace_id, std::span<const BlockKey> keys,
                            size_t* present) {
  v1::PrefetchRequest request;
  request.set_namespace_id(namespace_id);
  request.set_keys(EncodeBlockKeys(keys));
  v1::PrefetchResponse response;
  grpc::ClientContext context;
  conn_->Prepare(&context);
  if (Status s = conn_->CallStatus(conn_->stub().Prefetch(&context, request, &response)); !s.ok()) {
    return s;
  }
  if (present != nullptr) *present = response.present();
  return Status();
}

Status ClientImpl::Lookup(uint64_t namespace_id, std::span<const BlockKey> keys,
                          LookupResult* out) {
  if (out == nullptr) return NullOutput("Lookup");
  if (keys.empty()) {
    *out = LookupResult();
    return Status();
  }
  v1::LookupRequest request;
  request.set_namespace_id(namespace_id);
  request.set_keys(EncodeBlockKeys(keys));
  v1::LookupResponse response;
  grpc::ClientContext context;
  conn_->Prepare(&context);
  if (Status s = conn_->CallStatus(conn_->stub().LookupPrefix(&context, request, &response));
      !s.ok()) {
    return s;
  }
  LookupResult result;
  result.prefix_blocks = response.prefix_blocks();
  result.tiers.reserve(response.tiers_size());
  for (int tier : response.tiers()) result.tiers.push_back(FromProtoTier(tier));
  *out = std::move(result);
  return Status();
}

Status ClientImpl::DropRequest(uint64_t namespace_id, std::span<const BlockKey> keys, bool all,
                               DropResult* out) {
  v1::DropRequest request;
  request.set_namespace_id(namespace_id);
  request.set_keys(EncodeBlockKeys(keys));
  request.set_all(all);
  v1::DropResponse response;
  grpc::ClientContext context;
  conn_->Prepare(&context);
  if (Status s = conn_->CallStatus(conn_->stub().Drop(&context, request, &response)); !s.ok()) {
    return s;
  }
  if (out != nullptr) {
    out->dropped = response.dropped();
    out->busy = response.busy();
    out->missing = response.missing();
  }
  return Status();
}

Status ClientImpl::Drop(uint64_t namespace_id, std::span<const BlockKey> keys, DropResult* out) {
  if (keys.empty()) {
    if (out != nullptr) *out = DropResult();
    return Status();
  }
  return DropRequest(namespace_id, keys, /*all=*/false, out);
}

Status ClientImpl::DropAll(uint64_t namespace_id, DropResult* out) {
  return DropRequest(namespace_id, {}, /*all=*/true, out);
}

Status ClientImpl::Stats(DaemonStats* out) {
  if (out == nullptr) return NullOutput("Stats");
  v1::StatsResponse response;
  grpc::ClientContext context;
  conn_->Prepare(&context);
  if (Status s = conn_->CallStatus(conn_->stub().Stats(&context, v1::StatsRequest(), &response));
      !s.ok()) {
    return s;
  }
  *out = FromProtoStats(response);
  return Status();
}

Status ClientImpl::Cluster(ClusterInfo* out) {
  if (out == nullptr) return NullOutput("Cluster");
  v1::ClusterStatusResponse response;
  grpc::ClientContext context;
  conn_->Prepare(&context);
  if (Status s = conn_->CallStatus(
          conn_->stub().ClusterStatus(&context, v1::ClusterStatusRequest(), &response));
      !s.ok()) {
    return s;
  }
  *out = FromProtoCluster(response);
  return Status();
}

Status ClientImpl::ListNamespaces(std::vector<NamespaceEntry>* out) {
  if (out == nullptr) return NullOutput("ListNamespaces");
  v1::ListNamespacesResponse response;
  grpc::ClientContext context;
  conn_->Prepare(&context);
  if (Status s = conn_->CallStatus(
          conn_->stub().ListNamespaces(&context, v1::ListNamespacesRequest(), &response));
      !s.ok()) {
    return s;
  }
  std::vector<NamespaceEntry> entries;
  entries.reserve(response.namespaces_size());
  for (const auto& info : response.namespaces()) {
    NamespaceEntry entry;
    entry.ns.id = info.namespace_id();
    entry.ns.block_bytes = info.block_bytes();
    entry.layout = FromProtoLayout(info.layout());
    entry.blocks = info.blocks();
    entry.bytes = info.bytes();
    entries.push_back(std::move(entry));
  }
  *out = std::move(entries);
  return Status();
}

Status ClientImpl::ListBlocks(uint64_t namespace_id, uint32_t limit, std::vector<BlockEntry>* out,
                              bool* truncated, Tier tier) {
  if (out == nullptr) return NullOutput("ListBlocks");
  v1::ListBlocksRequest request;
  request.set_namespace_id(namespace_id);
  request.set_limit(limit);
  request.set_tier(static_cast<v1::Tier>(static_cast<int>(tier)));
  v1::ListBlocksResponse response;
  grpc::ClientContext context;
  conn_->Prepare(&context);
  if (Status s = conn_->CallStatus(conn_->stub().ListBlocks(&context, request, &response));
      !s.ok()) {
    return s;
  }
  std::vector<BlockEntry> entries;
  entries.reserve(response.blocks_size());
  for (const auto& info : response.blocks()) {
    BlockEntry entry;
    entry.namespace_id = info.namespace_id();
    if (Status s = DecodeBlockKey(info.key(), &entry.key); !s.ok()) return s;
    entry.tier = FromProtoTier(info.tier());
    entry.bytes = info.bytes();
    entry.state = info.state();
    entry.readers = info.readers();
    entry.hits = info.hits();
    entry.age_ms = info.age_ms();
    entries.push_back(std::move(entry));
  }
  *out = std::move(entries);
  if (truncated != nullptr) *truncated = response.truncated();
  return Status();
}

}  // namespace client_internal
}  // namespace kvtier
