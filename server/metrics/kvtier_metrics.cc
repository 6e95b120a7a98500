#include "server/metrics/kvtier_metrics.h"

#include "server/metrics/exposition.h"

namespace kvtier {
namespace {

using Field = uint64_t TierCounters::*;

struct TierMetric {
  const char* name;
  MetricType type;
  const char* help;
  Field field;
};

constexpr TierMetric kTierMetrics[] = {
    {"kvtier_tier_capacity_bytes", MetricType::kGauge, "Configured capacity of the tier in bytes.",
     &TierCounters::capacity_bytes},
    {"kvtier_tier_used_bytes", MetricType::kGauge,
     "Bytes the tier holds (blocks stored and slots reserved for writes in progress).",
     &TierCounters::used_bytes},
    {"kvtier_tier_blocks", MetricType::kGauge, "Blocks stored in the tier.", &TierCounters::blocks},
    {"kvtier_tier_hits_total", MetricType::kCounter,
     "Blocks read from the tier: for dram, acquired keys found there; for nvme, blocks "
     "promoted (read back into DRAM).",
     &TierCounters::hits},
    {"kvtier_tier_misses_total", MetricType::kCounter,
     "Block reads the tier could not serve: for dram, acquired keys not held; for nvme, "
     "promotions that failed (I/O error or checksum).",
     &TierCounters::misses},
    {"kvtier_tier_evictions_total", MetricType::kCounter,
     "Blocks evicted from the tier: for dram, to make room (demoted or dropped); for nvme, "
     "blocks lost when their region was reused.",
     &TierCounters::evictions},
    {"kvtier_tier_bytes_in_total", MetricType::kCounter,
     "Bytes written into the tier (dram: client writes; nvme: demotions).",
     &TierCounters::bytes_in},
    {"kvtier_tier_bytes_out_total", MetricType::kCounter,
     "Bytes read out of the tier (dram: acquired by clients; nvme: promotions).",
     &TierCounters::bytes_out},
};

void StoreCounter(ExpositionWriter& w, const char* name, MetricType type, const char* help,
                  uint64_t value) {
  w.Family(name, type, help);
  w.Sample(name, {}, value);
}

void WriteWeights(ExpositionWriter& w, const WeightCounters& c) {
  StoreCounter(w, "kvtier_weights_origin_bytes_total", MetricType::kCounter,
               "Bytes of weight chunks this daemon read from their origins.", c.origin_bytes);
  StoreCounter(w, "kvtier_weights_origin_reads_total", MetricType::kCounter,
               "Weight chunks this daemon read from their origins.", c.origin_reads);
  StoreCounter(w, "kvtier_weights_origin_errors_total", MetricType::kCounter,
               "Origin reads of weight chunks that failed.", c.origin_errors);
  StoreCounter(w, "kvtier_weights_peer_bytes_total", MetricType::kCounter,
               "Bytes of weight chunks this daemon pulled from other daemons.", c.peer_bytes);
  StoreCounter(w, "kvtier_weights_peer_fetch_errors_total", MetricType::kCounter,
               "Chunk owners that failed to fetch a chunk asked of them.", c.peer_fetch_errors);
  StoreCounter(w, "kvtier_weights_local_bytes_total", MetricType::kCounter,
               "Bytes of weight reads answered from chunks this daemon already held.",
               c.local_bytes);
  StoreCounter(w, "kvtier_weights_disk_loads_total", MetricType::kCounter,
               "Weight chunks read back from the weights disk.", c.disk_loads);
  StoreCounter(w, "kvtier_weights_pinned_bytes", MetricType::kGauge,
               "DRAM bytes of weight chunks held out of KV churn's reach.", c.pinned_bytes);
  StoreCounter(w, "kvtier_weights_capacity_bytes", MetricType::kGauge,
               "DRAM the weight cache may hold (--weight-capacity).", c.capacity);
  StoreCounter(w, "kvtier_weights_files", MetricType::kGauge, "Weight files known to the cache.",
               c.files);
}

void WriteCluster(ExpositionWriter& w, const ClusterView& v) {
  StoreCounter(w, "kvtier_cluster_roster_version", MetricType::kGauge,
               "Version of the cluster roster this daemon holds (0: none yet).", v.roster_version);
  StoreCounter(w, "kvtier_cluster_members", MetricType::kGauge,
               "Members of the roster, this daemon included.", v.members.size());
  StoreCounter(w, "kvtier_cluster_directory_entries", MetricType::kGauge,
               "Entries of the directory this daemon keeps for the keys it owns.",
               v.directory_entries);
  StoreCounter(w, "kvtier_remote_hit_keys_total", MetricType::kCounter,
               "Looked-up keys found on other daemons (past the local prefix).", v.remote_hit_keys);
  StoreCounter(w, "kvtier_remote_pulls_total", MetricType::kCounter,
               "Blocks pulled from other daemons into local DRAM.", v.remote_pulls);
  StoreCounter(w, "kvtier_remote_pull_bytes_total", MetricType::kCounter,
               "Bytes pulled from other daemons into local DRAM.", v.remote_pull_bytes);
  StoreCounter(w, "kvtier_remote_pull_failures_total", MetricType::kCounter,
               "Pulls from other daemons that failed (the block is then a miss).",
               v.remote_pull_failures);
  StoreCounter(w, "kvtier_stale_roster_rejects_total", MetricType::kCounter,
               "Peer requests refused because the two daemons' rosters differed.",
               v.stale_roster_rejects);

  struct PeerMetric {
    const char* name;
    MetricType type;
    const char* help;
    uint64_t MemberView::*field;
  };
  static constexpr PeerMetric kPeerMetrics[] = {
      {"kvtier_peer_bytes_in_total", MetricType::kCounter, "Bytes pulled from the peer.",
       &MemberView::bytes_in},
      {"kvtier_peer_pulls_total", MetricType::kCounter, "Blocks pulled from the peer.",
       &MemberView::pulls},
      {"kvtier_peer_calls_total", MetricType::kCounter, "Control calls made to the peer.",
       &MemberView::calls},
      {"kvtier_peer_errors_total", MetricType::kCounter,
       "Calls and transfers to the peer that failed (timeouts included).", &MemberView::errors},
  };
  for (const PeerMetric& m : kPeerMetrics) {
    w.Family(m.name, m.type, m.help);
    for (const MemberView& member : v.members) {
      if (member.state == "self") continue;
      w.Sample(m.name, {{"peer", member.member.id}}, member.*m.field);
    }
  }
  w.Family("kvtier_peer_up", MetricType::kGauge,
           "1 when the peer answered its last call, 0 when unreachable or not contacted yet.");
  for (const MemberView& member : v.members) {
    if (member.state == "self") continue;
    w.Sample("kvtier_peer_up", {{"peer", member.member.id}},
             static_cast<uint64_t>(member.state == "alive" ? 1 : 0));
  }
}

}  // namespace

std::string RenderKvtierMetrics(const MetricsSources& s) {
  ExpositionWriter w;
  w.Family("kvtier_build_info", MetricType::kGauge,
           "Always 1; the labels name the daemon's version and node id.");
  w.Sample("kvtier_build_info", {{"version", s.version}, {"node", s.node_id}}, uint64_t{1});
  w.Family("kvtier_uptime_seconds", MetricType::kGauge, "Seconds since the daemon started.");
  w.Sample("kvtier_uptime_seconds", {}, s.uptime_seconds);

  for (const TierMetric& m : kTierMetrics) {
    w.Family(m.name, m.type, m.help);
    for (const TierCounters& t : s.store.tiers) w.Sample(m.name, {{"tier", t.name}}, t.*m.field);
  }
  w.Family("kvtier_tier_up", MetricType::kGauge,
           "1 when the tier serves normally, 0 when degraded or absent (kvtier tiers says why).");
  for (const auto* tiers : {&s.store.tiers, &s.extra_tiers}) {
    for (const TierCounters& t : *tiers) {
      w.Sample("kvtier_tier_up", {{"tier", t.name}}, static_cast<uint64_t>(t.status == "ok"));
    }
  }

  StoreCounter(w, "kvtier_leases", MetricType::kGauge,
               "Leases held by clients (blocks pinned for reading or reserved for writing).",
               s.store.leases);
  StoreCounter(w, "kvtier_namespaces", MetricType::kGauge, "Registered namespaces.",
               s.store.namespaces);
  StoreCounter(w, "kvtier_lookups_total", MetricType::kCounter, "Lookup requests handled.",
               s.store.lookups);
  StoreCounter(w, "kvtier_lookup_keys_total", MetricType::kCounter,
               "Keys asked for by lookup requests.", s.store.lookup_keys);
  StoreCounter(w, "kvtier_lookup_hit_keys_total", MetricType::kCounter,
               "Looked-up keys found locally (in the cached prefix).", s.store.lookup_hit_keys);
  StoreCounter(w, "kvtier_rejected_writes_total", MetricType::kCounter,
               "Allocate requests refused because DRAM had no room left that could be evicted.",
               s.store.rejected_writes);
  StoreCounter(w, "kvtier_expired_leases_total", MetricType::kCounter,
               "Leases ended by the reaper because their holder did not release them in time.",
               s.store.expired_leases);

  if (s.cluster) WriteCluster(w, *s.cluster);
  if (s.weights) WriteWeights(w, *s.weights);

  w.Family("kvtier_request_duration_seconds", MetricType::kHistogram,
           "Time from a request's arrival at the service to its answer, by method.");
  for (const auto& [method, histogram] : s.request_durations) {
    w.Histogram("kvtier_request_duration_seconds", {{"method", method}}, histogram);
  }
  return w.text();
}

}  // namespace kvtier
