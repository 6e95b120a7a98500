// The metrics kvtierd exports, rendered from core types (store, cluster, latency histograms) into
// the Prometheus text format. docs/operations.md lists them with their meanings.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "server/cluster/cluster_node.h"
#include "server/metrics/latency_histogram.h"
#include "server/store/block_store.h"
#include "server/weights/weight_cache.h"

namespace kvtier {

// One scrape's inputs, read by the caller just before rendering.
struct MetricsSources {
  std::string node_id;
  std::string version;
  double uptime_seconds = 0;
  StoreStats store;
  // Tiers asked for but not kept by the store (an absent HBM tier), for kvtier_tier_up only.
  std::vector<TierCounters> extra_tiers;
  std::optional<ClusterView> cluster;     // absent on a single node
  std::optional<WeightCounters> weights;  // the weight cache (issue 6)
  // Request durations by method name ("lookup", "acquire"), as handled by the service.
  std::vector<std::pair<std::string, HistogramSnapshot>> request_durations;
};

// The text of /metrics (Prometheus exposition format 0.0.4).
std::string RenderKvtierMetrics(const MetricsSources& sources);

}  // namespace kvtier
