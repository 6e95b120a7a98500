#include "server/dram/arena.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>

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

}  // namespace
}  // namespace kvtier
