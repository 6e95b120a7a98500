#include "server/dram/arena.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>

namespace kvtier {
namespace {

TEST(ArenaTest, SharedMappingSeesTheSameBytes) {
  auto arena = Arena::Create((8 << 20) + 123, "test-arena");
  ASSERT_TRUE(arena.ok()) << arena.status();
  EXPECT_EQ((*arena)->size(), 8u << 20);  // rounded down to whole pages
  EXPECT_NE((*arena)->generation(), 0u);
  // A second mapping of the fd (as a client makes) shares the bytes.
  void* other =
      mmap(nullptr, (*arena)->size(), PROT_READ | PROT_WRITE, MAP_SHARED, (*arena)->fd(), 0);
  ASSERT_NE(other, MAP_FAILED);
  std::memcpy((*arena)->base() + 4096, "kvtier", 6);
  EXPECT_EQ(std::memcmp(static_cast<char*>(other) + 4096, "kvtier", 6), 0);
  munmap(other, (*arena)->size());
}

TEST(ArenaTest, RejectsAnArenaBelowOnePage) {
  auto arena = Arena::Create(100, "tiny");
  ASSERT_FALSE(arena.ok());
  EXPECT_NE(arena.status().message().find("--dram-capacity"), std::string::npos);
}

// The kernel's shmem THP setting, read here independently of the arena's own reading.
std::string ShmemThp() {
  std::ifstream in("/sys/kernel/mm/transparent_hugepage/shmem_enabled");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t open = text.find('['), close = text.find(']');
  return open == std::string::npos || close == std::string::npos
             ? ""
             : text.substr(open + 1, close - open - 1);
}
bool ThpAllowed() {
  const std::string s = ShmemThp();
  return s == "advise" || s == "always" || s == "within_size" || s == "force";
}

// Writes through the arena and reads through a client's mapping of its fd, and back.
void ExpectSharedBytes(const Arena& arena) {
  void* other = mmap(nullptr, arena.size(), PROT_READ | PROT_WRITE, MAP_SHARED, arena.fd(), 0);
  ASSERT_NE(other, MAP_FAILED);
  const uint64_t last = arena.size() - 8;
  std::memcpy(arena.base() + last, "kvtier!", 8);
  EXPECT_EQ(std::memcmp(static_cast<char*>(other) + last, "kvtier!", 8), 0);
  std::memcpy(static_cast<char*>(other) + 4096, "client", 6);
  EXPECT_EQ(std::memcmp(arena.base() + 4096, "client", 6), 0);
  munmap(other, arena.size());
}

TEST(ArenaTest, ParsesPageKindsAndNamesTheFlagOnBadOnes) {
  EXPECT_EQ(*ParseArenaPages("auto"), ArenaPages::kAuto);
  EXPECT_EQ(*ParseArenaPages("4k"), ArenaPages::kSmall);
  EXPECT_EQ(*ParseArenaPages("thp"), ArenaPages::kTransparent);
  EXPECT_EQ(*ParseArenaPages("hugetlb"), ArenaPages::kHugeTlb);
  absl::StatusOr<ArenaPages> bad = ParseArenaPages("2m");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("--arena-pages"), std::string::npos);
}

TEST(ArenaTest, SmallPagesAreWhatTheySay) {
  auto arena = Arena::Create(8 << 20, "small", ArenaPages::kSmall);
  ASSERT_TRUE(arena.ok()) << arena.status();
  EXPECT_EQ((*arena)->pages_in_use(), ArenaPages::kSmall);
  EXPECT_EQ((*arena)->pages_detail(), "4 KiB");
  ExpectSharedBytes(**arena);
}

// THP on shared memory depends on the kernel's setting: where it allows it the arena must get
// 2 MiB pages (aligned, so the kernel can map them whole); where not, 4 KiB pages and a detail
// that says why. Either way the memory works as an arena.
TEST(ArenaTest, TransparentHugePagesWhereTheKernelAllowsThem) {
  auto arena = Arena::Create(16 << 20, "thp", ArenaPages::kTransparent);
  ASSERT_TRUE(arena.ok()) << arena.status();
  EXPECT_EQ(reinterpret_cast<uintptr_t>((*arena)->base()) % Arena::kHugePage, 0u);
  if (ThpAllowed()) {
    EXPECT_EQ((*arena)->pages_in_use(), ArenaPages::kTransparent) << (*arena)->pages_detail();
    EXPECT_EQ((*arena)->pages_detail(), "2 MiB (thp)");
  } else {
    EXPECT_EQ((*arena)->pages_in_use(), ArenaPages::kSmall);
    EXPECT_NE((*arena)->pages_detail().find("thp declined"), std::string::npos)
        << (*arena)->pages_detail();
  }
  ExpectSharedBytes(**arena);
}

// Reserved huge pages: with too few reserved (CI has none) the arena is refused with an error
// that names the flag and the sysctl; with enough it is made of them, rounded down to 2 MiB.
TEST(ArenaTest, HugeTlbPagesOrAClearRefusal) {
  auto arena = Arena::Create((4 << 20) + 4096, "hugetlb", ArenaPages::kHugeTlb);
  if (!arena.ok()) {
    EXPECT_NE(arena.status().message().find("--arena-pages hugetlb"), std::string::npos)
        << arena.status();
    return;
  }
  EXPECT_EQ((*arena)->size(), 4u << 20);
  EXPECT_EQ((*arena)->pages_in_use(), ArenaPages::kHugeTlb);
  EXPECT_EQ((*arena)->pages_detail(), "2 MiB (hugetlb)");
  ExpectSharedBytes(**arena);
}

TEST(ArenaTest, AutoTakesTheBestPagesTheMachineOffers) {
  auto arena = Arena::Create(8 << 20, "auto", ArenaPages::kAuto);
  ASSERT_TRUE(arena.ok()) << arena.status();
  const ArenaPages got = (*arena)->pages_in_use();
  EXPECT_NE(got, ArenaPages::kAuto);
  if (got == ArenaPages::kSmall && !ThpAllowed()) {
    // Says how to get huge pages.
    EXPECT_NE((*arena)->pages_detail().find("shmem_enabled"), std::string::npos)
        << (*arena)->pages_detail();
  }
  if (ThpAllowed()) {
    EXPECT_NE(got, ArenaPages::kSmall) << (*arena)->pages_detail();
  }
  ExpectSharedBytes(**arena);
}

}  // namespace
}  // namespace kvtier
