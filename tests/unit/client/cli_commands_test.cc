// The CLI commands against a canned Client: table and JSON output, argument checks.
#include <sstream>

#include "commands.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "top.h"

namespace kvtier::cli {
namespace {

// Answers the inspection calls with fixed data; records drops.
class CannedClient final : public Client {
 public:
  Status RegisterNamespace(const NamespaceLayout&, Namespace*) override { return Unused(); }
  Status Lookup(uint64_t, std::span<const BlockKey>, LookupResult*) override { return Unused(); }
  Status Save(const Namespace&, std::span<const BlockKey>, std::span<const void* const>, size_t*,
              BlockKey) override {
    return Unused();
  }
  Status Load(const Namespace&, std::span<const BlockKey>, std::span<void* const>,
              size_t*) override {
    return Unused();
  }
  Status BeginWrite(const Namespace&, std::span<const BlockKey>, BlockKey,
                    std::unique_ptr<WriteLease>*) override {
    return Unused();
  }
  Status AcquireRead(const Namespace&, std::span<const BlockKey>,
                     std::unique_ptr<ReadLease>*) override {
    return Unused();
  }

  Status Drop(uint64_t ns, std::span<const BlockKey> keys, DropResult* out) override {
    dropped_ns = ns;
    dropped_keys.assign(keys.begin(), keys.end());
    *out = DropResult{static_cast<uint32_t>(keys.size()), 0, 0};
    return Status();
  }
  Status DropAll(uint64_t ns, DropResult* out) override {
    dropped_ns = ns;
    dropped_all = true;
    *out = DropResult{5, 1, 0};
    return Status();
  }

  Status Stats(DaemonStats* out) override {
    if (!fail.ok()) return fail;
    DaemonStats s;
    s.node_id = "node-a";
    s.version = "0.1.0";
    s.uptime_ms = 65000;
    s.arena_pages = "2 MiB (thp)";
    TierStats dram;
    dram.name = "dram";
    dram.capacity_bytes = 64ULL << 20;
    dram.used_bytes = 16ULL << 20;
    dram.blocks = 4;
    dram.hits = 10;
    dram.misses = 2;
    s.tiers.push_back(dram);
    s.namespaces = 1;
    s.leases = 2;
    s.lookups = 3;
    s.lookup_keys = 8;
    s.lookup_hit_keys = 6;
    *out = s;
    return Status();
  }
  Status Cluster(ClusterInfo* out) override {
    if (!fail.ok()) return fail;
    ClusterInfo c;
    c.enabled = true;
    c.self_id = "node-a";
    c.membership = "static";
    c.membership_status = "ok";
    c.roster_version = 42;
    c.transport = "tls=tcp protocol=am";
    c.directory_entries = 7;
    ClusterMemberInfo a;
    a.id = "node-a";
    a.address = "127.0.0.1:7001";
    a.state = "self";
    ClusterMemberInfo b{"node-b", "127.0.0.1:7002", 1, "alive", 3 << 20, 3, 10, 1, 0.5, 1.25, ""};
    ClusterMemberInfo d;
    d.id = "node-c";
    d.address = "127.0.0.1:7003";
    d.slot = 2;
    d.state = "unreachable";
    d.calls = 4;
    d.errors = 4;
    d.last_error = "connection refused";
    c.members = {a, b, d};
    *out = c;
    return Status();
  }
  Status ListNamespaces(std::vector<NamespaceEntry>* out) override {
    NamespaceEntry e;
    e.ns = Namespace{0xabcdef0123456789ULL, 2 << 20};
    e.layout.model_id = "llama";
    e.layout.num_layers = 32;
    e.layout.kv_heads = 8;
    e.layout.head_size = 128;
    e.layout.dtype = "bf16";
    e.layout.tokens_per_block = 16;
    e.layout.layout_tag = "flash";
    e.blocks = 3;
    e.bytes = 6 << 20;
    out->assign(1, e);
    return Status();
  }
  Status Prefetch(uint64_t, std::span<const BlockKey>, size_t*) override { return Unused(); }
  Status ListBlocks(uint64_t ns, uint32_t limit, std::vector<BlockEntry>* out, bool* truncated,
                    Tier tier) override {
    listed_tier = tier;
    listed_ns = ns;
    listed_limit = limit;
    BlockEntry b;
    b.namespace_id = 0xabcdef0123456789ULL;
    b.key = BlockKey{1, 2};
    b.tier = Tier::kDram;
    b.bytes = 2 << 20;
    b.state = "ready";
    b.hits = 7;
    b.age_ms = 1500;
    out->assign(1, b);
    if (truncated != nullptr) *truncated = true;
    return Status();
  }
  const std::string& socket_path() const override { return socket_; }

  Status fail;
  uint64_t dropped_ns = 0;
  bool dropped_all = false;
  std::vector<BlockKey> dropped_keys;
  uint64_t listed_ns = 1;
  uint32_t listed_limit = 1;
  Tier listed_tier = Tier::kHbm;

