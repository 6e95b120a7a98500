#include "cli_format.h"

#include <sstream>

#include "gtest/gtest.h"
#include "table.h"

namespace kvtier::cli {
namespace {

TEST(CliFormatTest, NamespaceIdsRoundTrip) {
  EXPECT_EQ(NamespaceIdToHex(0x1234), "0000000000001234");
  uint64_t id = 0;
  ASSERT_TRUE(ParseNamespaceId("00000000deadBEEF", "--ns", &id).ok());
  EXPECT_EQ(id, 0xdeadbeefULL);
  ASSERT_TRUE(ParseNamespaceId("0xffffffffffffffff", "--ns", &id).ok());
  EXPECT_EQ(id, ~0ULL);
  ASSERT_TRUE(ParseNamespaceId("1f", "--ns", &id).ok());
  EXPECT_EQ(id, 0x1fULL);
}

TEST(CliFormatTest, BadNamespaceIdsNameTheFlag) {
  uint64_t id = 7;
  for (const char* bad : {"", "0x", "12345678901234567", "xyz", "12 3"}) {
    Status s = ParseNamespaceId(bad, "--ns", &id);
    EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << bad;
    EXPECT_EQ(s.message().rfind("--ns: ", 0), 0u) << s.message();
  }
  EXPECT_EQ(id, 7u);
}

TEST(CliFormatTest, KeysRoundTrip) {
  const BlockKey key{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
  EXPECT_EQ(KeyToHex(key), "fedcba98765432100123456789abcdef");
  BlockKey parsed;
  ASSERT_TRUE(ParseKey(KeyToHex(key), &parsed).ok());
  EXPECT_EQ(parsed, key);
  EXPECT_EQ(ParseKey("abc", &parsed).code(), Status::Code::kInvalidArgument);
}

TEST(CliFormatTest, Durations) {
  EXPECT_EQ(FormatDuration(850), "850ms");
  EXPECT_EQ(FormatDuration(12345), "12.3s");
  EXPECT_EQ(FormatDuration(245000), "4m 05s");
  EXPECT_EQ(FormatDuration(3 * 3600000 + 12 * 60000), "3h 12m");
  EXPECT_EQ(FormatDuration(2 * 86400000ULL + 4 * 3600000), "2d 04h");
}

TEST(CliFormatTest, Percent) {
  EXPECT_EQ(FormatPercent(1, 8), "12.5%");
  EXPECT_EQ(FormatPercent(0, 0), "-");
}

TEST(TableTest, AlignsColumns) {
  Table table({{"NAME"}, {"SIZE", Table::Align::kRight}, {"STATE"}});
  table.AddRow({"dram", "64.00 MiB", "ok"});
  table.AddRow({"nvme-long", "1 B", "x"});
  std::ostringstream out;
  table.Print(out);
  EXPECT_EQ(out.str(),
            "NAME            SIZE  STATE\n"
            "dram       64.00 MiB  ok\n"
            "nvme-long        1 B  x\n");
}

TEST(TableTest, HiddenHeader) {
  Table table({{""}, {""}});
  table.HideHeader();
  table.AddRow({"node", "a"});
  table.AddRow({"namespaces", "2"});
  std::ostringstream out;
  table.Print(out);
  EXPECT_EQ(out.str(), "node        a\nnamespaces  2\n");
}

}  // namespace
}  // namespace kvtier::cli
