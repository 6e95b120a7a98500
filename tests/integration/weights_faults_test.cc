// Origin faults under `kvtier weights pull` (issue 6), with a real nginx on loopback and real
// daemons: 404, 500, a connection closed before any answer, connections cut mid-chunk, nginx
// killed mid-transfer and restarted, a file that changes size during the pull, and an https
// origin whose certificate does or does not chain to --weight-ca-file. Each ends in
// a clear error (exit 1, one line naming the problem) or a retry that succeeds; never in a copy
// that differs from the origin's file; never a hang (every pull is bounded by kPullTimeoutS).
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "tests/integration/weights_fixture.h"
#include "tests/support/test_certs.h"
#include "tests/support/wait.h"

namespace kvtier::testing {
namespace {

constexpr uint64_t kFileSize = 2 << 20;  // 8 chunks of 256 KiB

class WeightsFaultsTest : public WeightsTest {
 protected:
  void SetUp() override {
    WeightsTest::SetUp();
    ASSERT_NO_FATAL_FAILURE(RequireWeightsCli());
  }

  // Origin (with `options`), the file w.bin of `size` bytes and `daemons` daemons; returns the
  // file's sha256.
  std::string Start(const NginxOriginOptions& options = {}, int daemons = 1,
                    uint64_t size = kFileSize) {
    StartOrigin(options);
    if (origin_ == nullptr) return "";
    auto path = origin_->WriteRandomFile("w.bin", size, 21);
    EXPECT_TRUE(path.ok()) << path.status();
    StartCluster(daemons);
    auto sha = Sha256OfFile(*path);
    EXPECT_TRUE(sha.ok()) << sha.status();
    return sha.ok() ? *sha : "";
  }