 private:
  static Status Unused() { return Status(Status::Code::kUnimplemented, "not in the CLI"); }
  std::string socket_ = "/tmp/test.sock";
};

TEST(CliCommandsTest, StatusJsonHasTheDocumentedFields) {
  CannedClient client;
  std::ostringstream out;
  ASSERT_TRUE(RunStatus(client, /*json=*/true, out).ok());
  const auto j = nlohmann::json::parse(out.str());
  EXPECT_EQ(j["node_id"], "node-a");
  EXPECT_EQ(j["version"], "0.1.0");
  EXPECT_EQ(j["uptime_ms"], 65000);
  EXPECT_EQ(j["arena_pages"], "2 MiB (thp)");
  ASSERT_EQ(j["tiers"].size(), 1u);
  for (const char* field : {"name", "capacity_bytes", "used_bytes", "blocks", "hits", "misses",
                            "evictions", "bytes_in", "bytes_out"}) {
    EXPECT_TRUE(j["tiers"][0].contains(field)) << field;
  }
  EXPECT_EQ(j["tiers"][0]["capacity_bytes"], 64ULL << 20);
  for (const char* field : {"namespaces", "leases", "lookups", "lookup_keys", "lookup_hit_keys"}) {
    EXPECT_TRUE(j.contains(field)) << field;
  }
}

TEST(CliCommandsTest, StatusHumanOutput) {
  CannedClient client;
  std::ostringstream out;
  ASSERT_TRUE(RunStatus(client, /*json=*/false, out).ok());
  const std::string text = out.str();
  EXPECT_NE(text.find("node-a"), std::string::npos);
  EXPECT_NE(text.find("1m 05s"), std::string::npos);
  EXPECT_NE(text.find("hit rate 75.0%"), std::string::npos) << text;
  EXPECT_NE(text.find("64.00 MiB"), std::string::npos) << text;
  EXPECT_NE(text.find("25.0%"), std::string::npos) << text;
}

TEST(CliCommandsTest, ErrorsPassThrough) {
  CannedClient client;
  client.fail = Status(Status::Code::kUnavailable, "gone");
  std::ostringstream out;
  EXPECT_EQ(RunStatus(client, false, out).code(), Status::Code::kUnavailable);
  EXPECT_EQ(RunTiers(client, true, out).code(), Status::Code::kUnavailable);
  EXPECT_EQ(out.str(), "");
}

TEST(CliCommandsTest, TiersJsonIsAnArray) {
  CannedClient client;
  std::ostringstream out;
  ASSERT_TRUE(RunTiers(client, true, out).ok());
  const auto j = nlohmann::json::parse(out.str());
  ASSERT_TRUE(j.is_array());
  EXPECT_EQ(j[0]["name"], "dram");
}

TEST(CliCommandsTest, NamespacesTableAndJson) {
  CannedClient client;
  std::ostringstream text, json;
  ASSERT_TRUE(RunNamespaces(client, false, text).ok());
  EXPECT_NE(text.str().find("abcdef0123456789"), std::string::npos);
  EXPECT_NE(text.str().find("llama"), std::string::npos);
  EXPECT_NE(text.str().find("2.00 MiB"), std::string::npos);
  ASSERT_TRUE(RunNamespaces(client, true, json).ok());
  const auto j = nlohmann::json::parse(json.str());
  EXPECT_EQ(j[0]["id"], "abcdef0123456789");
  EXPECT_EQ(j[0]["num_layers"], 32);
}

TEST(CliCommandsTest, BlocksPassesFiltersAndShowsTruncation) {
  CannedClient client;
  BlocksArgs args;
  ASSERT_TRUE(ParseBlocksArgs("0xabcdef0123456789", 5, &args).ok());
  std::ostringstream text, json;
  ASSERT_TRUE(RunBlocks(client, args, false, text).ok());
  EXPECT_EQ(client.listed_ns, 0xabcdef0123456789ULL);
  EXPECT_EQ(client.listed_limit, 5u);
  EXPECT_EQ(client.listed_tier, Tier::kNone);
  EXPECT_NE(text.str().find("00000000000000020000000000000001"), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("raise --limit"), std::string::npos);
  ASSERT_TRUE(RunBlocks(client, args, true, json).ok());
  const auto j = nlohmann::json::parse(json.str());
  EXPECT_EQ(j["truncated"], true);
  EXPECT_EQ(j["blocks"][0]["key"], "00000000000000020000000000000001");
  EXPECT_EQ(j["blocks"][0]["tier"], "dram");
}

TEST(CliCommandsTest, BlocksTierFilter) {
  CannedClient client;
  BlocksArgs args;
  ASSERT_TRUE(ParseBlocksArgs("", 0, &args, "nvme").ok());
  std::ostringstream text;
  ASSERT_TRUE(RunBlocks(client, args, false, text).ok());
  EXPECT_EQ(client.listed_tier, Tier::kNvme);
  Status bad = ParseBlocksArgs("", 0, &args, "tape");
  EXPECT_EQ(bad.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(bad.message().find("--tier"), std::string::npos);
}

TEST(CliCommandsTest, DropArguments) {
  DropArgs args;
  EXPECT_EQ(ParseDropArgs("", true, {}, &args).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(ParseDropArgs("12", false, {}, &args).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(ParseDropArgs("12", true, {"00000000000000020000000000000001"}, &args).code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(ParseDropArgs("12", false, {"nothex"}, &args).code(), Status::Code::kInvalidArgument);
  ASSERT_TRUE(ParseDropArgs("12", false, {"00000000000000020000000000000001"}, &args).ok());
  EXPECT_EQ(args.namespace_id, 0x12u);
  ASSERT_EQ(args.keys.size(), 1u);
  EXPECT_EQ(args.keys[0], (BlockKey{1, 2}));
}

TEST(CliCommandsTest, DropRunsKeysOrAll) {
  CannedClient client;
  DropArgs args;
  ASSERT_TRUE(ParseDropArgs("12", false, {"00000000000000020000000000000001"}, &args).ok());
  std::ostringstream text;
  ASSERT_TRUE(RunDrop(client, args, false, text).ok());
  EXPECT_EQ(text.str(), "dropped 1, busy 0, missing 0\n");
  EXPECT_EQ(client.dropped_keys.size(), 1u);

  ASSERT_TRUE(ParseDropArgs("12", true, {}, &args).ok());
  std::ostringstream json;
  ASSERT_TRUE(RunDrop(client, args, true, json).ok());
  EXPECT_TRUE(client.dropped_all);
  const auto j = nlohmann::json::parse(json.str());
  EXPECT_EQ(j["dropped"], 5);
  EXPECT_EQ(j["busy"], 1);
  EXPECT_EQ(j["namespace_id"], "0000000000000012");
}

TEST(ClusterCommand, TableShowsMembersStatesAndErrors) {
  CannedClient client;
  std::ostringstream out;
  ASSERT_TRUE(RunCluster(client, false, out).ok());
  const std::string text = out.str();
  EXPECT_NE(text.find("roster version  42"), std::string::npos) << text;
  EXPECT_NE(text.find("node-b"), std::string::npos) << text;
  EXPECT_NE(text.find("alive"), std::string::npos) << text;
  EXPECT_NE(text.find("unreachable"), std::string::npos) << text;
  EXPECT_NE(text.find("connection refused"), std::string::npos) << text;
  EXPECT_NE(text.find("0.50ms"), std::string::npos) << text;
}

TEST(ClusterCommand, JsonCarriesMembers) {
  CannedClient client;
  std::ostringstream out;
  ASSERT_TRUE(RunCluster(client, true, out).ok());
  const nlohmann::json j = nlohmann::json::parse(out.str());
  ASSERT_EQ(j["members"].size(), 3u);
  EXPECT_EQ(j["members"][0]["state"], "self");
  EXPECT_EQ(j["members"][1]["id"], "node-b");
  EXPECT_EQ(j["members"][1]["address"], "127.0.0.1:7002");
  EXPECT_EQ(j["members"][1]["bytes_in"], 3u << 20);
  EXPECT_EQ(j["members"][2]["state"], "unreachable");
  EXPECT_EQ(j["roster_version"], "42");
  EXPECT_EQ(j["enabled"], true);
}

TEST(ClusterCommand, ErrorsPassThrough) {
  CannedClient client;
  client.fail = Status(Status::Code::kUnavailable, "no daemon");
  std::ostringstream out;
  EXPECT_EQ(RunCluster(client, false, out).code(), Status::Code::kUnavailable);
}

TEST(TopCommand, PrintsFramesWithTiersNamespacesAndPeers) {
  CannedClient client;
  std::ostringstream out;
  TopArgs args;
  args.interval_ms = 1;
  args.iterations = 2;
  ASSERT_TRUE(RunTop(client, args, out).ok());
  const std::string text = out.str();
  size_t frames = 0;
  for (size_t at = text.find("TIER"); at != std::string::npos; at = text.find("TIER", at + 1)) {
    ++frames;
  }
  EXPECT_EQ(frames, 2u) << text;
  EXPECT_NE(text.find("---"), std::string::npos) << text;     // frames are separated
  EXPECT_NE(text.find("llama"), std::string::npos) << text;   // the namespace holding bytes
  EXPECT_NE(text.find("node-b"), std::string::npos) << text;  // a peer
  EXPECT_EQ(text.find("\x1b["), std::string::npos);           // no escapes when not a terminal
}

TEST(TopCommand, RedrawsInPlaceOnATerminal) {
  CannedClient client;
  std::ostringstream out;
  TopArgs args;
  args.interval_ms = 1;
  args.iterations = 1;
  args.terminal = true;
  ASSERT_TRUE(RunTop(client, args, out).ok());
  EXPECT_EQ(out.str().rfind("\x1b[H\x1b[2J", 0), 0u);
}

TEST(TopCommand, ErrorsPassThrough) {
  CannedClient client;
  client.fail = Status(Status::Code::kUnavailable, "no daemon");
  std::ostringstream out;
  TopArgs args;
  args.iterations = 1;
  EXPECT_EQ(RunTop(client, args, out).code(), Status::Code::kUnavailable);
}

}  // namespace
}  // namespace kvtier::cli
