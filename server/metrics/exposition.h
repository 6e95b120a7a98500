// ExpositionWriter: the Prometheus text exposition format, version 0.0.4 (what a scrape of
// /metrics reads). Knows nothing of kvtier or HTTP: families of samples in, text out.
//
//   # HELP kvtier_tier_used_bytes Bytes held in the tier.
//   # TYPE kvtier_tier_used_bytes gauge
//   kvtier_tier_used_bytes{tier="dram"} 1048576
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "server/metrics/latency_histogram.h"

namespace kvtier {

enum class MetricType { kCounter, kGauge, kHistogram };

// Label name/value pairs of one sample, in the order written. Values are escaped by the writer.
using MetricLabels = std::vector<std::pair<absl::string_view, absl::string_view>>;

class ExpositionWriter {
 public:
  // Starts a family: writes its # HELP and # TYPE lines. Its samples follow, before the next
  // family starts. Names follow Prometheus rules ([a-zA-Z_:][a-zA-Z0-9_:]*; counters end in
  // _total, units in the name: _bytes, _seconds).
  void Family(absl::string_view name, MetricType type, absl::string_view help);

  // One sample line of the current family (a counter or a gauge).
  void Sample(absl::string_view name, const MetricLabels& labels, double value);
  void Sample(absl::string_view name, const MetricLabels& labels, uint64_t value);

  // The samples of one histogram of family `name`: name_bucket{...,le="..."} (cumulative, the
  // last le="+Inf" equal to the count), name_sum and name_count.
  void Histogram(absl::string_view name, const MetricLabels& labels, const HistogramSnapshot& h);

  const std::string& text() const { return out_; }

 private:
  void SampleLine(absl::string_view name, const MetricLabels& labels, absl::string_view extra_label,
                  absl::string_view extra_value, absl::string_view value);

  std::string out_;
};

// A label value with \, " and newline escaped as the format asks.
std::string EscapeLabelValue(absl::string_view value);
// A sample value: integers as integers, +Inf/-Inf/NaN spelled as Prometheus spells them.
std::string FormatMetricValue(double value);
// Whether `name` is a valid metric (or label, without ':') name.
bool IsValidMetricName(absl::string_view name);

}  // namespace kvtier
