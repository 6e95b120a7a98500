// The metrics endpoint of clustered daemons: two kvtierd on loopback with a static roster; a chain
// saved through one and loaded through the other shows in the second's remote and peer series.
#include <gtest/gtest.h>

#include <random>

#include "absl/strings/numbers.h"
#include "common/free_port.h"
#include "common/local_daemon.h"
#include "kvtier/client.h"
#include "tests/support/bin_path.h"
#include "tests/support/http_get.h"
#include "tests/support/random_bytes.h"
#include "tests/support/wait.h"

namespace kvtier::testing {
namespace {

constexpr uint64_t kBlock = 256 << 10;

struct Node {
  std::string id;
  std::unique_ptr<LocalDaemon> daemon;
  std::unique_ptr<Client> client;
  int metrics_port = 0;
};

int MetricsPort(const std::string& ready_line) {
  const std::string tag = " metrics=127.0.0.1:";
  const size_t at = ready_line.find(tag);
  if (at == std::string::npos) return 0;
  const size_t start = at + tag.size();
  int port = 0;
  if (!absl::SimpleAtoi(ready_line.substr(start, ready_line.find(' ', start) - start), &port)) {
    return 0;
  }
  return port;
}

double Scrape(const Node& node, const std::string& series) {
  auto r = HttpGet("127.0.0.1", node.metrics_port, "/metrics");
  EXPECT_TRUE(r.ok()) << r.status();
  if (!r.ok()) return -1;
  std::optional<double> v = SampleValue(r->body, series);
  EXPECT_TRUE(v.has_value()) << node.id << ": " << series << " not in:\n" << r->body;
  return v.value_or(-1);
}

TEST(ClusterMetricsTest, PullsShowInRemoteAndPeerSeries) {
  std::vector<Node> nodes(2);
  std::string peers;
  for (size_t i = 0; i < nodes.size(); ++i) {
    nodes[i].id = std::string(1, static_cast<char>('a' + i));
    peers += (i ? "," : "") + nodes[i].id + "@127.0.0.1:" + std::to_string(FreeTcpPort());
  }
  for (Node& n : nodes) {
    auto d = LocalDaemon::Start(BinPath("kvtierd"),
                                {"--dram-capacity", "64MiB", "--node-id", n.id, "--peers", peers,
                                 "--ucx-tls", "tcp", "--metrics-listen", "127.0.0.1:0"});
    ASSERT_TRUE(d.ok()) << d.status();
    n.daemon = std::move(*d);
    n.metrics_port = MetricsPort(n.daemon->ready_line());
    ASSERT_GT(n.metrics_port, 0) << n.daemon->ready_line();
    ClientOptions options;
    options.socket_path = n.daemon->socket_path();
    ASSERT_TRUE(Client::Connect(options, &n.client).ok());
  }
  for (const Node& n : nodes) {
    auto ready = HttpGet("127.0.0.1", n.metrics_port, "/readyz");
    ASSERT_TRUE(ready.ok()) << ready.status();
    EXPECT_EQ(ready->status, 200) << ready->body;
    EXPECT_EQ(Scrape(n, "kvtier_cluster_members"), 2);
  }
  EXPECT_EQ(Scrape(nodes[0], "kvtier_cluster_roster_version"),
            Scrape(nodes[1], "kvtier_cluster_roster_version"));

  NamespaceLayout layout;
  layout.model_id = "cluster-metrics-test";
  layout.block_bytes = kBlock;
  Namespace ns;
  ASSERT_TRUE(nodes[0].client->RegisterNamespace(layout, &ns).ok());
  Namespace ns_b;
  ASSERT_TRUE(nodes[1].client->RegisterNamespace(layout, &ns_b).ok());
  constexpr size_t kBlocks = 8;
  std::mt19937_64 rng(11);
  std::vector<BlockKey> keys(kBlocks);
  for (BlockKey& k : keys) k = {rng(), rng()};
  const auto data = RandomBytes(kBlock, 5);
  std::vector<const void*> src(kBlocks, data.data());
  ASSERT_TRUE(nodes[0].client->Save(ns, keys, src).ok());

  // The directory learns of the blocks asynchronously (batched announcements): load until b has
  // pulled them all, within a deadline.
  std::vector<std::byte> sink(kBlock * kBlocks);
  std::vector<void*> dst;
  for (size_t i = 0; i < kBlocks; ++i) dst.push_back(sink.data() + i * kBlock);
  size_t loaded = 0;
  ASSERT_TRUE(WaitUntil(
      [&] { return nodes[1].client->Load(ns_b, keys, dst, &loaded).ok() && loaded == kBlocks; },
      absl::Seconds(5)));

  const Node& b = nodes[1];
  EXPECT_GE(Scrape(b, "kvtier_remote_pulls_total"), kBlocks);
  EXPECT_GE(Scrape(b, "kvtier_remote_pull_bytes_total"), kBlocks * kBlock);
  EXPECT_GE(Scrape(b, "kvtier_peer_bytes_in_total{peer=\"a\"}"), kBlocks * kBlock);
  EXPECT_EQ(Scrape(b, "kvtier_peer_up{peer=\"a\"}"), 1);
  EXPECT_EQ(Scrape(b, "kvtier_remote_pull_failures_total"), 0);
  EXPECT_EQ(Scrape(b, "kvtier_tier_blocks{tier=\"dram\"}"), kBlocks);
}

}  // namespace
}  // namespace kvtier::testing
