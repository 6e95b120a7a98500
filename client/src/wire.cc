#include "client/src/wire.h"

#include <cstring>

#include "common/block_key.h"

namespace kvtier::client_internal {

static_assert(sizeof(BlockKey) == kKeyBytes, "BlockKey must be two packed uint64s");

Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return Status();
  return Status(static_cast<Status::Code>(status.error_code()), status.error_message());
}

Status FromAbsl(const absl::Status& status) {
  if (status.ok()) return Status();
  return Status(static_cast<Status::Code>(status.code()), std::string(status.message()));
}

std::string EncodeBlockKeys(std::span<const BlockKey> keys) {
  // BlockKey and Key128 are both {lo, hi} of uint64 on a little-endian host: the wire form is the
  // array's bytes.
  return std::string(reinterpret_cast<const char*>(keys.data()), keys.size() * kKeyBytes);
}

std::string EncodeBlockKey(const BlockKey& key) { return EncodeBlockKeys({&key, 1}); }

Status DecodeBlockKey(const std::string& bytes, BlockKey* out) {
  if (bytes.size() != kKeyBytes) {
    return Status(
        Status::Code::kInternal,
        "kvtierd sent a block key of " + std::to_string(bytes.size()) + " bytes (expected 16)");
  }
  std::memcpy(&out->lo, bytes.data(), 8);
  std::memcpy(&out->hi, bytes.data() + 8, 8);
  return Status();
}

Tier FromProtoTier(int tier) {
  switch (tier) {
    case v1::TIER_HBM:
      return Tier::kHbm;
    case v1::TIER_DRAM:
      return Tier::kDram;
    case v1::TIER_NVME:
      return Tier::kNvme;
    case v1::TIER_REMOTE:
      return Tier::kRemote;
    default:
      return Tier::kNone;
  }
}

void ToProtoLayout(const NamespaceLayout& in, v1::NamespaceLayout* out) {
  out->set_model_id(in.model_id);
  out->set_model_revision(in.model_revision);
  out->set_num_layers(in.num_layers);
  out->set_kv_heads(in.kv_heads);
  out->set_head_size(in.head_size);
  out->set_dtype(in.dtype);
  out->set_tokens_per_block(in.tokens_per_block);
  out->set_tp_rank(in.tp_rank);
  out->set_tp_size(in.tp_size);
  out->set_pp_rank(in.pp_rank);
  out->set_pp_size(in.pp_size);
  out->set_layout_tag(in.layout_tag);
  out->set_block_bytes(in.block_bytes);
}

NamespaceLayout FromProtoLayout(const v1::NamespaceLayout& in) {
  NamespaceLayout out;
  out.model_id = in.model_id();
  out.model_revision = in.model_revision();
  out.num_layers = in.num_layers();
  out.kv_heads = in.kv_heads();
  out.head_size = in.head_size();
  out.dtype = in.dtype();
  out.tokens_per_block = in.tokens_per_block();
  out.tp_rank = in.tp_rank();
  out.tp_size = in.tp_size();
  out.pp_rank = in.pp_rank();
  out.pp_size = in.pp_size();
  out.layout_tag = in.layout_tag();
  out.block_bytes = in.block_bytes();
  return out;
}

TierStats FromProtoTierStats(const v1::TierStats& in) {
  TierStats out;
  out.name = in.name();
  out.capacity_bytes = in.capacity_bytes();
  out.used_bytes = in.used_bytes();
  out.blocks = in.blocks();
  out.hits = in.hits();
  out.misses = in.misses();
  out.evictions = in.evictions();
  out.bytes_in = in.bytes_in();
  out.bytes_out = in.bytes_out();
  out.status = in.status().empty() ? "ok" : in.status();
  out.read_bytes_per_s = in.read_bytes_per_s();
  out.write_bytes_per_s = in.write_bytes_per_s();
  return out;
}

DaemonStats FromProtoStats(const v1::StatsResponse& in) {
  DaemonStats out;
  out.node_id = in.node_id();
  out.version = in.version();
  out.uptime_ms = in.uptime_ms();
  out.arena_pages = in.arena_pages();
  out.tiers.reserve(in.tiers_size());
  for (const auto& tier : in.tiers()) out.tiers.push_back(FromProtoTierStats(tier));
  out.namespaces = in.namespaces();
  out.leases = in.leases();
  out.lookups = in.lookups();
  out.lookup_keys = in.lookup_keys();
  out.lookup_hit_keys = in.lookup_hit_keys();
  out.rejected_writes = in.rejected_writes();
  out.remote_hit_keys = in.remote_hit_keys();
  out.remote_pulls = in.remote_pulls();
  out.remote_pull_bytes = in.remote_pull_bytes();
  out.remote_pull_failures = in.remote_pull_failures();
  return out;
}

ClusterInfo FromProtoCluster(const v1::ClusterStatusResponse& in) {
  ClusterInfo out;
  out.enabled = in.enabled();
  out.self_id = in.self_id();
  out.membership = in.membership();
  out.membership_status = in.membership_status();
  out.roster_version = in.roster_version();
  out.transport = in.transport();
  out.directory_entries = in.directory_entries();
  out.stale_roster_rejects = in.stale_roster_rejects();
  for (const auto& m : in.members()) {
    ClusterMemberInfo info;
    info.id = m.id();
    info.address = m.address();
    info.slot = m.slot();
    info.state = m.state();
    info.bytes_in = m.bytes_in();
    info.pulls = m.pulls();
    info.calls = m.calls();
    info.errors = m.errors();
    info.latency_ms_p50 = m.latency_ms_p50();
    info.latency_ms_p99 = m.latency_ms_p99();
    info.last_error = m.last_error();
    out.members.push_back(std::move(info));
  }
  return out;
}

}  // namespace kvtier::client_internal
