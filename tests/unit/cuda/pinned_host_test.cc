// Pinning host memory: without a device it fails cleanly with "no device" and never aborts; the
// mapping lookup the registry uses finds the mapping holding an address.
#include "cuda/pinned_host.h"

#include <sys/mman.h>

#include <vector>

#include "cuda/gather_scatter.h"
#include "gtest/gtest.h"

namespace kvtier::cuda {
namespace {

TEST(PinnedHostTest, RejectsAnEmptyRange) {
  EXPECT_EQ(PinHostRange(nullptr, 10).status().code(), absl::StatusCode::kInvalidArgument);
  int x = 0;
  EXPECT_EQ(PinHostRange(&x, 0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PinnedHostTest, WithoutADeviceSaysNoDevice) {
  if (DeviceCount() > 0) GTEST_SKIP() << "a CUDA device is present (tests/gpu covers pinning)";
  std::vector<char> buffer(1 << 16);
  absl::StatusOr<PinnedHostRange> pinned = PinHostRange(buffer.data(), buffer.size());
  ASSERT_EQ(pinned.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(pinned.status().message().find("no device"), std::string::npos);
  HostPinRegistry registry;
  const void* ptrs[] = {buffer.data()};
  EXPECT_EQ(registry.EnsurePinned(ptrs, 1).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(registry.pinned_mappings(), 0u);
}

TEST(PinnedHostTest, FindsTheMappingOfAnAddress) {
  const size_t bytes = 4 << 20;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  uintptr_t begin = 0, end = 0;
  ASSERT_TRUE(FindMapping(static_cast<char*>(p) + 12345, &begin, &end).ok());
  EXPECT_LE(begin, reinterpret_cast<uintptr_t>(p));
  EXPECT_GE(end, reinterpret_cast<uintptr_t>(p) + bytes);
  munmap(p, bytes);
  EXPECT_EQ(FindMapping(reinterpret_cast<void*>(16), &begin, &end).code(),
            absl::StatusCode::kNotFound);
}

TEST(PinnedHostTest, AnEmptyHandleIsInert) {
  PinnedHostRange range;
  EXPECT_FALSE(range.pinned());
  range.Reset();
  PinnedHostRange moved = std::move(range);
  EXPECT_FALSE(moved.pinned());
}

}  // namespace
}  // namespace kvtier::cuda
