// The device API on a machine without a usable GPU (this CI): it must answer, never crash, and
// validate its arguments before any CUDA call. The GPU-vs-CPU checks are gather_scatter_gpu_test.
#include "cuda/gather_scatter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <iostream>
#include <string>
#include <vector>

#include "cuda/gpu_copier.h"

namespace kvtier::cuda {
namespace {

using ::testing::HasSubstr;

PagedKv FlashShape(std::span<std::byte* const> bases) {
  PagedKv kv;
  kv.layout = KvLayout::kFlash;
  kv.layer_bases = bases;
  kv.num_layers = static_cast<int32_t>(bases.size());
  kv.num_blocks = 4;
  kv.block_size = 2;
  kv.kv_heads = 1;
  kv.head_size = 8;
  kv.element_bytes = 2;
  SetCompactStrides(kv);
  return kv;
}

TEST(DeviceApiTest, DeviceCountNeverFails) {
  const int count = DeviceCount();
  EXPECT_GE(count, 0);
  EXPECT_EQ(DeviceCount(), count);  // stable, and calling twice is fine
  if (!CudaBuilt()) {
    EXPECT_EQ(count, 0);
  }
  std::cout << "CudaBuilt()=" << CudaBuilt() << " DeviceCount()=" << count << "\n";
}

TEST(DeviceApiTest, ArgumentsAreCheckedBeforeAnyCudaCall) {
  std::byte dummy[8];
  std::vector<std::byte*> bases(2, dummy);
  const int32_t ids = 0;
  const PagedKv kv = FlashShape(bases);
  EXPECT_THAT(std::string(GatherDevice(kv, nullptr, 1, dummy, nullptr).message()),
              HasSubstr("device_block_ids is null"));
  EXPECT_THAT(std::string(GatherDevice(kv, &ids, 1, nullptr, nullptr).message()),
              HasSubstr("staging is null"));
  EXPECT_THAT(std::string(ScatterDevice(dummy, &ids, -1, kv, nullptr).message()),
              HasSubstr("num_ids = -1"));
  PagedKv bad = kv;
  bad.block_size = 0;
  EXPECT_THAT(std::string(ScatterDevice(dummy, &ids, 1, bad, nullptr).message()),
              HasSubstr("PagedKv.block_size = 0"));

  std::vector<std::byte*> many(kMaxDeviceLayers + 1, dummy);
  const absl::Status s = GatherDevice(FlashShape(many), &ids, 1, dummy, nullptr);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("at most 256 on a device"));
}

TEST(DeviceApiTest, EmptyListIsANoOpEverywhere) {
  std::byte dummy[8];
  std::vector<std::byte*> bases(2, dummy);
  EXPECT_TRUE(GatherDevice(FlashShape(bases), nullptr, 0, nullptr, nullptr).ok());
  EXPECT_TRUE(ScatterDevice(nullptr, nullptr, 0, FlashShape(bases), nullptr).ok());
}

TEST(DeviceApiTest, CopiesFailCleanlyWithoutADevice) {
  if (DeviceCount() > 0) GTEST_SKIP() << "a device is present: see gather_scatter_gpu_test";
  // Host pointers are fine here: without a device nothing is ever dereferenced.
  std::byte dummy[8];
  std::vector<std::byte*> bases(2, dummy);
  const int32_t ids = 0;
  const absl::Status gather = GatherDevice(FlashShape(bases), &ids, 1, dummy, nullptr);
  const absl::Status scatter = ScatterDevice(dummy, &ids, 1, FlashShape(bases), nullptr);
  EXPECT_FALSE(gather.ok());
  EXPECT_FALSE(scatter.ok());
  const absl::StatusCode want =
      CudaBuilt() ? absl::StatusCode::kInternal : absl::StatusCode::kFailedPrecondition;
  EXPECT_EQ(gather.code(), want) << gather;
  EXPECT_EQ(scatter.code(), want) << scatter;
  EXPECT_THAT(std::string(gather.message()), HasSubstr("GatherDevice"));
}

}  // namespace
}  // namespace kvtier::cuda

namespace kvtier::cuda {
namespace {

// The kernel path's layer groups (per-layer completion): each group's part of a staging block is
// at least kMinCopyEngineRunBytes, never more layers than there are, at least one.
TEST(KernelLayerGroupTest, GroupsAreWorthADmaAndCoverEveryLayer) {
  std::vector<std::byte*> bases(32, nullptr);
  PagedKv kv = FlashShape(bases);
  kv.block_size = 16;
  kv.kv_heads = 8;
  kv.head_size = 128;
  SetCompactStrides(kv);  // a layer of a block: 2 x 32 KiB
  EXPECT_EQ(KernelLayerGroup(kv), 16);
  kv.num_layers = 5;
  EXPECT_EQ(KernelLayerGroup(kv), 5);
  kv.head_size = 16384;  // a layer of a block: 8 MiB, more than a DMA's worth alone
  EXPECT_EQ(KernelLayerGroup(kv), 1);
  kv.layout = KvLayout::kMla;
  kv.kv_heads = 1;
  kv.head_size = 576;  // 18 KiB a layer
  EXPECT_EQ(KernelLayerGroup(kv), 5);
}

TEST(DeviceApiTest, LayerRangesAreCheckedBeforeAnyCudaCall) {
  std::vector<std::byte*> bases(3, reinterpret_cast<std::byte*>(4096));
  const PagedKv kv = FlashShape(bases);
  const int32_t ids[1] = {0};
  std::byte* staging = reinterpret_cast<std::byte*>(8192);
  for (LayerRange bad :
       {LayerRange{-1, 1}, LayerRange{0, 0}, LayerRange{2, 2}, LayerRange{3, -1}}) {
    absl::Status s = GatherDevice(kv, ids, 1, staging, nullptr, bad);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << bad.first << "," << bad.count << ": " << s;
    s = ScatterDevice(staging, ids, 1, kv, nullptr, bad);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  }
}

}  // namespace
}  // namespace kvtier::cuda
