#include "json_view.h"

#include "cli_format.h"

namespace kvtier::cli {

nlohmann::json TierToJson(const TierStats& tier) {
  return {
      {"name", tier.name},
      {"capacity_bytes", tier.capacity_bytes},
      {"used_bytes", tier.used_bytes},
      {"blocks", tier.blocks},
      {"hits", tier.hits},
      {"misses", tier.misses},
      {"evictions", tier.evictions},
      {"bytes_in", tier.bytes_in},
      {"bytes_out", tier.bytes_out},
      {"status", tier.status},
      {"read_bytes_per_s", tier.read_bytes_per_s},
      {"write_bytes_per_s", tier.write_bytes_per_s},
  };
}

nlohmann::json StatsToJson(const DaemonStats& stats, const std::string& socket_path) {
  nlohmann::json tiers = nlohmann::json::array();
  for (const auto& tier : stats.tiers) tiers.push_back(TierToJson(tier));
  return {
      {"node_id", stats.node_id},
      {"version", stats.version},
      {"socket", socket_path},
      {"uptime_ms", stats.uptime_ms},
      {"arena_pages", stats.arena_pages},
      {"tiers", std::move(tiers)},
      {"namespaces", stats.namespaces},
      {"leases", stats.leases},
      {"lookups", stats.lookups},
      {"lookup_keys", stats.lookup_keys},
      {"lookup_hit_keys", stats.lookup_hit_keys},
      {"rejected_writes", stats.rejected_writes},
      {"remote_hit_keys", stats.remote_hit_keys},
      {"remote_pulls", stats.remote_pulls},
      {"remote_pull_bytes", stats.remote_pull_bytes},
      {"remote_pull_failures", stats.remote_pull_failures},
  };
}

nlohmann::json ClusterToJson(const ClusterInfo& info) {
  nlohmann::json members = nlohmann::json::array();
  for (const ClusterMemberInfo& m : info.members) {
    members.push_back({
        {"id", m.id},
        {"address", m.address},
        {"state", m.state},
        {"slot", m.slot},
        {"bytes_in", m.bytes_in},
        {"pulls", m.pulls},
        {"calls", m.calls},
        {"errors", m.errors},
        {"latency_ms_p50", m.latency_ms_p50},
        {"latency_ms_p99", m.latency_ms_p99},
        {"last_error", m.last_error},
    });
  }
  return {
      {"enabled", info.enabled},
      {"self", info.self_id},
      {"membership", info.membership},
      {"membership_status", info.membership_status},
      // A string, like other 64-bit identifiers here, so no JSON reader loses bits.
      {"roster_version", std::to_string(info.roster_version)},
      {"transport", info.transport},
      {"directory_entries", info.directory_entries},
      {"stale_roster_rejects", info.stale_roster_rejects},
      {"members", std::move(members)},
  };
}

nlohmann::json NamespaceToJson(const NamespaceEntry& entry) {
  const NamespaceLayout& l = entry.layout;
  return {
      {"id", NamespaceIdToHex(entry.ns.id)},
      {"model_id", l.model_id},
      {"model_revision", l.model_revision},
      {"num_layers", l.num_layers},
      {"kv_heads", l.kv_heads},
      {"head_size", l.head_size},
      {"dtype", l.dtype},
      {"tokens_per_block", l.tokens_per_block},
      {"tp_rank", l.tp_rank},
      {"tp_size", l.tp_size},
      {"pp_rank", l.pp_rank},
      {"pp_size", l.pp_size},
      {"layout_tag", l.layout_tag},
      {"block_bytes", entry.ns.block_bytes},
      {"blocks", entry.blocks},
      {"bytes", entry.bytes},
  };
}

nlohmann::json BlockToJson(const BlockEntry& block) {
  return {
      {"namespace_id", NamespaceIdToHex(block.namespace_id)},
      {"key", KeyToHex(block.key)},
      {"tier", TierName(block.tier)},
      {"bytes", block.bytes},
      {"state", block.state},
      {"readers", block.readers},
      {"hits", block.hits},
      {"age_ms", block.age_ms},
  };
}

nlohmann::json DropToJson(uint64_t namespace_id, const DropResult& result) {
  return {
      {"namespace_id", NamespaceIdToHex(namespace_id)},
      {"dropped", result.dropped},
      {"busy", result.busy},
      {"missing", result.missing},
  };
}

}  // namespace kvtier::cli
