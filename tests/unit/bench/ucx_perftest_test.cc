#include "bench/ucx_perftest.h"

#include <gtest/gtest.h>

namespace kvtier::bench {
namespace {

TEST(UcxPerftestTest, ParsesTheFinalLineInGigabytesPerSecond) {
  const std::string output =
      "+----+\n"
      "[thread 0]               285      0.322  3497.347  3497.347      285.93     285.93  286  "
      "286\n"
      "Final:                   500      0.302  4237.591  3815.652      235.98     262.08  236  "
      "262\n";
  auto gbps = ParseUcxPerftestGbps(output);
  ASSERT_TRUE(gbps.ok()) << gbps.status();
  EXPECT_NEAR(*gbps, 262.08 * 1048576 / 1e9, 1e-9);  // MB/s there are MiB/s
}

TEST(UcxPerftestTest, RejectsOutputWithoutAResult) {
  EXPECT_FALSE(ParseUcxPerftestGbps("").ok());
  EXPECT_FALSE(ParseUcxPerftestGbps("Waiting for connection...\n").ok());
  EXPECT_FALSE(ParseUcxPerftestGbps("Final: 1 2 3\n").ok());
}

// A real, short run: server and client on loopback over tcp, then the processes are gone.
TEST(UcxPerftestTest, MeasuresTagBandwidthOverLoopbackTcp) {
  if (!FindUcxPerftest().ok()) GTEST_SKIP() << FindUcxPerftest().status();
  UcxPerftestOptions options;
  options.tls = "tcp";
  options.bytes = 64 * 1024;
  options.tests = {"tag_bw", "no_such_test"};
  options.iterations = 200;
  options.timeout_s = 20;
  auto result = RunUcxPerftest(options);
  ASSERT_TRUE(result.ok()) << result.status();
  ASSERT_EQ(result->figures.size(), 2u);
  EXPECT_GT(result->figures[0].gbps, 0) << result->figures[0].error;
  EXPECT_FALSE(result->figures[1].error.empty());
  EXPECT_EQ(result->best_test, "tag_bw");
  EXPECT_EQ(result->best_two_sided_test, "tag_bw");
}

}  // namespace
}  // namespace kvtier::bench
