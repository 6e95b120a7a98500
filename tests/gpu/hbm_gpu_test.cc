// The HBM tier with the cuda backend, through a real kvtierd: GpuKv (cuda) saves device blocks,
// reads make them hot, the daemon promotes them into its cudaMalloc'd pool, and LoadKv reads them
// device-to-device through CUDA IPC. The daemon exports each segment (cudaIpcGetMemHandle) and
// this test process opens it (cudaIpcOpenMemHandle): IPC between two processes. Needs a CUDA
// device; skips cleanly without one. Label `gpu`.
//
// NOT RUN YET: no session so far had a GPU (docs/architecture.md, Status).
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <iostream>
#include <random>
#include <vector>

#include "absl/time/time.h"
#include "common/local_daemon.h"
#include "cuda/gather_scatter.h"
#include "kvtier/client.h"
#include "kvtier/gpu.h"
#include "tests/support/bin_path.h"
#include "tests/support/wait.h"

namespace kvtier {
namespace {

#define ASSERT_CUDA(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

// A device cache, vLLM flash layout, 4 layers, 16 tokens, 8 heads, head 128, bf16, with a host
// mirror of what it holds.
struct DeviceCache {
  PagedKV kv;
  std::vector<void*> tensors;
  int64_t tensor_bytes = 0;
  explicit DeviceCache(int32_t num_blocks) {
    kv.layout = KvLayout::kFlash;
    kv.num_layers = 4;
    kv.num_blocks = num_blocks;
    kv.block_size = 16;
    kv.kv_heads = 8;
    kv.head_size = 128;
    kv.element_bytes = 2;
    kv.FillCompactStrides();
    tensor_bytes = 2 * kv.kv_stride_bytes;
  }
  ~DeviceCache() {
    for (void* p : tensors) (void)cudaFree(p);
  }
  void Allocate(unsigned char fill) {
    for (int l = 0; l < kv.num_layers; ++l) {
      void* p = nullptr;
      ASSERT_CUDA(cudaMalloc(&p, tensor_bytes));
      ASSERT_CUDA(cudaMemset(p, fill, tensor_bytes));
      tensors.push_back(p);
      kv.layer_bases.push_back(p);
    }
  }
  void Upload(const std::vector<std::vector<unsigned char>>& host) {
    for (int l = 0; l < kv.num_layers; ++l) {
      ASSERT_CUDA(cudaMemcpy(tensors[l], host[l].data(), tensor_bytes, cudaMemcpyHostToDevice));
    }
  }
  std::vector<std::vector<unsigned char>> Download() {
    std::vector<std::vector<unsigned char>> host(kv.num_layers,
                                                 std::vector<unsigned char>(tensor_bytes));
    for (int l = 0; l < kv.num_layers; ++l) {
      EXPECT_EQ(cudaMemcpy(host[l].data(), tensors[l], tensor_bytes, cudaMemcpyDeviceToHost),
                cudaSuccess);
    }
    return host;
  }
};

// The staging bytes of block b of a host mirror (flash: per layer K piece then V piece).
std::vector<unsigned char> BlockOf(const PagedKV& kv,
                                   const std::vector<std::vector<unsigned char>>& host, int b) {
  const int64_t piece = kv.block_stride_bytes;
  std::vector<unsigned char> out;
  for (const auto& t : host) {
    for (int k = 0; k < 2; ++k) {
      const unsigned char* p = t.data() + k * kv.kv_stride_bytes + b * piece;
      out.insert(out.end(), p, p + piece);
    }
  }
  return out;
}

class HbmGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda::DeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
    auto d = LocalDaemon::Start(testing::BinPath("kvtierd"),
                                {"--dram-capacity", "256MiB", "--hbm-capacity", "64MiB", "--gpu",
                                 "0", "--hbm-segment", "32MiB"});
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
    ClientOptions options;
    options.socket_path = daemon_->socket_path();
    ASSERT_TRUE(Client::Connect(options, &client_).ok());
    ASSERT_CUDA(cudaSetDevice(0));
    ASSERT_CUDA(cudaStreamCreate(&stream_));
  }
  void TearDown() override {
    if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
  }
  TierStats Hbm() {
    DaemonStats stats;
    EXPECT_TRUE(client_->Stats(&stats).ok());
    for (const TierStats& t : stats.tiers) {
      if (t.name == "hbm") return t;
    }
    return {};
  }

