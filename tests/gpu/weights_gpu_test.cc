// WeightDeviceReader's cuda backend through a real kvtierd: a file:// model read straight into
// device memory (each chunk one DMA from the pinned arena mapping), copied back and compared byte
// for byte. Skips without a device ("no CUDA device").
#include "kvtier/weights_gpu.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <vector>

#include "common/local_daemon.h"
#include "cuda/gather_scatter.h"
#include "kvtier/weights.h"
#include "tests/support/bin_path.h"
#include "tests/support/random_bytes.h"

namespace kvtier {
namespace {

#define ASSERT_CUDA(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

constexpr uint64_t kChunk = 1 << 20;

TEST(WeightsGpuTest, ReadToDeviceIsByteExact) {
  if (cuda::DeviceCount() == 0) GTEST_SKIP() << "no CUDA device";
  const std::string dir =
      std::filesystem::temp_directory_path() / ("kvtw-gpu-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const auto bytes = testing::RandomBytes(6 * kChunk + 4097, 99);
  {
    std::ofstream out(dir + "/model.bin", std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
  }
  auto d = LocalDaemon::Start(testing::BinPath("kvtierd"),
                              {"--dram-capacity", "128MiB", "--weight-chunk-size", "1MiB"});
  ASSERT_TRUE(d.ok()) << d.status();
  ClientOptions options;
  options.socket_path = (*d)->socket_path();
  std::unique_ptr<WeightClient> weights;
  ASSERT_TRUE(WeightClient::Connect(options, &weights).ok());
  WeightFile f;
  ASSERT_TRUE(weights->OpenFile("file://" + dir + "/model.bin", &f).ok());
  std::unique_ptr<WeightDeviceReader> gpu;
  Status s = WeightDeviceReader::Create(weights.get(), GpuBackend::kCuda, &gpu);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_STREQ(gpu->backend(), "cuda");

  ASSERT_CUDA(cudaSetDevice(0));
  cudaStream_t stream = nullptr;
  ASSERT_CUDA(cudaStreamCreate(&stream));
  void* device = nullptr;
  ASSERT_CUDA(cudaMalloc(&device, bytes.size()));
  ASSERT_CUDA(cudaMemset(device, 0xA5, bytes.size()));
  // The whole file, then a range cutting chunks at odd offsets over it at another place.
  s = gpu->ReadToDevice(f, 0, bytes.size(), device, stream);
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::vector<std::byte> back(bytes.size());
  ASSERT_CUDA(cudaMemcpy(back.data(), device, bytes.size(), cudaMemcpyDeviceToHost));
  EXPECT_TRUE(back == bytes);

  const uint64_t from = kChunk - 5, length = 3 * kChunk + 11;
  ASSERT_CUDA(cudaMemset(device, 0, bytes.size()));
  s = gpu->ReadToDevice(f, from, length, static_cast<std::byte*>(device) + 1, stream);
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::vector<std::byte> part(length + 2);
  ASSERT_CUDA(cudaMemcpy(part.data(), device, part.size(), cudaMemcpyDeviceToHost));
  EXPECT_EQ(part.front(), std::byte{0});
  EXPECT_EQ(part.back(), std::byte{0});
  EXPECT_TRUE(
      std::equal(part.begin() + 1, part.end() - 1, bytes.begin() + static_cast<ptrdiff_t>(from)));

  ASSERT_CUDA(cudaFree(device));
  ASSERT_CUDA(cudaStreamDestroy(stream));
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kvtier
