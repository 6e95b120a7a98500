// Translation between kvtier.v1 messages and core types. Only server/service/ sees proto types.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "common/namespace_layout.h"
#include "kvtier/v1/kvtier.pb.h"
#include "server/store/block_store.h"

namespace kvtier {

grpc::Status ToGrpc(const absl::Status& status);
NamespaceLayout FromProto(const v1::NamespaceLayout& p);
void ToProto(const NamespaceLayout& layout, v1::NamespaceLayout* p);
v1::Tier ToProto(TierId tier);
void ToProto(const TierCounters& t, v1::TierStats* p);

}  // namespace kvtier
