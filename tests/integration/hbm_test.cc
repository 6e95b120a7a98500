// The HBM tier through a real kvtierd with the cpu device pool (--hbm-backend cpu: memfd
// segments standing in for device memory, handed to clients over <socket>.hbm like CUDA IPC
// handles): `kvtier tiers` shows it, hot blocks are promoted, GpuKv (cpu backend) loads them
// through the opened segments bit-exact, blocks left only in HBM still load through DRAM, and
// bad flags are refused. The cuda backend of the same tier runs in tests/gpu (label gpu).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "absl/time/time.h"
#include "kvtier/gpu.h"
#include "tests/integration/daemon_fixture.h"
#include "tests/support/wait.h"

namespace kvtier::testing {
namespace {

constexpr unsigned char kPoison = 0xA5;

// A host "device" cache, vLLM flash layout: 4 layers, 16 tokens, 2 heads, head 64, bf16.
struct Cache {
  PagedKV kv;
  std::vector<std::vector<unsigned char>> tensors;
  explicit Cache(int32_t num_blocks) {
    kv.layout = KvLayout::kFlash;
    kv.num_layers = 4;
    kv.num_blocks = num_blocks;
    kv.block_size = 16;
    kv.kv_heads = 2;
    kv.head_size = 64;
    kv.element_bytes = 2;
    kv.FillCompactStrides();
    tensors.assign(4, std::vector<unsigned char>(2 * kv.kv_stride_bytes, kPoison));
    for (auto& t : tensors) kv.layer_bases.push_back(t.data());
  }
  std::vector<unsigned char> Block(int32_t b) const {
    std::vector<unsigned char> out;
    const int64_t piece = kv.kv_stride_bytes / kv.num_blocks;
    for (const auto& t : tensors) {
      for (int k = 0; k < 2; ++k) {
        const unsigned char* p = t.data() + k * kv.kv_stride_bytes + b * kv.block_stride_bytes;
        out.insert(out.end(), p, p + piece);
      }
    }
    return out;
  }
};

class HbmCpuTest : public DaemonTest {
 protected:
  std::vector<std::string> DaemonArgs() override {
    return {"--dram-capacity", "16MiB", "--hbm-backend", "cpu",
            "--hbm-capacity",  "16MiB", "--hbm-segment", "8MiB"};
  }
  ProcessResult Cli(std::vector<std::string> args) {
    std::vector<std::string> argv = {BinPath("kvtier"), "--socket", daemon_->socket_path()};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProgram(argv, 20);
  }
  TierStats Hbm() {
    DaemonStats stats;
    EXPECT_TRUE(client_->Stats(&stats).ok());
    for (const TierStats& t : stats.tiers) {
      if (t.name == "hbm") return t;
    }
    ADD_FAILURE() << "no hbm tier";
    return {};
  }
  // Saves `n` random blocks from a cache through GpuKv; returns the source cache.
  Cache SaveBlocks(GpuKv* gpu, const Namespace& ns, const std::vector<BlockKey>& keys) {
    Cache src(static_cast<int32_t>(keys.size()) + 3);
    for (auto& t : src.tensors) {
      for (auto& b : t) b = static_cast<unsigned char>(rng_());
    }
    for (size_t i = 0; i < keys.size(); ++i) src.kv.block_ids.push_back(static_cast<int32_t>(i));
    std::unique_ptr<KvTransfer> save;
    Status s = gpu->SaveKv(ns, keys, src.kv, nullptr, &save);
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (save) {
      EXPECT_TRUE(save->Wait().ok());
    }
    return src;
  }
  // Two host-path reads: hot enough for HBM (--hbm-promote-hits 2).
  void ReadTwice(const Namespace& ns, const std::vector<BlockKey>& keys) {
    std::vector<std::vector<unsigned char>> bufs(keys.size(),
                                                 std::vector<unsigned char>(ns.block_bytes));
    std::vector<void*> ptrs;
    for (auto& b : bufs) ptrs.push_back(b.data());
    for (int t = 0; t < 2; ++t) {
      size_t loaded = 0;
      ASSERT_TRUE(client_->Load(ns, keys, ptrs, &loaded).ok());
      ASSERT_EQ(loaded, keys.size());
    }
  }
  Namespace RegisterCacheNamespace() {
    NamespaceLayout layout;
    layout.model_id = "hbm-test";
    layout.layout_tag = "opaque";
    layout.block_bytes = Cache(1).kv.StagingBlockBytes();
    Namespace ns;
    EXPECT_TRUE(client_->RegisterNamespace(layout, &ns).ok());
    return ns;
  }
};

TEST_F(HbmCpuTest, TiersListTheHbmTier) {
  ProcessResult r = Cli({"tiers", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  bool found = false;
  for (const auto& t : nlohmann::json::parse(r.output)) {
    if (t["name"] != "hbm") continue;
    found = true;
    EXPECT_EQ(t["status"], "ok");
    EXPECT_EQ(t["capacity_bytes"].get<uint64_t>(), 16u << 20);
    EXPECT_EQ(t["used_bytes"].get<uint64_t>(), 0u);
    EXPECT_EQ(t["blocks"].get<uint64_t>(), 0u);
  }
  EXPECT_TRUE(found) << r.output;
  ProcessResult table = Cli({"tiers"});
  EXPECT_NE(table.output.find("hbm"), std::string::npos) << table.output;
  HbmTierInfo info;
  ASSERT_TRUE(client_->HbmTier(&info).ok());
  EXPECT_TRUE(info.present);
  EXPECT_EQ(info.backend, "cpu");
  EXPECT_EQ(info.segments, 2u);
  EXPECT_EQ(info.segment_bytes, 8u << 20);
}

TEST_F(HbmCpuTest, HotBlocksArePromotedAndGpuKvLoadsThemThroughTheSegments) {
  std::unique_ptr<GpuKv> gpu;
  ASSERT_TRUE(GpuKv::Create(client_.get(), GpuBackend::kCpu, &gpu).ok());
  const Namespace ns = RegisterCacheNamespace();
  const auto keys = RandomKeys(6);
  Cache src = SaveBlocks(gpu.get(), ns, keys);
  ReadTwice(ns, keys);
  ASSERT_TRUE(WaitUntil([&] { return Hbm().blocks == keys.size(); }, absl::Seconds(10)))
      << "blocks in hbm: " << Hbm().blocks;
  LookupResult lookup;
  ASSERT_TRUE(client_->Lookup(ns.id, keys, &lookup).ok());
  EXPECT_EQ(lookup.tiers, std::vector<Tier>(keys.size(), Tier::kHbm));
  EXPECT_EQ(Hbm().used_bytes, keys.size() * 32768);  // 32 KiB blocks, 32 KiB slots
  const uint64_t hits_before = Hbm().hits;

  Cache dst(9);
  dst.kv.block_ids = {8, 1, 6, 3, 0, 5};  // non-contiguous, out of order
  std::unique_ptr<KvTransfer> load;
  ASSERT_TRUE(gpu->LoadKv(ns, keys, dst.kv, nullptr, &load).ok());
  for (size_t l = 0; l < 4; ++l) EXPECT_TRUE(load->WaitLayer(l).ok());
  ASSERT_TRUE(load->Wait().ok());
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(load->results()[i], BlockResult::kDone) << i;
    EXPECT_EQ(dst.Block(dst.kv.block_ids[i]), src.Block(static_cast<int32_t>(i))) << i;
  }
  EXPECT_EQ(dst.Block(2), std::vector<unsigned char>(dst.Block(2).size(), kPoison));
  EXPECT_EQ(Hbm().hits, hits_before + keys.size()) << "read through the HBM segments";
}

TEST_F(HbmCpuTest, BlocksLeftOnlyInHbmStillLoadEverywhere) {
  std::unique_ptr<GpuKv> gpu;
  ASSERT_TRUE(GpuKv::Create(client_.get(), GpuBackend::kCpu, &gpu).ok());
  const Namespace ns = RegisterCacheNamespace();
  const auto keys = RandomKeys(4);
  Cache src = SaveBlocks(gpu.get(), ns, keys);
  ReadTwice(ns, keys);
  ASSERT_TRUE(WaitUntil([&] { return Hbm().blocks == keys.size(); }, absl::Seconds(10)));
  // Fill DRAM with other blocks: the hot blocks' DRAM copies are clean and go first.
  const Namespace big = Register(1 << 20, "filler");
  const auto filler = RandomKeys(16);
  auto data = RandomBytes(big.block_bytes, 1);
  std::vector<const void*> srcs(16, data.data());
  ASSERT_TRUE(client_->Save(big, filler, srcs).ok());
  // The host path: copied down from HBM into DRAM, bytes intact.
  std::vector<unsigned char> one(ns.block_bytes);
  std::vector<void*> ptr = {one.data()};
  size_t loaded = 0;
  ASSERT_TRUE(client_->Load(ns, std::vector<BlockKey>{keys[0]}, ptr, &loaded).ok());
  ASSERT_EQ(loaded, 1u);
  EXPECT_EQ(one, src.Block(0));
  // The GpuKv path: every block, from HBM (and DRAM where a copy is back).
  Cache dst(4);
  dst.kv.block_ids = {3, 2, 1, 0};
  std::unique_ptr<KvTransfer> load;
  ASSERT_TRUE(gpu->LoadKv(ns, keys, dst.kv, nullptr, &load).ok());
  ASSERT_TRUE(load->Wait().ok());
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(load->results()[i], BlockResult::kDone);
    EXPECT_EQ(dst.Block(dst.kv.block_ids[i]), src.Block(static_cast<int32_t>(i))) << i;
  }
}

// A client that cannot open the segments (here: the hand-out socket is gone) falls back to DRAM:
// the daemon copies the HBM-only blocks down, every block loads, none is reported half-written.
TEST_F(HbmCpuTest, SegmentsThatCannotBeOpenedFallBackToDram) {
  std::unique_ptr<GpuKv> saver;
  ASSERT_TRUE(GpuKv::Create(client_.get(), GpuBackend::kCpu, &saver).ok());
  const Namespace ns = RegisterCacheNamespace();
  const auto keys = RandomKeys(4);
  Cache src = SaveBlocks(saver.get(), ns, keys);
  ReadTwice(ns, keys);
  ASSERT_TRUE(WaitUntil([&] { return Hbm().blocks == keys.size(); }, absl::Seconds(10)));
  const Namespace big = Register(1 << 20, "filler");
  const auto filler = RandomKeys(16);
  auto data = RandomBytes(big.block_bytes, 1);
  std::vector<const void*> srcs(16, data.data());
  ASSERT_TRUE(client_->Save(big, filler, srcs).ok());
  HbmTierInfo info;
  ASSERT_TRUE(client_->HbmTier(&info).ok());
  ASSERT_EQ(::unlink(info.socket_path.c_str()), 0);
  std::unique_ptr<GpuKv> gpu;  // a fresh one: no segment opened yet
  ASSERT_TRUE(GpuKv::Create(client_.get(), GpuBackend::kCpu, &gpu).ok());
  const uint64_t hits = Hbm().hits;
  Cache dst(4);
  dst.kv.block_ids = {0, 1, 2, 3};
  std::unique_ptr<KvTransfer> load;
  ASSERT_TRUE(gpu->LoadKv(ns, keys, dst.kv, nullptr, &load).ok());
  ASSERT_TRUE(load->Wait().ok());
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(load->results()[i], BlockResult::kDone);
    EXPECT_EQ(dst.Block(static_cast<int32_t>(i)), src.Block(static_cast<int32_t>(i))) << i;
  }
  // The daemon answered from HBM first; the client could not open the segment and read DRAM.
  EXPECT_GT(Hbm().hits, hits);
}

TEST(HbmFlagsTest, BadBackendAndTinyCapacityAreRefusedNamingTheFlag) {
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"--hbm-backend", "tpu"}, "--hbm-backend"},
      {{"--hbm-backend", "cpu", "--hbm-capacity", "1MiB"}, "--hbm-capacity"},
      {{"--hbm-segment", "lots"}, "--hbm-segment"},
  };
  for (const auto& [args, says] : cases) {
    std::vector<std::string> argv = {BinPath("kvtierd"), "--socket", "/tmp/kvtier-hbm-flags.sock"};
    argv.insert(argv.end(), args.begin(), args.end());
    ProcessResult r = RunProgram(argv, 20);
    EXPECT_EQ(r.exit_code, 1) << says << ": " << r.output;
    EXPECT_NE(r.output.find(says), std::string::npos) << r.output;
    EXPECT_EQ(r.output.find("ready"), std::string::npos) << r.output;
  }
}

}  // namespace
}  // namespace kvtier::testing
