// Translations between the public client types and the kvtier.v1 proto messages / gRPC statuses.
// Internal to the client library: proto and gRPC types stop here and in connection/client_impl.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"
#include "kvtier/client.h"
#include "kvtier/v1/kvtier.pb.h"

namespace kvtier::client_internal {

// Offset the daemon answers for a key that needs no write (already present or being written).
inline constexpr uint64_t kExistsOffset = ~0ULL;

// Same code number, same message.
Status FromGrpc(const grpc::Status& status);
Status FromAbsl(const absl::Status& status);

// N keys as N x 16 little-endian bytes (lo then hi).
std::string EncodeBlockKeys(std::span<const BlockKey> keys);
std::string EncodeBlockKey(const BlockKey& key);
// One 16-byte key; INTERNAL (the daemon broke the contract) when `bytes` is not 16 long.
Status DecodeBlockKey(const std::string& bytes, BlockKey* out);

Tier FromProtoTier(int tier);

void ToProtoLayout(const NamespaceLayout& in, v1::NamespaceLayout* out);
NamespaceLayout FromProtoLayout(const v1::NamespaceLayout& in);

TierStats FromProtoTierStats(const v1::TierStats& in);
DaemonStats FromProtoStats(const v1::StatsResponse& in);
ClusterInfo FromProtoCluster(const v1::ClusterStatusResponse& in);

}  // namespace kvtier::client_internal
