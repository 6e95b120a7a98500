#include "server/metrics/exposition.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "server/metrics/kvtier_metrics.h"

namespace kvtier {
namespace {

std::vector<std::string> Lines(const std::string& text) {
  EXPECT_TRUE(text.empty() || text.back() == '\n') << "the exposition ends with a newline";
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  return lines;
}

TEST(ExpositionTest, FamilyWritesHelpAndTypeThenSamples) {
  ExpositionWriter w;
  w.Family("kvtier_tier_used_bytes", MetricType::kGauge, "Bytes held.");
  w.Sample("kvtier_tier_used_bytes", {{"tier", "dram"}}, uint64_t{1048576});
  w.Sample("kvtier_tier_used_bytes", {{"tier", "nvme"}}, uint64_t{0});
  w.Family("kvtier_lookups_total", MetricType::kCounter, "Lookups.");
  w.Sample("kvtier_lookups_total", {}, uint64_t{7});
  EXPECT_EQ(w.text(),
            "# HELP kvtier_tier_used_bytes Bytes held.\n"
            "# TYPE kvtier_tier_used_bytes gauge\n"
            "kvtier_tier_used_bytes{tier=\"dram\"} 1048576\n"
            "kvtier_tier_used_bytes{tier=\"nvme\"} 0\n"
            "# HELP kvtier_lookups_total Lookups.\n"
            "# TYPE kvtier_lookups_total counter\n"
            "kvtier_lookups_total 7\n");
}

TEST(ExpositionTest, LabelValuesAndHelpAreEscaped) {
  EXPECT_EQ(EscapeLabelValue(R"(a"b\c)"
                             "\n"
                             "d"),
            R"(a\"b\\c\nd)");
  ExpositionWriter w;
  w.Family("m", MetricType::kGauge, "back\\slash \"quoted\"\nsecond line");
  w.Sample("m", {{"peer", "node \"x\"\\1\n"}, {"tier", "dram"}}, 1.5);
  EXPECT_EQ(w.text(),
            "# HELP m back\\\\slash \"quoted\"\\nsecond line\n"
            "# TYPE m gauge\n"
            "m{peer=\"node \\\"x\\\"\\\\1\\n\",tier=\"dram\"} 1.5\n");
}

TEST(ExpositionTest, ValuesAreFormattedAsPrometheusParsesThem) {
  EXPECT_EQ(FormatMetricValue(0), "0");
  EXPECT_EQ(FormatMetricValue(42), "42");
  EXPECT_EQ(FormatMetricValue(-3), "-3");
  EXPECT_EQ(FormatMetricValue(0.25), "0.25");
  EXPECT_EQ(FormatMetricValue(1.0 / 0.0), "+Inf");
  EXPECT_EQ(FormatMetricValue(-1.0 / 0.0), "-Inf");
  EXPECT_EQ(FormatMetricValue(0.0 / 0.0), "NaN");
  double parsed = 0;
  ASSERT_TRUE(absl::SimpleAtod(FormatMetricValue(0.00005), &parsed));
  EXPECT_DOUBLE_EQ(parsed, 0.00005);
}

TEST(ExpositionTest, MetricNames) {
  EXPECT_TRUE(IsValidMetricName("kvtier_tier_used_bytes"));
  EXPECT_TRUE(IsValidMetricName("a:b_9"));
  EXPECT_FALSE(IsValidMetricName(""));
  EXPECT_FALSE(IsValidMetricName("9lives"));
  EXPECT_FALSE(IsValidMetricName("has-dash"));
  EXPECT_FALSE(IsValidMetricName("has space"));
}

TEST(ExpositionTest, HistogramBucketsAreCumulativeAndInfEqualsCount) {
  HistogramSnapshot h;
  h.upper_bounds = {0.001, 0.01, 0.1};
  h.bucket_counts = {2, 0, 3, 1};  // per bucket, the last above 0.1
  h.count = 6;
  h.sum = 0.5;
  ExpositionWriter w;
  w.Family("kvtier_request_duration_seconds", MetricType::kHistogram, "Durations.");
  w.Histogram("kvtier_request_duration_seconds", {{"method", "lookup"}}, h);
  EXPECT_EQ(w.text(),
            "# HELP kvtier_request_duration_seconds Durations.\n"
            "# TYPE kvtier_request_duration_seconds histogram\n"
            "kvtier_request_duration_seconds_bucket{method=\"lookup\",le=\"0.001\"} 2\n"
            "kvtier_request_duration_seconds_bucket{method=\"lookup\",le=\"0.01\"} 2\n"
            "kvtier_request_duration_seconds_bucket{method=\"lookup\",le=\"0.1\"} 5\n"
            "kvtier_request_duration_seconds_bucket{method=\"lookup\",le=\"+Inf\"} 6\n"
            "kvtier_request_duration_seconds_sum{method=\"lookup\"} 0.5\n"
            "kvtier_request_duration_seconds_count{method=\"lookup\"} 6\n");
}

TEST(ExpositionTest, HistogramFromALatencyHistogram) {
  LatencyHistogram latency;
  for (int i = 0; i < 10; ++i) latency.Observe(absl::Microseconds(300));
  latency.Observe(absl::Seconds(30));
  ExpositionWriter w;
  w.Histogram("d", {}, latency.Snapshot());
  uint64_t previous = 0, inf = 0, count = 0;
  for (const std::string& line : Lines(w.text())) {
    std::vector<std::string> parts = absl::StrSplit(line, ' ');
    ASSERT_EQ(parts.size(), 2u) << line;
    if (absl::StartsWith(line, "d_bucket")) {
      uint64_t v = 0;
      ASSERT_TRUE(absl::SimpleAtoi(parts[1], &v)) << line;
      EXPECT_GE(v, previous) << "buckets are cumulative: " << line;
      previous = v;
      if (absl::StrContains(line, "le=\"+Inf\"")) inf = v;
    } else if (absl::StartsWith(line, "d_count")) {
      ASSERT_TRUE(absl::SimpleAtoi(parts[1], &count));
    }
  }
  EXPECT_EQ(count, 11u);
  EXPECT_EQ(inf, count);
}

// Every sample line of the daemon's exposition: a valid name, a family announced before it by
// HELP and TYPE, labels in braces.
TEST(KvtierMetricsTest, EverySampleBelongsToAnAnnouncedFamily) {
  MetricsSources s;
  s.node_id = "node-a";
  s.version = "0.1.0";
  s.uptime_seconds = 12.5;
  TierCounters dram;
  dram.name = "dram";
  dram.capacity_bytes = 64 << 20;
  dram.used_bytes = 1 << 20;
  dram.blocks = 4;
  dram.hits = 3;
  dram.misses = 1;
  TierCounters nvme;
  nvme.name = "nvme";
  nvme.status = "degraded: write failed";
  s.store.tiers = {dram, nvme};
  s.store.leases = 2;
  s.store.lookups = 9;
  TierCounters hbm;
  hbm.name = "hbm";
  hbm.status = "absent: no CUDA device";
  s.extra_tiers = {hbm};
  ClusterView cluster;
  cluster.roster_version = 77;
  MemberView self;
  self.member.id = "node-a";
  self.state = "self";
  MemberView peer;
  peer.member.id = "node-b";
  peer.state = "alive";
  peer.bytes_in = 4096;
  peer.errors = 2;
  cluster.members = {self, peer};
  cluster.remote_pulls = 5;
  s.cluster = cluster;
  LatencyHistogram lookup;
  lookup.Observe(absl::Microseconds(80));
  s.request_durations = {{"lookup", lookup.Snapshot()}, {"acquire", HistogramSnapshot{}}};

  const std::string text = RenderKvtierMetrics(s);
  std::map<std::string, std::string> types;  // family -> type
  std::set<std::string> helped;
  for (const std::string& line : Lines(text)) {
    if (absl::StartsWith(line, "# HELP ")) {
      std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(' ', 3));
      ASSERT_EQ(parts.size(), 4u) << line;
      EXPECT_TRUE(IsValidMetricName(parts[2])) << line;
      EXPECT_TRUE(helped.insert(parts[2]).second) << "family announced twice: " << line;
      continue;
    }
    if (absl::StartsWith(line, "# TYPE ")) {
      std::vector<std::string> parts = absl::StrSplit(line, ' ');
      ASSERT_EQ(parts.size(), 4u) << line;
      EXPECT_TRUE(helped.count(parts[2])) << "TYPE before HELP: " << line;
      types[parts[2]] = parts[3];
      if (parts[3] == "counter") {
        EXPECT_TRUE(absl::EndsWith(parts[2], "_total")) << line;
      }
      continue;
    }
    ASSERT_FALSE(absl::StartsWith(line, "#")) << line;
    const size_t end = line.find_first_of("{ ");
    ASSERT_NE(end, std::string::npos) << line;
    std::string name = line.substr(0, end);
    ASSERT_TRUE(IsValidMetricName(name)) << line;
    std::string family = name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      if (!types.count(family) && absl::EndsWith(name, suffix)) {
        family = name.substr(0, name.size() - std::string(suffix).size());
      }
    }
    EXPECT_TRUE(types.count(family)) << "sample of an unannounced family: " << line;
    if (line[end] == '{') {
      EXPECT_NE(line.find("} "), std::string::npos) << line;
    }
  }

  // The values from the inputs, under their names and labels.
  EXPECT_NE(text.find("kvtier_tier_used_bytes{tier=\"dram\"} 1048576\n"), std::string::npos);
  EXPECT_NE(text.find("kvtier_tier_capacity_bytes{tier=\"dram\"} 67108864\n"), std::string::npos);
  EXPECT_NE(text.find("kvtier_tier_hits_total{tier=\"dram\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("kvtier_tier_misses_total{tier=\"dram\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("kvtier_tier_up{tier=\"dram\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("kvtier_tier_up{tier=\"nvme\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("kvtier_tier_up{tier=\"hbm\"} 0\n"), std::string::npos);
  EXPECT_EQ(text.find("kvtier_tier_used_bytes{tier=\"hbm\"}"), std::string::npos);
  EXPECT_NE(text.find("kvtier_leases 2\n"), std::string::npos);
  EXPECT_NE(text.find("kvtier_lookups_total 9\n"), std::string::npos);
  EXPECT_NE(text.find("kvtier_build_info{version=\"0.1.0\",node=\"node-a\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("kvtier_uptime_seconds 12.5\n"), std::string::npos);
  EXPECT_NE(text.find("kvtier_remote_pulls_total 5\n"), std::string::npos);
  EXPECT_NE(text.find("kvtier_peer_bytes_in_total{peer=\"node-b\"} 4096\n"), std::string::npos);
  EXPECT_NE(text.find("kvtier_peer_errors_total{peer=\"node-b\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("kvtier_peer_up{peer=\"node-b\"} 1\n"), std::string::npos);
  EXPECT_EQ(text.find("peer=\"node-a\""), std::string::npos) << "no peer series for self";
  EXPECT_NE(
      text.find("kvtier_request_duration_seconds_bucket{method=\"lookup\",le=\"0.0001\"} 1\n"),
      std::string::npos);
  EXPECT_NE(text.find("kvtier_request_duration_seconds_count{method=\"lookup\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("kvtier_request_duration_seconds_count{method=\"acquire\"} 0\n"),
            std::string::npos);
  EXPECT_EQ(types["kvtier_request_duration_seconds"], "histogram");
  EXPECT_EQ(types["kvtier_tier_evictions_total"], "counter");
  EXPECT_EQ(types["kvtier_tier_blocks"], "gauge");
}

TEST(KvtierMetricsTest, SingleNodeHasNoClusterSeries) {
  MetricsSources s;
  TierCounters dram;
  dram.name = "dram";
  s.store.tiers = {dram};
  const std::string text = RenderKvtierMetrics(s);
  EXPECT_EQ(text.find("kvtier_remote_pulls_total"), std::string::npos);
  EXPECT_EQ(text.find("kvtier_peer_"), std::string::npos);
  EXPECT_NE(text.find("kvtier_tier_blocks{tier=\"dram\"} 0\n"), std::string::npos);
}

}  // namespace
}  // namespace kvtier
