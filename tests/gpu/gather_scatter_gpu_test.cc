// GatherDevice/ScatterDevice against the CPU implementation on random data (fresh per run; seed
// printed). Needs a CUDA device; skips cleanly without one. Label `gpu`.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <iostream>
#include <random>
#include <vector>

#include "cuda/cpu_gather_scatter.h"
#include "cuda/gather_scatter.h"

namespace kvtier::cuda {
namespace {

#define ASSERT_CUDA(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

// Host and device copies of one paged cache with padded strides.
struct Mirror {
  std::vector<std::vector<std::byte>> host;
  std::vector<std::byte*> host_bases, device_bases;
  PagedKv shape;  // strides and sizes; bases filled by Host()/Device()

  PagedKv Host() const {
    PagedKv kv = shape;
    kv.layer_bases = host_bases;
    return kv;
  }
  PagedKv Device() const {
    PagedKv kv = shape;
    kv.layer_bases = device_bases;
    return kv;
  }
  ~Mirror() {
    for (std::byte* p : device_bases) (void)cudaFree(p);
  }
};

void Fill(std::vector<std::byte>& bytes, std::mt19937_64& rng) {
  for (auto& b : bytes) b = static_cast<std::byte>(rng());
}

class GpuGatherScatterTest : public ::testing::TestWithParam<KvLayout> {
 protected:
  void SetUp() override {
    if (DeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
    const uint64_t seed = std::random_device{}();
    std::cout << "seed " << seed << "\n";
    rng_.seed(seed);
    ASSERT_CUDA(cudaStreamCreate(&stream_));
  }
  void TearDown() override {
    if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
  }

  void Make(Mirror& m) {
    PagedKv& kv = m.shape;
    kv.layout = GetParam();
    kv.num_layers = 5;
    kv.num_blocks = 11;
    kv.block_size = 16;
    kv.kv_heads = kv.layout == KvLayout::kMla ? 1 : 4;
    kv.head_size = kv.layout == KvLayout::kMla ? 72 : 64;
    kv.element_bytes = 2;
    SetCompactStrides(kv);
    const int64_t pad = 48;  // keeps 16-byte alignment: the vector path
    int64_t bytes = 0;
    switch (kv.layout) {
      case KvLayout::kFlash:
        kv.block_stride_bytes += pad;
        kv.kv_stride_bytes = kv.num_blocks * kv.block_stride_bytes + pad;
        bytes = kv.kv_stride_bytes + kv.num_blocks * kv.block_stride_bytes;
        break;
      case KvLayout::kFlashInfer:
      case KvLayout::kMla:
        kv.block_stride_bytes += pad;
        bytes = kv.num_blocks * kv.block_stride_bytes;
        break;
      case KvLayout::kContiguous:
        kv.layer_stride_bytes += pad;
        kv.block_stride_bytes = kv.num_layers * kv.layer_stride_bytes + pad;
        bytes = kv.num_blocks * kv.block_stride_bytes;
        break;
    }
    m.host.resize(kv.layout == KvLayout::kContiguous ? 1 : kv.num_layers);
    for (auto& h : m.host) {
      h.resize(bytes);
      Fill(h, rng_);
      m.host_bases.push_back(h.data());
      void* d = nullptr;
      ASSERT_CUDA(cudaMalloc(&d, bytes));
      m.device_bases.push_back(static_cast<std::byte*>(d));
      ASSERT_CUDA(cudaMemcpy(d, h.data(), bytes, cudaMemcpyHostToDevice));
    }
  }

  std::mt19937_64 rng_;
  cudaStream_t stream_ = nullptr;
};

TEST_P(GpuGatherScatterTest, MatchesCpu) {
  Mirror m;
  ASSERT_NO_FATAL_FAILURE(Make(m));
  const std::vector<int32_t> ids = {7, 0, 3, 10, 1, 5, 9};
  const int64_t staging_bytes = ids.size() * StagingBlockBytes(m.shape);
  int32_t* d_ids = nullptr;
  std::byte* d_staging = nullptr;
  ASSERT_CUDA(cudaMalloc(&d_ids, ids.size() * sizeof(int32_t)));
  ASSERT_CUDA(cudaMalloc(&d_staging, staging_bytes));
  ASSERT_CUDA(cudaMemcpy(d_ids, ids.data(), ids.size() * sizeof(int32_t), cudaMemcpyHostToDevice));
  ASSERT_CUDA(cudaMemset(d_staging, 0xCD, staging_bytes));

  // Gather.
  std::vector<std::byte> want(staging_bytes), got(staging_bytes);
  ASSERT_TRUE(GatherCpu(m.Host(), ids, want.data()).ok());
  ASSERT_TRUE(GatherDevice(m.Device(), d_ids, ids.size(), d_staging, stream_).ok());
  ASSERT_CUDA(cudaStreamSynchronize(stream_));
  ASSERT_CUDA(cudaMemcpy(got.data(), d_staging, staging_bytes, cudaMemcpyDeviceToHost));
  EXPECT_TRUE(got == want);

  // Scatter fresh random staging into both copies; the whole caches must then agree.
  Fill(want, rng_);
  ASSERT_CUDA(cudaMemcpy(d_staging, want.data(), staging_bytes, cudaMemcpyHostToDevice));
  ASSERT_TRUE(ScatterCpu(want.data(), ids, m.Host()).ok());
  ASSERT_TRUE(ScatterDevice(d_staging, d_ids, ids.size(), m.Device(), stream_).ok());
  ASSERT_CUDA(cudaStreamSynchronize(stream_));
  for (size_t l = 0; l < m.host.size(); ++l) {
    std::vector<std::byte> device(m.host[l].size());
    ASSERT_CUDA(
        cudaMemcpy(device.data(), m.device_bases[l], device.size(), cudaMemcpyDeviceToHost));
    EXPECT_TRUE(device == m.host[l]) << "layer buffer " << l;
  }
  (void)cudaFree(d_ids);
  (void)cudaFree(d_staging);
}

INSTANTIATE_TEST_SUITE_P(AllLayouts, GpuGatherScatterTest,
                         testing::Values(KvLayout::kFlash, KvLayout::kFlashInfer, KvLayout::kMla,
                                         KvLayout::kContiguous),
                         [](const auto& info) { return std::string(KvLayoutName(info.param)); });

}  // namespace
}  // namespace kvtier::cuda