  std::unique_ptr<LocalDaemon> daemon_;
  std::unique_ptr<Client> client_;
  cudaStream_t stream_ = nullptr;
};

TEST_F(HbmGpuTest, SaveOnGpuLoadOnGpuThroughTheHbmTier) {
  HbmTierInfo info;
  ASSERT_TRUE(client_->HbmTier(&info).ok());
  ASSERT_TRUE(info.present) << daemon_->ReadLog();
  EXPECT_EQ(info.backend, "cuda");
  EXPECT_EQ(info.segments, 2u);

  std::unique_ptr<GpuKv> gpu;
  ASSERT_TRUE(GpuKv::Create(client_.get(), GpuBackend::kCuda, &gpu).ok());
  const uint64_t seed = std::random_device{}();
  std::cout << "seed " << seed << "\n";
  std::mt19937_64 rng(seed);
  DeviceCache src(12);
  src.Allocate(0);
  std::vector<std::vector<unsigned char>> host(src.kv.num_layers,
                                               std::vector<unsigned char>(src.tensor_bytes));
  for (auto& t : host) {
    for (auto& b : t) b = static_cast<unsigned char>(rng());
  }
  src.Upload(host);

  NamespaceLayout layout;
  layout.model_id = "hbm-gpu-test";
  layout.layout_tag = "opaque";
  layout.block_bytes = src.kv.StagingBlockBytes();
  Namespace ns;
  ASSERT_TRUE(client_->RegisterNamespace(layout, &ns).ok());
  std::vector<BlockKey> keys(7);
  for (auto& k : keys) k = {rng(), rng()};
  src.kv.block_ids = {0, 2, 4, 6, 8, 10, 11};
  std::unique_ptr<KvTransfer> save;
  ASSERT_TRUE(gpu->SaveKv(ns, keys, src.kv, stream_, &save).ok());
  ASSERT_TRUE(save->Wait().ok());

  // Two reads through DRAM make the blocks hot; the daemon promotes them into its pool.
  for (int t = 0; t < 2; ++t) {
    DeviceCache tmp(12);
    tmp.Allocate(0);
    tmp.kv.block_ids = {1, 2, 3, 4, 5, 6, 7};
    std::unique_ptr<KvTransfer> load;
    ASSERT_TRUE(gpu->LoadKv(ns, keys, tmp.kv, stream_, &load).ok());
    ASSERT_TRUE(load->Wait().ok());
  }
  ASSERT_TRUE(testing::WaitUntil([&] { return Hbm().blocks == keys.size(); }, absl::Seconds(20)))
      << "hbm blocks " << Hbm().blocks << "\n"
      << daemon_->ReadLog();
  const uint64_t hits = Hbm().hits;

  DeviceCache dst(12);
  dst.Allocate(0xA5);
  dst.kv.block_ids = {11, 9, 7, 5, 3, 1, 0};
  std::unique_ptr<KvTransfer> load;
  ASSERT_TRUE(gpu->LoadKv(ns, keys, dst.kv, stream_, &load).ok());
  for (size_t l = 0; l < 4; ++l) EXPECT_TRUE(load->WaitLayer(l).ok());
  ASSERT_TRUE(load->Wait().ok());
  EXPECT_EQ(Hbm().hits, hits + keys.size()) << "read device-to-device from the pool";
  const auto out = dst.Download();
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(load->results()[i], BlockResult::kDone) << i;
    EXPECT_EQ(BlockOf(dst.kv, out, dst.kv.block_ids[i]), BlockOf(src.kv, host, src.kv.block_ids[i]))
        << i;
  }
  const std::vector<unsigned char> poison(src.kv.StagingBlockBytes(), 0xA5);
  EXPECT_EQ(BlockOf(dst.kv, out, 2), poison) << "blocks not named are untouched";
}

}  // namespace
}  // namespace kvtier
