#include "common/size.h"

#include <gtest/gtest.h>

namespace kvtier {
namespace {

TEST(SizeTest, ParsesBinaryAndDecimalUnits) {
  EXPECT_EQ(*ParseSize("512MiB", "x"), 512ULL << 20);
  EXPECT_EQ(*ParseSize("4GiB", "x"), 4ULL << 30);
  EXPECT_EQ(*ParseSize("4g", "x"), 4ULL << 30);
  EXPECT_EQ(*ParseSize("1.5KiB", "x"), 1536u);
  EXPECT_EQ(*ParseSize("2GB", "x"), 2000000000u);
  EXPECT_EQ(*ParseSize("4096", "x"), 4096u);
  EXPECT_EQ(*ParseSize(" 1 MiB ", "x"), 1ULL << 20);
}

TEST(SizeTest, RejectsGarbageNamingTheFlag) {
  for (const char* bad : {"", "MiB", "12 parsecs", "-1GiB", "1e999GiB"}) {
    auto r = ParseSize(bad, "--dram-capacity");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("--dram-capacity"), std::string::npos);
  }
}

TEST(SizeTest, FormatsHumanUnits) {
  EXPECT_EQ(FormatBytes(17), "17 B");
  EXPECT_EQ(FormatBytes(1536), "1.50 KiB");
  EXPECT_EQ(FormatBytes(4ULL << 30), "4.00 GiB");
}

}  // namespace
}  // namespace kvtier
