// Cluster peers with mutual TLS: daemons whose certificates come from the cluster's CA find each
// other and move blocks; a daemon with a certificate from another CA cannot take part.
#include <gtest/gtest.h>

#include <random>

#include "common/free_port.h"
#include "common/local_daemon.h"
#include "kvtier/client.h"
#include "tests/support/bin_path.h"
#include "tests/support/random_bytes.h"
#include "tests/support/test_certs.h"
#include "tests/support/wait.h"
#include "tests/unit/client/temp_dir.h"

namespace kvtier::testing {
namespace {

constexpr uint64_t kBlock = 64 << 10;

std::string StateOf(Client& client, const std::string& id) {
  ClusterInfo info;
  if (!client.Cluster(&info).ok()) return "";
  for (const ClusterMemberInfo& m : info.members) {
    if (m.id == id) return m.state;
  }
  return "";
}

TEST(ClusterTls, PeersWithTheCasCertificatesWorkTogetherOthersCannotJoin) {
  TempDir dir;
  auto ca = MakeTestCa(dir.path(), "cluster-ca");
  ASSERT_TRUE(ca.ok()) << ca.status();
  auto other_ca = MakeTestCa(dir.path(), "rogue-ca");
  ASSERT_TRUE(other_ca.ok()) << other_ca.status();
  // Every certificate names 127.0.0.1, so peers check each other against the address they dial.
  std::vector<TestCert> certs;
  for (const char* name : {"node-a", "node-b"}) {
    auto cert = MakeTestCert(dir.path(), *ca, name);
    ASSERT_TRUE(cert.ok()) << cert.status();
    certs.push_back(*cert);
  }
  auto rogue = MakeTestCert(dir.path(), *other_ca, "node-c");
  ASSERT_TRUE(rogue.ok()) << rogue.status();

  const std::vector<std::string> ids = {"a", "b", "c"};
  std::string peers;
  for (const std::string& id : ids) {
    peers += (peers.empty() ? "" : ",") + id + "@127.0.0.1:" + std::to_string(FreeTcpPort());
  }
  std::vector<std::unique_ptr<LocalDaemon>> daemons;
  std::vector<std::unique_ptr<Client>> clients;
  for (size_t i = 0; i < ids.size(); ++i) {
    const TestCert& cert = i < 2 ? certs[i] : *rogue;
    const TestCert& trust = i < 2 ? *ca : *other_ca;
    auto d = LocalDaemon::Start(BinPath("kvtierd"),
                                {"--dram-capacity", "32MiB", "--node-id", ids[i], "--peers", peers,
                                 "--ucx-tls", "tcp", "--peer-timeout-ms", "2000", "--tls-cert",
                                 cert.cert, "--tls-key", cert.key, "--tls-ca", trust.cert});
    ASSERT_TRUE(d.ok()) << d.status();
    ClientOptions options;
    options.socket_path = (*d)->socket_path();
    std::unique_ptr<Client> client;
    ASSERT_TRUE(Client::Connect(options, &client).ok());
    daemons.push_back(std::move(*d));
    clients.push_back(std::move(client));
  }
  Client& a = *clients[0];
  Client& b = *clients[1];
  Client& c = *clients[2];

  // a and b: alive to each other; c: unreachable both ways.
  ASSERT_TRUE(WaitUntil([&] { return StateOf(a, "b") == "alive" && StateOf(b, "a") == "alive"; },
                        absl::Seconds(15)))
      << StateOf(a, "b") << " " << StateOf(b, "a");
  ASSERT_TRUE(WaitUntil(
      [&] {
        return StateOf(a, "c") == "unreachable" && StateOf(b, "c") == "unreachable" &&
               StateOf(c, "a") == "unreachable" && StateOf(c, "b") == "unreachable";
      },
      absl::Seconds(15)))
      << StateOf(a, "c") << " " << StateOf(c, "a");

  // Blocks saved through a are found and loaded through b.
  NamespaceLayout layout;
  layout.model_id = "tls-cluster";
  layout.block_bytes = kBlock;
  Namespace ns;
  ASSERT_TRUE(a.RegisterNamespace(layout, &ns).ok());
  ASSERT_TRUE(b.RegisterNamespace(layout, &ns).ok());
  ASSERT_TRUE(c.RegisterNamespace(layout, &ns).ok());
  std::mt19937_64 rng(5);
  std::vector<BlockKey> keys(8);
  for (BlockKey& k : keys) k = {rng(), rng()};
  std::vector<std::vector<std::byte>> data;
  std::vector<const void*> in;
  for (size_t i = 0; i < keys.size(); ++i) data.push_back(RandomBytes(kBlock, 500 + i));
  for (auto& d : data) in.push_back(d.data());
  ASSERT_TRUE(a.Save(ns, keys, in).ok());
  // Directory entries that belong to c's segments never reach it, so b may see only the part
  // of the chain before the first such segment; it must see at least the first block unless c
  // owns that segment too, and whatever it loads must be the bytes a saved.
  LookupResult found;
  WaitUntil([&] { return b.Lookup(ns.id, keys, &found).ok() && found.prefix_blocks > 0; },
            absl::Seconds(5));
  std::vector<std::vector<std::byte>> out(keys.size(), std::vector<std::byte>(kBlock));
  std::vector<void*> outp;
  for (auto& o : out) outp.push_back(o.data());
  size_t loaded = 0;
  ASSERT_TRUE(b.Load(ns, keys, outp, &loaded).ok());
  for (size_t i = 0; i < loaded; ++i) EXPECT_EQ(out[i], data[i]) << "block " << i;
  DaemonStats stats;
  ASSERT_TRUE(b.Stats(&stats).ok());
  EXPECT_EQ(stats.remote_pulls, loaded);
  // c sees none of a's blocks.
  ASSERT_TRUE(c.Lookup(ns.id, keys, &found).ok());
  EXPECT_EQ(found.prefix_blocks, 0u);
}

}  // namespace
}  // namespace kvtier::testing