  // A failed pull: exit 1 and a message that mentions one of `words` (case-insensitive), and no
  // copy left behind.
  static void ExpectCleanFailure(const Pull& p, const std::vector<std::string>& words) {
    EXPECT_EQ(p.exit_code, 1) << p.output;
    const std::string out = absl::AsciiStrToLower(p.output);
    bool named = false;
    for (const std::string& w : words) named = named || absl::StrContains(out, w);
    EXPECT_TRUE(named) << "the error does not say what went wrong: " << p.output;
    EXPECT_FALSE(std::filesystem::exists(p.path)) << "a failed pull left " << p.path;
  }
};

TEST_F(WeightsFaultsTest, MissingFileIsAClearError) {
  const std::string sha = Start();
  ASSERT_FALSE(sha.empty());
  const Pull p = RunPull(0, origin_->Url("no-such-model.bin"));
  ExpectCleanFailure(p, {"404", "not found"});
}

TEST_F(WeightsFaultsTest, ServerErrorIsAClearError) {
  const std::string sha = Start();
  ASSERT_FALSE(sha.empty());
  const Pull p = RunPull(0, origin_->Url("error500/w.bin"));
  ExpectCleanFailure(p, {"500", "server error"});
  // It tried, and gave up (retries are fine, an endless loop is not).
  EXPECT_GE(origin_->AccessLog().size(), 1u);
}

TEST_F(WeightsFaultsTest, ConnectionClosedWithoutAnswerIsAClearError) {
  const std::string sha = Start();
  ASSERT_FALSE(sha.empty());
  const Pull p = RunPull(0, origin_->Url("close/w.bin"));
  ExpectCleanFailure(p, {"empty reply", "nothing", "closed", "reset", "connection", "origin"});
}

// Every response is cut after 64 KiB of a 256 KiB chunk (headers promised more): retrying cannot
// help, so the pull fails and leaves no copy.
TEST_F(WeightsFaultsTest, ConnectionsCutMidChunkAreAnError) {
  NginxOriginOptions options;
  options.cut_after_bytes = 64 << 10;
  const std::string sha = Start(options);
  ASSERT_FALSE(sha.empty());
  const Pull p = RunPull(0, origin_->Url("cut/w.bin"));
  ExpectCleanFailure(p, {"partial", "short", "transfer closed", "reset", "connection", "origin"});
}

// nginx dies mid-transfer and comes back on the same port: a retry completes the copy with the
// origin's bytes, or the pull fails cleanly; never a corrupted copy.
TEST_F(WeightsFaultsTest, OriginKilledMidTransferAndRestarted) {
  NginxOriginOptions options;
  options.slow_rate_bytes_per_sec = 64 << 10;  // 3 s a chunk (the first 64 KiB at once)
  const std::string sha = Start(options, 2);
  ASSERT_FALSE(sha.empty());
  std::vector<Pull> pulls;
  std::thread puller([&] { pulls = PullAtOnce({0, 1}, origin_->Url("slow/w.bin")); });
  const bool in_flight = WaitUntil([&] { return origin_->ResponsesInFlight() >= 1; },
                                   absl::Seconds(20), absl::Milliseconds(5));
  origin_->Kill();
  const absl::Status restarted = origin_->Restart();
  puller.join();
  ASSERT_TRUE(in_flight) << "no transfer was ever in flight: " << pulls[0].output << " | "
                         << pulls[1].output;
  ASSERT_TRUE(restarted.ok()) << restarted;
  for (const Pull& p : pulls) {
    EXPECT_TRUE(p.exit_code == 0 || p.exit_code == 1) << p.output;
    ExpectNoCorruptCopy(p, {sha});
    if (p.exit_code == 0) {
      EXPECT_TRUE(std::filesystem::exists(p.path));
    }
    std::cout << "after the origin restarted: exit " << p.exit_code << " " << p.output << "\n";
  }
}

struct FileChange {
  const char* name;
  bool in_place;  // rewrite the file's bytes in place, else rename a new file over it
  uint64_t size;  // of the old version
};
void PrintTo(const FileChange& c, std::ostream* os) { *os << c.name; }

class WeightsFileChangeTest : public WeightsFaultsTest,
                              public ::testing::WithParamInterface<FileChange> {};

// The origin's file is replaced by one of 1.5x its size while the pull runs: renamed over it
// (responses in flight keep the old bytes), or rewritten in place (responses in flight carry the
// old version's headers and then, past the change, the new bytes). The copy is then the old file,
// the new file, or nothing with a clear error; never a mix.
//   Renamed, InPlace: 32 chunks, more than a pull reads ahead (16), so chunks are also asked for
//     after the change.
//   InPlaceAllInFlight: 8 chunks, all in flight when the bytes change under them: nothing in
//     those responses shows it, only the version asked for again after they end.
TEST_P(WeightsFileChangeTest, FileChangingSizeDuringThePull) {
  const FileChange change = GetParam();
  NginxOriginOptions options;
  options.slow_rate_bytes_per_sec = 64 << 10;  // 3 s a chunk (the first 64 KiB at once)
  const std::string old_sha = Start(options, 1, change.size);
  ASSERT_FALSE(old_sha.empty());
  Pull p;
  std::thread puller([&] { p = RunPull(0, origin_->Url("slow/w.bin")); });
  const bool in_flight = WaitUntil([&] { return origin_->ResponsesInFlight() >= 1; },
                                   absl::Seconds(20), absl::Milliseconds(5));
  auto next = origin_->WriteRandomFile("next.bin", change.size * 3 / 2, 22);
  ASSERT_TRUE(next.ok()) << next.status();
  auto new_sha = Sha256OfFile(*next);
  ASSERT_TRUE(new_sha.ok());
  const std::string target = origin_->root() + "/w.bin";
  if (change.in_place) {
    std::ifstream in(*next, std::ios::binary);
    std::ofstream out(target, std::ios::binary | std::ios::in | std::ios::out);
    out << in.rdbuf();
  } else {
    std::filesystem::rename(*next, target);
  }
  puller.join();
  ASSERT_TRUE(in_flight) << "no transfer was ever in flight: " << p.output;
  EXPECT_TRUE(p.exit_code == 0 || p.exit_code == 1) << p.output;
  ExpectNoCorruptCopy(p, {old_sha, *new_sha});
  if (p.exit_code == 1) {
    const std::string out = absl::AsciiStrToLower(p.output);
    EXPECT_TRUE(absl::StrContains(out, "chang") || absl::StrContains(out, "etag") ||
                absl::StrContains(out, "size") || absl::StrContains(out, "modified"))
        << "the error does not say the file changed: " << p.output;
  }
  std::cout << change.name << ": exit " << p.exit_code << " " << p.output << "\n";
}

INSTANTIATE_TEST_SUITE_P(Change, WeightsFileChangeTest,
                         ::testing::Values(FileChange{"Renamed", false, 8 << 20},
                                           FileChange{"InPlace", true, 8 << 20},
                                           FileChange{"InPlaceAllInFlight", true, 2 << 20}),
                         [](const ::testing::TestParamInfo<FileChange>& info) {
                           return std::string(info.param.name);
                         });

// nginx serving TLS with a certificate from a CA made here. A daemon given that CA
// (--weight-ca-file) pulls the file byte-exact through range GETs; daemons with another CA, or
// with none (the system's CAs), refuse the server: a clear error naming the certificate and the
// flag, at once (not retried), and no copy.
TEST_F(WeightsFaultsTest, HttpsOriginIsVerifiedAgainstTheGivenCa) {
  const std::string certs = out_dir_ + "/certs";
  std::filesystem::create_directories(certs);
  auto ca = MakeTestCa(certs, "origin-ca");
  ASSERT_TRUE(ca.ok()) << ca.status();
  auto other_ca = MakeTestCa(certs, "other-ca");
  ASSERT_TRUE(other_ca.ok()) << other_ca.status();
  auto server = MakeTestCert(certs, *ca, "origin");  // names IP:127.0.0.1 and localhost
  ASSERT_TRUE(server.ok()) << server.status();
  NginxOriginOptions options;
  options.tls_cert = server->cert;
  options.tls_key = server->key;
  ASSERT_NO_FATAL_FAILURE(StartOrigin(options));
  auto path = origin_->WriteRandomFile("tls.bin", kFileSize + 4097, 31);
  ASSERT_TRUE(path.ok()) << path.status();
  auto sha = Sha256OfFile(*path);
  ASSERT_TRUE(sha.ok()) << sha.status();
  const std::string url = origin_->Url("tls.bin");
  ASSERT_EQ(url.rfind("https://", 0), 0u) << url;

  // Our CA: the right bytes, read with range GETs (206), each byte once.
  ASSERT_NO_FATAL_FAILURE(StartCluster(1, {"--weight-ca-file", ca->cert}));
  const Pull good = RunPull(0, url);
  ASSERT_EQ(good.exit_code, 0) << good.output << daemons_[0]->ReadLog();
  auto got = Sha256OfFile(good.path);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, *sha);
  EXPECT_EQ(Field(good.json, "origin_bytes"), kFileSize + 4097);
  int ranges = 0;
  for (const AccessLogEntry& e : origin_->AccessLog()) {
    if (e.path == "/tls.bin" && e.method == "GET") {
      EXPECT_EQ(e.status, 206) << e.range;
      ++ranges;
    }
  }
  EXPECT_GT(ranges, 0);
  EXPECT_EQ(origin_->BytesServed("/tls.bin"), kFileSize + 4097);

