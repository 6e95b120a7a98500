// The HTTP origin of the weight-cache tests (tests/support/nginx_origin.h) tested on its own,
// with curl as the reader: range requests, the bytes-served count from the access log, the fault
// locations, kill and restart, and the aggregate tbf cap of the namespace mode.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/local_daemon.h"
#include "gtest/gtest.h"
#include "tests/support/nginx_origin.h"
#include "tests/support/wait.h"

namespace kvtier::testing {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class OutDir {
 public:
  OutDir() {
    char tmpl[] = "/tmp/kvtier-origin-out-XXXXXX";
    path_ = mkdtemp(tmpl) != nullptr ? tmpl : "/tmp";
  }
  ~OutDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Starts an origin in a namespace, or says why the test skips.
#define START_NAMESPACED_OR_SKIP(var, options)                      \
  auto var##_or = NginxOrigin::Start(options);                      \
  if (var##_or.status().code() == absl::StatusCode::kUnavailable) { \
    GTEST_SKIP() << "skipped: " << var##_or.status().message();     \
  }                                                                 \
  ASSERT_TRUE(var##_or.ok()) << var##_or.status();                  \
  std::unique_ptr<NginxOrigin> var = std::move(*var##_or)

TEST(NginxOriginTest, RangeRequestReturnsTheRightBytesAndIsCounted) {
  auto origin = NginxOrigin::Start();
  ASSERT_TRUE(origin.ok()) << origin.status();
  auto path = (*origin)->WriteRandomFile("model/w.bin", 1 << 20, 7);
  ASSERT_TRUE(path.ok()) << path.status();
  const std::string want = ReadFile(*path);
  OutDir out;

  CurlResult r = CurlFetch((*origin)->Url("model/w.bin"), out.File("part"), "1000-200999");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.http_status, 206);
  EXPECT_TRUE(absl::StrContains(r.headers, "ETag:")) << r.headers;
  EXPECT_TRUE(absl::StrContains(r.headers, "Last-Modified:")) << r.headers;
  EXPECT_TRUE(absl::StrContains(r.headers, "Content-Range: bytes 1000-200999/1048576"))
      << r.headers;
  EXPECT_EQ(ReadFile(out.File("part")), want.substr(1000, 200000));

  r = CurlFetch((*origin)->Url("model/w.bin"), out.File("whole"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.http_status, 200);
  EXPECT_EQ(ReadFile(out.File("whole")), want);
  auto sha_in = Sha256OfFile(*path);
  auto sha_out = Sha256OfFile(out.File("whole"));
  ASSERT_TRUE(sha_in.ok() && sha_out.ok());
  EXPECT_EQ(*sha_in, *sha_out);

  // The access log counts exactly what was sent, per path and in total.
  const std::vector<AccessLogEntry> log = (*origin)->AccessLog();
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].status, 206);
  EXPECT_EQ(log[0].body_bytes, 200000u);
  EXPECT_EQ(log[0].range, "bytes=1000-200999");
  EXPECT_EQ(log[0].path, "/model/w.bin");
  EXPECT_EQ(log[1].range, "");
  EXPECT_EQ((*origin)->BytesServed("/model/w.bin"), 200000u + (1u << 20));
  EXPECT_EQ((*origin)->BytesServed(), 200000u + (1u << 20));
  EXPECT_EQ((*origin)->BytesServed("/other"), 0u);
}

TEST(NginxOriginTest, FaultLocations) {
  NginxOriginOptions options;
  options.cut_after_bytes = 100 * 1024;
  auto origin = NginxOrigin::Start(options);
  ASSERT_TRUE(origin.ok()) << origin.status();
  ASSERT_TRUE((*origin)->WriteRandomFile("w.bin", 1 << 20, 1).ok());
  OutDir out;

  CurlResult r = CurlFetch((*origin)->Url("missing.bin"), out.File("a"));
  EXPECT_EQ(r.http_status, 404) << r.output;
  r = CurlFetch((*origin)->Url("error500/w.bin"), out.File("b"));
  EXPECT_EQ(r.http_status, 500) << r.output;
  // No response at all.
  r = CurlFetch((*origin)->Url("close/w.bin"), out.File("c"));
  EXPECT_EQ(r.exit_code, 52) << r.output;  // CURLE_GOT_NOTHING
  // Headers promise the whole range; the connection closes after cut_after_bytes.
  r = CurlFetch((*origin)->Url("cut/w.bin"), out.File("d"), "0-524287", 20);
  EXPECT_EQ(r.exit_code, 18) << r.output;  // CURLE_PARTIAL_FILE
  EXPECT_EQ(r.http_status, 206);
  EXPECT_LT(std::filesystem::file_size(out.File("d")), 524288u);
  EXPECT_GE(std::filesystem::file_size(out.File("d")), 100u * 1024);
  // The fault locations are logged like any request (the cut one with what it really sent).
  EXPECT_GE((*origin)->BytesServed("/cut/w.bin"), 100u * 1024);
  EXPECT_LT((*origin)->BytesServed("/cut/w.bin"), 524288u);
  EXPECT_EQ((*origin)->AccessLog().size(), 4u);
}

TEST(NginxOriginTest, KillBreaksATransferAndRestartServesAgain) {
  NginxOriginOptions options;
  options.slow_rate_bytes_per_sec = 128 * 1024;
  auto origin = NginxOrigin::Start(options);
  ASSERT_TRUE(origin.ok()) << origin.status();
  ASSERT_TRUE((*origin)->WriteRandomFile("w.bin", 4 << 20, 2).ok());
  OutDir out;

  CurlResult slow;
  std::thread reader(
      [&] { slow = CurlFetch((*origin)->Url("slow/w.bin"), out.File("slow"), "", 60); });
  EXPECT_TRUE(WaitUntil([&] { return (*origin)->ResponsesInFlight() >= 1; }, absl::Seconds(10)));
  (*origin)->Kill();
  reader.join();
  EXPECT_NE(slow.exit_code, 0) << slow.output;
  EXPECT_LT(std::filesystem::file_size(out.File("slow")), 4u << 20);

  ASSERT_TRUE((*origin)->Restart().ok());
  CurlResult r = CurlFetch((*origin)->Url("w.bin"), out.File("w"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(std::filesystem::file_size(out.File("w")), 4u << 20);
}

TEST(NginxOriginTest, NamespaceIsRemovedOnDestruction) {
  NginxOriginOptions options;
  options.network_namespace = true;
  std::string netns;
  {
    START_NAMESPACED_OR_SKIP(origin, options);
    netns = origin->netns();
    ASSERT_FALSE(netns.empty());
    EXPECT_FALSE(absl::StartsWith(origin->host(), "127."));
    ASSERT_TRUE(origin->WriteRandomFile("w.bin", 64 * 1024, 3).ok());
    OutDir out;
    CurlResult r = CurlFetch(origin->Url("w.bin"), out.File("w"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(origin->BytesServed(), 64u * 1024);
  }
  ProcessResult list = RunProgram({"/usr/sbin/ip", "netns", "list"}, 10);
  EXPECT_FALSE(absl::StrContains(list.output, netns)) << list.output;
}

// The tbf cap is an aggregate: 4 parallel readers of one file take about 4 times as long as one
// (a per-connection limit would let them take as long as one).
TEST(NginxOriginTest, TbfCapIsSharedByParallelReaders) {
  NginxOriginOptions options;
  options.network_namespace = true;
  options.rate_bits_per_sec = 32'000'000;  // 4 MB/s
  START_NAMESPACED_OR_SKIP(origin, options);
  constexpr uint64_t kSize = 4 << 20;
  auto path = origin->WriteRandomFile("w.bin", kSize, 4);
  ASSERT_TRUE(path.ok()) << path.status();
  auto want = Sha256OfFile(*path);
  ASSERT_TRUE(want.ok()) << want.status();
  OutDir out;

  absl::Time start = absl::Now();
  CurlResult one = CurlFetch(origin->Url("w.bin"), out.File("one"));
  const absl::Duration single = absl::Now() - start;
  ASSERT_EQ(one.exit_code, 0) << one.output;

  std::vector<CurlResult> results(4);
  std::vector<std::thread> readers;
  start = absl::Now();
  for (int i = 0; i < 4; ++i) {
    readers.emplace_back(
        [&, i] { results[i] = CurlFetch(origin->Url("w.bin"), out.File(absl::StrCat("p", i))); });
  }
  for (std::thread& t : readers) t.join();
  const absl::Duration parallel = absl::Now() - start;
  for (int i = 0; i < 4; ++i) {
    ASSERT_EQ(results[i].exit_code, 0) << results[i].output;
    EXPECT_EQ(*Sha256OfFile(out.File(absl::StrCat("p", i))), *want);
  }
  EXPECT_EQ(origin->BytesServed("/w.bin"), 5 * kSize);
  // One reader runs at the cap (4 MiB at 4 MB/s is ~1.05 s; the bucket lets a little through
  // at once), and four share it.
  EXPECT_GE(single, absl::Milliseconds(700)) << "the cap did not apply";
  EXPECT_GE(parallel, single * 3) << "single " << single << ", 4 parallel " << parallel;
  std::cout << "tbf 32 Mbit/s, 4 MiB: one reader " << single << ", 4 parallel " << parallel << "\n";
}

}  // namespace
}  // namespace kvtier::testing
