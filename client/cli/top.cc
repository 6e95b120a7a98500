#include "top.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "cli_format.h"
#include "table.h"

namespace kvtier::cli {
namespace {

using Align = Table::Align;

// Counters of the previous frame, for per-second rates.
struct Sample {
  bool valid = false;
  std::chrono::steady_clock::time_point at;
  uint64_t lookups = 0, lookup_keys = 0, lookup_hit_keys = 0, remote_pull_bytes = 0;
};

std::string PerSecond(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f/s", v);
  return buf;
}

Status Frame(Client& client, Sample* prev, std::ostream& out) {
  DaemonStats stats;
  if (Status s = client.Stats(&stats); !s.ok()) return s;
  std::vector<NamespaceEntry> namespaces;
  if (Status s = client.ListNamespaces(&namespaces); !s.ok()) return s;
  ClusterInfo cluster;
  if (Status s = client.Cluster(&cluster); !s.ok()) return s;

  const auto now = std::chrono::steady_clock::now();
  std::string lookup_rate = "-", hit_ratio = "-", pull_rate = "-";
  if (prev->valid) {
    const double secs = std::chrono::duration<double>(now - prev->at).count();
    if (secs > 0) {
      lookup_rate = PerSecond(static_cast<double>(stats.lookups - prev->lookups) / secs);
      pull_rate =
          FormatSize(static_cast<uint64_t>(
              static_cast<double>(stats.remote_pull_bytes - prev->remote_pull_bytes) / secs)) +
          "/s";
    }
    hit_ratio = FormatPercent(stats.lookup_hit_keys - prev->lookup_hit_keys,
                              stats.lookup_keys - prev->lookup_keys);
  }
  *prev = Sample{
      true, now, stats.lookups, stats.lookup_keys, stats.lookup_hit_keys, stats.remote_pull_bytes};

  Table about({{""}, {""}});
  about.AddRow({"node", stats.node_id + " (kvtierd " + stats.version + ", up " +
                            FormatDuration(stats.uptime_ms) + ")"});
  about.AddRow({"lookups", lookup_rate + ", hit ratio " + hit_ratio + " (last interval); " +
                               FormatPercent(stats.lookup_hit_keys, stats.lookup_keys) +
                               " since start"});
  about.AddRow({"leases", std::to_string(stats.leases)});
  if (cluster.enabled) {
    about.AddRow({"cluster", std::to_string(cluster.members.size()) + " members, " +
                                 cluster.membership + " (" + cluster.membership_status +
                                 "), pulled " + pull_rate});
  }
  about.HideHeader();
  about.Print(out);
  out << '\n';

  Table tiers({{"TIER"},
               {"USED", Align::kRight},
               {"CAPACITY", Align::kRight},
               {"USED%", Align::kRight},
               {"BLOCKS", Align::kRight},
               {"READ/S", Align::kRight},
               {"WRITE/S", Align::kRight},
               {"STATUS"}});
  for (const TierStats& t : stats.tiers) {
    tiers.AddRow({t.name, FormatSize(t.used_bytes), FormatSize(t.capacity_bytes),
                  FormatPercent(t.used_bytes, t.capacity_bytes), std::to_string(t.blocks),
                  FormatSize(static_cast<uint64_t>(t.read_bytes_per_s)),
                  FormatSize(static_cast<uint64_t>(t.write_bytes_per_s)),
                  t.status.empty() ? "ok" : t.status});
  }
  tiers.Print(out);

  // The hottest namespaces, by bytes held.
  std::sort(namespaces.begin(), namespaces.end(),
            [](const NamespaceEntry& a, const NamespaceEntry& b) { return a.bytes > b.bytes; });
  constexpr size_t kTopNamespaces = 5;
  if (!namespaces.empty()) {
    out << '\n';
    Table ns({{"NAMESPACE"}, {"MODEL"}, {"BLOCKS", Align::kRight}, {"BYTES", Align::kRight}});
    for (size_t i = 0; i < namespaces.size() && i < kTopNamespaces; ++i) {
      const NamespaceEntry& e = namespaces[i];
      ns.AddRow({NamespaceIdToHex(e.ns.id), e.layout.model_id.empty() ? "-" : e.layout.model_id,
                 std::to_string(e.blocks), FormatSize(e.bytes)});
    }
    ns.Print(out);
  }
  if (cluster.enabled) {
    out << '\n';
    Table peers({{"PEER"}, {"STATE"}, {"PULLED", Align::kRight}, {"ERRORS", Align::kRight}});
    for (const ClusterMemberInfo& m : cluster.members) {
      if (m.state == "self") continue;
      peers.AddRow({m.id, m.state, FormatSize(m.bytes_in), std::to_string(m.errors)});
    }
    peers.Print(out);
  }
  return Status();
}

}  // namespace

Status RunTop(Client& client, const TopArgs& args, std::ostream& out) {
  const int frames = args.iterations > 0 ? args.iterations : (args.terminal ? 0 : 1);
  Sample prev;
  for (int i = 0; frames == 0 || i < frames; ++i) {
    if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(args.interval_ms));
    if (args.terminal) out << "\x1b[H\x1b[2J";  // home, clear: redraw in place
    if (Status s = Frame(client, &prev, out); !s.ok()) return s;
    if (!args.terminal && (frames == 0 || i + 1 < frames)) out << "\n---\n";
    out.flush();
  }
  return Status();
}

}  // namespace kvtier::cli