  // Another CA, then none: the certificate does not verify. One request each (no retries of a
  // verification failure), well within the pull's bound.
  const size_t requests_before = origin_->AccessLog().size();
  ASSERT_NO_FATAL_FAILURE(StartCluster(1, {"--weight-ca-file", other_ca->cert}));
  ASSERT_NO_FATAL_FAILURE(StartCluster(1));
  for (int node : {1, 2}) {
    const absl::Time started = absl::Now();
    const Pull bad = RunPull(node, url);
    ExpectCleanFailure(bad, {"certificate"});
    EXPECT_TRUE(absl::StrContains(bad.output, "--weight-ca-file")) << bad.output;
    EXPECT_LT(absl::Now() - started, absl::Seconds(kPullTimeoutS / 2)) << bad.output;
  }
  // The handshakes failed before any request: nginx logged none of them.
  EXPECT_EQ(origin_->AccessLog().size(), requests_before);
}

// A CA file that cannot be read stops the daemon at start, naming the flag.
TEST_F(WeightsFaultsTest, UnreadableCaFileIsAStartError) {
  ProcessResult r = RunProgram({BinPath("kvtierd"), "--dram-capacity", "64MiB", "--weight-ca-file",
                                out_dir_ + "/no-such-ca.pem", "--socket", out_dir_ + "/k.sock"},
                               20);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_TRUE(absl::StrContains(r.output, "--weight-ca-file")) << r.output;
}

}  // namespace
}  // namespace kvtier::testing
