#include "commands.h"

#include <cstdio>
#include <string>

#include "cli_format.h"
#include "json_view.h"
#include "table.h"

namespace kvtier::cli {
namespace {

using Align = Table::Align;

void PrintJson(const nlohmann::json& value, std::ostream& out) { out << value.dump(2) << '\n'; }

Table TierTable(const std::vector<TierStats>& tiers) {
  Table table({{"TIER"},
               {"CAPACITY", Align::kRight},
               {"USED", Align::kRight},
               {"USED%", Align::kRight},
               {"BLOCKS", Align::kRight},
               {"HITS", Align::kRight},
               {"MISSES", Align::kRight},
               {"EVICTIONS", Align::kRight},
               {"READ/S", Align::kRight},
               {"WRITE/S", Align::kRight},
               {"STATUS"}});
  for (const auto& t : tiers) {
    table.AddRow({t.name, FormatSize(t.capacity_bytes), FormatSize(t.used_bytes),
                  FormatPercent(t.used_bytes, t.capacity_bytes), std::to_string(t.blocks),
                  std::to_string(t.hits), std::to_string(t.misses), std::to_string(t.evictions),
                  FormatSize(static_cast<uint64_t>(t.read_bytes_per_s)),
                  FormatSize(static_cast<uint64_t>(t.write_bytes_per_s)),
                  t.status.empty() ? "ok" : t.status});
  }
  return table;
}

// Shape fields are 0 in an "opaque" layout: show them as "-".
std::string CountOrDash(uint64_t n) { return n == 0 ? "-" : std::to_string(n); }

std::string RankOf(uint32_t rank, uint32_t size) {
  return std::to_string(rank) + "/" + std::to_string(size);
}

}  // namespace

Status ParseBlocksArgs(const std::string& ns_hex, uint32_t limit, BlocksArgs* out,
                       const std::string& tier) {
  BlocksArgs args;
  if (tier == "hbm") {
    args.tier = Tier::kHbm;
  } else if (tier == "dram") {
    args.tier = Tier::kDram;
  } else if (tier == "nvme") {
    args.tier = Tier::kNvme;
  } else if (!tier.empty()) {
    return Status(Status::Code::kInvalidArgument,
                  "blocks: --tier '" + tier + "' is not hbm, dram or nvme");
  }
  if (!ns_hex.empty()) {
    if (Status s = ParseNamespaceId(ns_hex, "--ns", &args.namespace_id); !s.ok()) return s;
  }
  args.limit = limit;
  *out = args;
  return Status();
}

Status ParseDropArgs(const std::string& ns_hex, bool all, const std::vector<std::string>& key_hex,
                     DropArgs* out) {
  DropArgs args;
  if (ns_hex.empty()) {
    return Status(Status::Code::kInvalidArgument, "drop: --ns is required");
  }
  if (Status s = ParseNamespaceId(ns_hex, "--ns", &args.namespace_id); !s.ok()) return s;
  if (all == !key_hex.empty()) {
    return Status(Status::Code::kInvalidArgument,
                  all ? "drop: give --all or keys, not both"
                      : "drop: give --all or at least one key (32 hex digits)");
  }
  args.all = all;
  args.keys.resize(key_hex.size());
  for (size_t i = 0; i < key_hex.size(); ++i) {
    if (Status s = ParseKey(key_hex[i], &args.keys[i]); !s.ok()) return s;
  }
  *out = std::move(args);
  return Status();
}

Status RunStatus(Client& client, bool json, std::ostream& out) {
  DaemonStats stats;
  if (Status s = client.Stats(&stats); !s.ok()) return s;
  if (json) {
    PrintJson(StatsToJson(stats, client.socket_path()), out);
    return Status();
  }
  Table about({{""}, {""}});
  about.AddRow({"node", stats.node_id});
  about.AddRow({"version", stats.version});
  about.AddRow({"uptime", FormatDuration(stats.uptime_ms)});
  about.AddRow({"socket", client.socket_path()});
  if (!stats.arena_pages.empty()) about.AddRow({"arena pages", stats.arena_pages});
  about.AddRow({"namespaces", std::to_string(stats.namespaces)});
  about.AddRow({"leases", std::to_string(stats.leases)});
  about.AddRow({"lookups", std::to_string(stats.lookups) + " (" +
                               std::to_string(stats.lookup_keys) + " keys, hit rate " +
                               FormatPercent(stats.lookup_hit_keys, stats.lookup_keys) + ")"});
  about.AddRow({"rejected writes", std::to_string(stats.rejected_writes)});
  about.HideHeader();
  about.Print(out);
  out << '\n';
  TierTable(stats.tiers).Print(out);
  return Status();
}

Status RunTiers(Client& client, bool json, std::ostream& out) {
  DaemonStats stats;
  if (Status s = client.Stats(&stats); !s.ok()) return s;
  if (json) {
    nlohmann::json tiers = nlohmann::json::array();
    for (const auto& tier : stats.tiers) tiers.push_back(TierToJson(tier));
    PrintJson(tiers, out);
    return Status();
  }
  TierTable(stats.tiers).Print(out);
  return Status();
}

Status RunNamespaces(Client& client, bool json, std::ostream& out) {
  std::vector<NamespaceEntry> entries;
  if (Status s = client.ListNamespaces(&entries); !s.ok()) return s;
  if (json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& entry : entries) list.push_back(NamespaceToJson(entry));
    PrintJson(list, out);
    return Status();
  }
  if (entries.empty()) {
    out << "no namespaces registered\n";
    return Status();
  }
  Table table({{"ID"},
               {"MODEL"},
               {"LAYERS", Align::kRight},
               {"HEADS", Align::kRight},
               {"HEAD SIZE", Align::kRight},
               {"DTYPE"},
               {"TOKENS/BLOCK", Align::kRight},
               {"TP", Align::kRight},
               {"PP", Align::kRight},
               {"LAYOUT"},
               {"BLOCK SIZE", Align::kRight},
               {"BLOCKS", Align::kRight},
               {"BYTES", Align::kRight}});
  for (const auto& e : entries) {
    const NamespaceLayout& l = e.layout;
    std::string model = l.model_id.empty() ? "-" : l.model_id;
    if (!l.model_revision.empty()) model += "@" + l.model_revision;
    table.AddRow({NamespaceIdToHex(e.ns.id), model, CountOrDash(l.num_layers),
                  CountOrDash(l.kv_heads), CountOrDash(l.head_size),
                  l.dtype.empty() ? "-" : l.dtype, CountOrDash(l.tokens_per_block),
                  RankOf(l.tp_rank, l.tp_size), RankOf(l.pp_rank, l.pp_size),
                  l.layout_tag.empty() ? "-" : l.layout_tag, FormatSize(e.ns.block_bytes),
                  std::to_string(e.blocks), FormatSize(e.bytes)});
  }
  table.Print(out);
  return Status();
}

