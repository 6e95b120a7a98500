// The CUDA GpuCopier against the CPU one on random data (fresh per run; seed printed): device
// cache → pinned host slots → another device cache, both copy paths (copy engine for large runs,
// kernel for small pieces), every layout, odd block counts, non-contiguous ids. Needs a CUDA
// device; skips cleanly without one. Label `gpu`.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstring>
#include <iostream>
#include <random>
#include <vector>

#include "cuda/gather_scatter.h"
#include "cuda/gpu_copier.h"
#include "cuda/kv_layout.h"

namespace kvtier::cuda {
namespace {

#define ASSERT_CUDA(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

struct Param {
  KvLayout layout;
  int32_t head_size;  // 8: kernel path; 16384+: copy-engine path (runs of >= 1 MiB)
};

class GpuCopierTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    if (DeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
    const uint64_t seed = std::random_device{}();
    std::cout << "seed " << seed << "\n";
    rng_.seed(seed);
    ASSERT_CUDA(cudaStreamCreate(&stream_));
    absl::StatusOr<std::unique_ptr<GpuCopier>> cuda = MakeCudaCopier();
    ASSERT_TRUE(cuda.ok()) << cuda.status();
    cuda_ = *std::move(cuda);
    cpu_ = MakeCpuCopier();
  }
  void TearDown() override {
    for (std::byte* p : device_allocs_) (void)cudaFree(p);
    if (stream_ != nullptr) (void)cudaStreamDestroy(stream_);
  }

  // A compact description of the parameter's layout; `bases` receives one tensor per base.
  PagedKv Shape(int32_t num_blocks) {
    PagedKv kv;
    kv.layout = GetParam().layout;
    kv.num_layers = 3;
    kv.num_blocks = num_blocks;
    kv.block_size = 16;
    kv.kv_heads = kv.layout == KvLayout::kMla ? 1 : 2;
    kv.head_size = GetParam().head_size;
    kv.element_bytes = 2;
    SetCompactStrides(kv);
    return kv;
  }
  int64_t TensorBytes(const PagedKv& kv) {
    return kv.layout == KvLayout::kFlash ? 2 * kv.kv_stride_bytes
                                         : kv.num_blocks * kv.block_stride_bytes;
  }
  int Bases(const PagedKv& kv) { return kv.layout == KvLayout::kContiguous ? 1 : kv.num_layers; }

  std::mt19937_64 rng_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<GpuCopier> cuda_, cpu_;
  std::vector<std::byte*> device_allocs_;
};

TEST_P(GpuCopierTest, DeviceToPinnedSlotsToDeviceMatchesCpu) {
  PagedKv kv = Shape(9);
  const int64_t tensor = TensorBytes(kv);
  const int64_t block = StagingBlockBytes(kv);
  // Host reference and a device copy of the same random cache.
  std::vector<std::vector<std::byte>> host(Bases(kv), std::vector<std::byte>(tensor));
  std::vector<std::byte*> host_bases, dev_bases, dst_bases;
  for (auto& t : host) {
    for (auto& b : t) b = static_cast<std::byte>(rng_());
    host_bases.push_back(t.data());
    std::byte* d = nullptr;
    ASSERT_CUDA(cudaMalloc(&d, tensor));
    device_allocs_.push_back(d);
    ASSERT_CUDA(cudaMemcpy(d, t.data(), tensor, cudaMemcpyHostToDevice));
    dev_bases.push_back(d);
    ASSERT_CUDA(cudaMalloc(&d, tensor));
    device_allocs_.push_back(d);
    ASSERT_CUDA(cudaMemset(d, 0xA5, tensor));
    dst_bases.push_back(d);
  }
  const std::vector<int32_t> ids = {6, 0, 3, 8, 1};  // odd, non-contiguous
  // Slots: one region, every other slot used, so adjacent-run merging is also exercised for
  // the used ones that do sit next to each other (none here) and not merged wrongly.
  std::vector<std::byte> arena(2 * ids.size() * block, std::byte{0x5A});
  std::vector<std::byte*> slots, want_slots;
  std::vector<std::vector<std::byte>> want(ids.size(), std::vector<std::byte>(block));
  for (size_t i = 0; i < ids.size(); ++i) {
    slots.push_back(arena.data() + 2 * i * block);
    want_slots.push_back(want[i].data());
  }
  PagedKv host_kv = kv, dev_kv = kv, dst_kv = kv;
  host_kv.layer_bases = host_bases;
  dev_kv.layer_bases = dev_bases;
  dst_kv.layer_bases = dst_bases;
  ASSERT_TRUE(cpu_->Gather(host_kv, ids, want_slots, nullptr, nullptr).ok());

  std::vector<std::shared_ptr<CopyFence>> fences;
  absl::Status s = cuda_->Gather(dev_kv, ids, slots, stream_, &fences);
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_EQ(fences.size(), 3u);
  for (auto& f : fences) ASSERT_TRUE(f->Wait().ok());
  for (size_t i = 0; i < ids.size(); ++i) {
    ASSERT_EQ(std::memcmp(slots[i], want[i].data(), block), 0) << "slot " << i;
  }

  // Scatter the slots into other (non-contiguous) blocks of the poisoned cache.
  const std::vector<int32_t> dst_ids = {2, 7, 4, 5, 0};
  std::vector<const std::byte*> cslots(slots.begin(), slots.end());
  s = cuda_->Scatter(cslots, dst_ids, dst_kv, stream_, &fences);
  ASSERT_TRUE(s.ok()) << s;
  for (auto& f : fences) ASSERT_TRUE(f->Wait().ok());
  std::vector<std::vector<std::byte>> back(Bases(kv), std::vector<std::byte>(tensor));
  std::vector<std::vector<std::byte>> expect(Bases(kv),
                                             std::vector<std::byte>(tensor, std::byte{0xA5}));
  std::vector<std::byte*> expect_bases;
  for (size_t t = 0; t < back.size(); ++t) {
    ASSERT_CUDA(cudaMemcpy(back[t].data(), dst_bases[t], tensor, cudaMemcpyDeviceToHost));
    expect_bases.push_back(expect[t].data());
  }
  PagedKv expect_kv = kv;
  expect_kv.layer_bases = expect_bases;
  ASSERT_TRUE(cpu_->Scatter(cslots, dst_ids, expect_kv, nullptr, nullptr).ok());
  for (size_t t = 0; t < back.size(); ++t) EXPECT_EQ(back[t], expect[t]) << "tensor " << t;
}

TEST_P(GpuCopierTest, ChoosesThePathByRunLength) {
  const PagedKv kv = Shape(4);
  const bool large = ContiguousRunBytes(kv) >= kMinCopyEngineRunBytes;
  EXPECT_EQ(ChooseCopyPath(kv), large ? CopyPath::kCopyEngine : CopyPath::kKernel);
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, GpuCopierTest,
    ::testing::Values(Param{KvLayout::kFlash, 8}, Param{KvLayout::kFlash, 16384},
                      Param{KvLayout::kFlashInfer, 8}, Param{KvLayout::kFlashInfer, 16384},
                      Param{KvLayout::kMla, 8}, Param{KvLayout::kMla, 32768},
                      Param{KvLayout::kContiguous, 8}, Param{KvLayout::kContiguous, 128},
                      Param{KvLayout::kContiguous, 16384}));

}  // namespace
}  // namespace kvtier::cuda