Status RunBlocks(Client& client, const BlocksArgs& args, bool json, std::ostream& out) {
  std::vector<BlockEntry> blocks;
  bool truncated = false;
  if (Status s = client.ListBlocks(args.namespace_id, args.limit, &blocks, &truncated, args.tier);
      !s.ok()) {
    return s;
  }
  if (json) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& block : blocks) list.push_back(BlockToJson(block));
    PrintJson({{"blocks", std::move(list)}, {"truncated", truncated}}, out);
    return Status();
  }
  if (blocks.empty()) {
    out << "no blocks\n";
    return Status();
  }
  Table table({{"NS"},
               {"KEY"},
               {"TIER"},
               {"SIZE", Align::kRight},
               {"STATE"},
               {"READERS", Align::kRight},
               {"HITS", Align::kRight},
               {"AGE", Align::kRight}});
  for (const auto& b : blocks) {
    table.AddRow({NamespaceIdToHex(b.namespace_id), KeyToHex(b.key), TierName(b.tier),
                  FormatSize(b.bytes), b.state, std::to_string(b.readers), std::to_string(b.hits),
                  FormatDuration(b.age_ms)});
  }
  table.Print(out);
  if (truncated) {
    out << "(first " << blocks.size() << " blocks shown; raise --limit for more)\n";
  }
  return Status();
}

Status RunDrop(Client& client, const DropArgs& args, bool json, std::ostream& out) {
  DropResult result;
  Status s = args.all ? client.DropAll(args.namespace_id, &result)
                      : client.Drop(args.namespace_id, args.keys, &result);
  if (!s.ok()) return s;
  if (json) {
    PrintJson(DropToJson(args.namespace_id, result), out);
    return Status();
  }
  out << "dropped " << result.dropped << ", busy " << result.busy << ", missing " << result.missing
      << '\n';
  return Status();
}

Status RunCluster(Client& client, bool json, std::ostream& out) {
  ClusterInfo info;
  if (Status s = client.Cluster(&info); !s.ok()) return s;
  if (json) {
    PrintJson(ClusterToJson(info), out);
    return Status();
  }
  if (!info.enabled) {
    out << "node " << info.self_id << ": " << info.membership_status << '\n';
    return Status();
  }
  Table about({{""}, {""}});
  about.AddRow({"node", info.self_id});
  about.AddRow({"membership", info.membership + " (" + info.membership_status + ")"});
  about.AddRow({"roster version", std::to_string(info.roster_version)});
  about.AddRow({"transport", info.transport});
  about.AddRow({"directory", std::to_string(info.directory_entries) + " keys"});
  about.HideHeader();
  about.Print(out);
  out << '\n';
  Table members({{"ID"},
                 {"ADDRESS"},
                 {"SLOT", Align::kRight},
                 {"STATE"},
                 {"PULLED", Align::kRight},
                 {"BLOCKS", Align::kRight},
                 {"CALLS", Align::kRight},
                 {"ERRORS", Align::kRight},
                 {"P50", Align::kRight},
                 {"P99", Align::kRight},
                 {"LAST ERROR"}});
  auto ms = [](double v) {
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.2fms", v);
    return std::string(buf);
  };
  for (const ClusterMemberInfo& m : info.members) {
    const bool self = m.state == "self";
    members.AddRow({m.id, m.address, std::to_string(m.slot), m.state,
                    self ? "-" : FormatSize(m.bytes_in), self ? "-" : std::to_string(m.pulls),
                    self ? "-" : std::to_string(m.calls), self ? "-" : std::to_string(m.errors),
                    self || m.calls == 0 ? "-" : ms(m.latency_ms_p50),
                    self || m.calls == 0 ? "-" : ms(m.latency_ms_p99), m.last_error});
  }
  members.Print(out);
  return Status();
}

}  // namespace kvtier::cli
