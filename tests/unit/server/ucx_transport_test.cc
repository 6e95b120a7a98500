// Two UcxTransport instances in one process, each with its own arena, pulling from each other over
// each transport list (tcp on loopback, shared memory) and each protocol.
#include "server/transport/ucx_transport.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/notification.h"
#include "server/transport/peer_info.h"
#include "tests/support/wait.h"

// UCX 1.13 leaks a few bytes inside libuct when an endpoint to a destroyed shared-memory peer
// fails to connect (DestroyedPeerIsAnErrorWithinTheDeadline); not ours to fix. Read by LSan only.
extern "C" const char* __lsan_default_suppressions() { return "leak:libuct.so\n"; }

namespace kvtier::transport {
namespace {

using Protocol = UcxOptions::Protocol;
using Clock = std::chrono::steady_clock;

constexpr size_t kArenaBytes = 16 << 20;
constexpr int kDeadlineMs = 10'000;

// An anonymous mapping standing in for a daemon's arena; unmapped on destruction.
class TestArena {
 public:
  explicit TestArena(size_t bytes) : bytes_(bytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    base_ = p == MAP_FAILED ? nullptr : static_cast<std::byte*>(p);
  }
  ~TestArena() { Unmap(); }
  void Unmap() {
    if (base_ != nullptr) munmap(base_, bytes_);
    base_ = nullptr;
  }
  std::byte* base() const { return base_; }
  size_t bytes() const { return bytes_; }
  std::vector<std::byte> Snapshot() const { return std::vector<std::byte>(base_, base_ + bytes_); }

 private:
  std::byte* base_ = nullptr;
  size_t bytes_;
};

void FillRandom(std::byte* p, size_t n, uint64_t seed) {
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p[i] = static_cast<std::byte>(x >> 32);
  }
}

std::string Name(Protocol p) {
  switch (p) {
    case Protocol::kGet:
      return "Get";
    case Protocol::kActiveMessage:
      return "ActiveMessage";
    case Protocol::kAuto:
      return "Auto";
  }
  return "?";
}

class UcxTransportTest : public ::testing::TestWithParam<std::tuple<std::string, Protocol>> {
 protected:
  void SetUp() override {
    ASSERT_NE(server_arena_.base(), nullptr);
    ASSERT_NE(reader_arena_.base(), nullptr);
    FillRandom(server_arena_.base(), server_arena_.bytes(), 1);
    FillRandom(reader_arena_.base(), reader_arena_.bytes(), 2);
    auto server = Make(server_arena_);
    if (server.status().code() == absl::StatusCode::kUnavailable) {
      GTEST_SKIP() << "UCX cannot use tls=" << tls() << ": " << server.status();
    }
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    auto reader = Make(reader_arena_);
    ASSERT_TRUE(reader.ok()) << reader.status();
    reader_ = *std::move(reader);
  }

  const std::string& tls() const { return std::get<0>(GetParam()); }
  Protocol protocol() const { return std::get<1>(GetParam()); }

  absl::StatusOr<std::unique_ptr<UcxTransport>> Make(const TestArena& arena) {
    UcxOptions options;
    options.tls = tls();
    options.protocol = protocol();
    return UcxTransport::Create(arena.base(), arena.bytes(), options);
  }

  // Pulls `ops` from the server and checks that exactly the target ranges changed, to the source
  // bytes.
  void PullAndCheck(const std::vector<PullOp>& ops) {
    std::vector<std::byte> expected = reader_arena_.Snapshot();
    for (const PullOp& op : ops) {
      std::memcpy(expected.data() + op.local_offset, server_arena_.base() + op.remote_offset,
                  op.bytes);
    }
    ASSERT_TRUE(reader_->PullSync(server_->LocalInfo(), ops, kDeadlineMs).ok());
    ASSERT_EQ(std::memcmp(expected.data(), reader_arena_.base(), expected.size()), 0);
  }

  TestArena server_arena_{kArenaBytes};
  TestArena reader_arena_{kArenaBytes};
  std::unique_ptr<UcxTransport> server_;
  std::unique_ptr<UcxTransport> reader_;
};

TEST_P(UcxTransportTest, RandomBytesLandExactly) {
  const std::vector<PullOp> ops = {
      {.remote_offset = 7, .local_offset = 13, .bytes = 1},
      {.remote_offset = kArenaBytes - 1, .local_offset = 0, .bytes = 1},
      {.remote_offset = 4096, .local_offset = 8192, .bytes = 4096},
      {.remote_offset = 100'003, .local_offset = 200'001, .bytes = 4096},
      {.remote_offset = 1 << 20, .local_offset = 3 << 20, .bytes = 1 << 20},
      {.remote_offset = 5 << 20, .local_offset = 8 << 20, .bytes = 4 << 20},
      {.remote_offset = 12 << 20, .local_offset = 12 << 20, .bytes = 33'333},
      {.remote_offset = 0, .local_offset = kArenaBytes - (1 << 20), .bytes = 1 << 20},
  };
  PullAndCheck(ops);
  uint64_t total = 0;
  for (const PullOp& op : ops) total += op.bytes;
  EXPECT_EQ(reader_->counters().bytes_in, total);
  EXPECT_EQ(reader_->counters().pulls, 1u);
  EXPECT_EQ(reader_->counters().errors, 0u);
  if (protocol() == Protocol::kActiveMessage) {
    // The server counts a reply when its send completes, which its progress thread may learn
    // after the reader has the bytes (seen under ASan: one 1 MiB reply still uncounted): wait for
    // it, bounded, then compare.
    kvtier::testing::WaitUntil([&] { return server_->counters().bytes_served >= total; },
                               absl::Seconds(10), absl::Milliseconds(1));
    EXPECT_EQ(server_->counters().bytes_served, total);
  }

  // Again over the cached endpoint, with new source bytes.
  FillRandom(server_arena_.base(), kArenaBytes, 3);
  PullAndCheck(ops);
  EXPECT_EQ(reader_->counters().pulls, 2u);
}

TEST_P(UcxTransportTest, BothDirectionsAtOnce) {
  // Each side serves while it pulls: several pulls in flight each way.
  std::atomic<int> ok{0}, finished{0};
  absl::Notification all_done;
  constexpr int kPulls = 8;
  auto done = [&](const absl::Status& s) {
    if (s.ok()) ok.fetch_add(1);
    if (finished.fetch_add(1) + 1 == 2 * kPulls) all_done.Notify();
  };
  for (int i = 0; i < kPulls; ++i) {
    const uint64_t at = static_cast<uint64_t>(i) << 20;
    reader_->Pull(server_->LocalInfo(),
                  {{.remote_offset = at, .local_offset = at, .bytes = 1 << 19}}, kDeadlineMs, done);
    server_->Pull(
        reader_->LocalInfo(),
        {{.remote_offset = at + (1 << 19), .local_offset = at + (1 << 19), .bytes = 1 << 19}},
        kDeadlineMs, done);
  }
  ASSERT_TRUE(all_done.WaitForNotificationWithTimeout(absl::Seconds(20)));
  EXPECT_EQ(ok.load(), 2 * kPulls);
  for (int i = 0; i < kPulls; ++i) {
    const size_t at = static_cast<size_t>(i) << 20, half = 1 << 19;
    EXPECT_EQ(std::memcmp(reader_arena_.base() + at, server_arena_.base() + at, half), 0);
    EXPECT_EQ(std::memcmp(server_arena_.base() + at + half, reader_arena_.base() + at + half, half),
              0);
  }
}

TEST_P(UcxTransportTest, BadOffsetsAreRejectedWithoutTouchingMemory) {
  const std::vector<std::byte> before = reader_arena_.Snapshot();
  const PullOp good{.remote_offset = 0, .local_offset = 0, .bytes = 4096};
  const std::vector<std::vector<PullOp>> bad = {
      {{.remote_offset = kArenaBytes, .local_offset = 0, .bytes = 1}},
      {{.remote_offset = kArenaBytes - 4095, .local_offset = 0, .bytes = 4096}},
      {{.remote_offset = 0, .local_offset = kArenaBytes - 1, .bytes = 2}},
      {{.remote_offset = ~uint64_t{0}, .local_offset = 0, .bytes = 2}},
      {{.remote_offset = 0, .local_offset = 16, .bytes = ~uint64_t{0}}},
      {{.remote_offset = 0, .local_offset = 0, .bytes = 0}},
      {good,
       {.remote_offset = 0, .local_offset = kArenaBytes, .bytes = 1}},  // one bad op: none run
  };
  for (const auto& ops : bad) {
    const absl::Status s = reader_->PullSync(server_->LocalInfo(), ops, kDeadlineMs);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  }
  EXPECT_EQ(reader_->PullSync(server_->LocalInfo(), {good}, 0).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::memcmp(before.data(), reader_arena_.base(), before.size()), 0);
  EXPECT_EQ(reader_->counters().bytes_in, 0u);
  // The transport still works afterwards.
  PullAndCheck({good});
}

TEST_P(UcxTransportTest, GarbagePeerInfoIsInvalidArgument) {
  const std::vector<PullOp> ops = {{.remote_offset = 0, .local_offset = 0, .bytes = 64}};
  const std::vector<std::byte> before = reader_arena_.Snapshot();
  auto expect_invalid = [&](const std::string& info, const std::string& what) {
    const absl::Status s = reader_->PullSync(info, ops, kDeadlineMs);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << what << ": " << s;
  };
  const std::string& info = server_->LocalInfo();
  expect_invalid("", "empty");
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    std::string random(seed * 37, '\0');
    FillRandom(reinterpret_cast<std::byte*>(random.data()), random.size(), seed);
    expect_invalid(random, absl::StrCat("random ", seed));
  }
  for (size_t n : {size_t{1}, size_t{47}, info.size() / 2, info.size() - 1}) {
    expect_invalid(info.substr(0, n), absl::StrCat("truncated to ", n));
  }
  expect_invalid(info + "x", "one byte longer");
  for (size_t bit = 0; bit < info.size() * 8; ++bit) {
    std::string flipped = info;
    flipped[bit / 8] = static_cast<char>(flipped[bit / 8] ^ (1 << (bit % 8)));
    expect_invalid(flipped, absl::StrCat("bit ", bit, " flipped"));
  }
  EXPECT_EQ(std::memcmp(before.data(), reader_arena_.base(), before.size()), 0);
}

TEST_P(UcxTransportTest, DestroyedPeerIsAnErrorWithinTheDeadline) {
  const std::vector<PullOp> ops = {{.remote_offset = 0, .local_offset = 0, .bytes = 1 << 20}};
  PullAndCheck(ops);  // the endpoint is cached now
  const std::string info = server_->LocalInfo();
  server_.reset();
  server_arena_.Unmap();
  constexpr int kShortDeadlineMs = 1500;
  for (int attempt = 0; attempt < 2; ++attempt) {  // cached endpoint, then a fresh one
    const Clock::time_point start = Clock::now();
    const absl::Status s = reader_->PullSync(info, ops, kShortDeadlineMs);
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
    EXPECT_FALSE(s.ok()) << "attempt " << attempt;
    EXPECT_LT(took.count(), kShortDeadlineMs + 1000) << "attempt " << attempt << ": " << s;
  }
  EXPECT_GE(reader_->counters().errors, 2u);
}

TEST_P(UcxTransportTest, DestroyingWithPullsInFlightFinishesThem) {
  std::atomic<int> finished{0};
  for (int i = 0; i < 4; ++i) {
    reader_->Pull(server_->LocalInfo(),
                  {{.remote_offset = 0, .local_offset = 0, .bytes = 8 << 20},
                   {.remote_offset = 8 << 20, .local_offset = 8 << 20, .bytes = 8 << 20}},
                  kDeadlineMs, [&](const absl::Status& s) {
                    EXPECT_TRUE(s.ok() || s.code() == absl::StatusCode::kCancelled ||
                                s.code() == absl::StatusCode::kUnavailable)
                        << s;
                    finished.fetch_add(1);
                  });
  }
  reader_.reset();
  EXPECT_EQ(finished.load(), 4);
}

std::string ParamName(const ::testing::TestParamInfo<UcxTransportTest::ParamType>& info) {
  return absl::StrCat(absl::StrReplaceAll(std::get<0>(info.param), {{",", "_"}}), "_",
                      Name(std::get<1>(info.param)));
}

INSTANTIATE_TEST_SUITE_P(TlsAndProtocol, UcxTransportTest,
                         ::testing::Combine(::testing::Values("tcp", "posix,cma"),
                                            ::testing::Values(Protocol::kGet,
                                                              Protocol::kActiveMessage,
                                                              Protocol::kAuto)),
                         ParamName);

TEST(UcxTransportModeTest, DescribesTransportsAndGpuSupport) {
  TestArena arena(1 << 20);
  UcxOptions options;
  options.tls = "tcp";
  auto t = UcxTransport::Create(arena.base(), arena.bytes(), options);
  if (t.status().code() == absl::StatusCode::kUnavailable) GTEST_SKIP() << t.status();
  ASSERT_TRUE(t.ok()) << t.status();
  const std::string mode = (*t)->Mode();
  EXPECT_NE(mode.find("tls=tcp"), std::string::npos) << mode;
  EXPECT_NE(mode.find("am-rndv"), std::string::npos) << mode;
  EXPECT_NE(mode.find("gpu memory:"), std::string::npos) << mode;
  if (!(*t)->gpu_memory_supported()) {
    EXPECT_NE(mode.find("stage through DRAM"), std::string::npos) << mode;
  }
  auto info = DecodePeerInfo((*t)->LocalInfo());
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->arena_bytes, arena.bytes());
  EXPECT_EQ(info->arena_base, reinterpret_cast<uint64_t>(arena.base()));
  EXPECT_EQ(info->host_id, LocalHostId());
  EXPECT_FALSE(info->worker_address.empty());
  EXPECT_FALSE(info->rkey.empty());
}

TEST(UcxTransportModeTest, RejectsAnEmptyArena) {
  EXPECT_EQ(UcxTransport::Create(nullptr, 0, UcxOptions{}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PeerInfoTest, RoundTrips) {
  PeerInfo in;
  in.instance_id = 1;
  in.host_id = 2;
  in.arena_base = 3;
  in.arena_bytes = 4;
  in.worker_address = "address";
  in.rkey = "rkey";
  auto out = DecodePeerInfo(EncodePeerInfo(in));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->instance_id, 1u);
  EXPECT_EQ(out->host_id, 2u);
  EXPECT_EQ(out->arena_base, 3u);
  EXPECT_EQ(out->arena_bytes, 4u);
  EXPECT_EQ(out->worker_address, "address");
  EXPECT_EQ(out->rkey, "rkey");
  in.arena_bytes = 0;
  EXPECT_EQ(DecodePeerInfo(EncodePeerInfo(in)).status().code(), absl::StatusCode::kInvalidArgument);
}

// Not a unit test: in-process pull throughput per tls × protocol (1 MiB ops in batches of 32,
// walking 256 MiB arenas so that bytes come from RAM). Numbers in the transport's notes came from
// this and from a two-process variant. Run with:
//   transport_unit_test --gtest_also_run_disabled_tests --gtest_filter='*DISABLED_Throughput*'
TEST(UcxTransportBench, DISABLED_Throughput) {
  constexpr size_t kBlock = 1 << 20, kBatch = 32, kArena = 256 << 20, kBlocks = kArena / kBlock;
  TestArena a(kArena), b(kArena);
  ASSERT_NE(a.base(), nullptr);
  ASSERT_NE(b.base(), nullptr);
  FillRandom(a.base(), kArena, 1);
  FillRandom(b.base(), kArena, 2);
  for (const char* tls : {"tcp", "posix,cma"}) {
    for (Protocol protocol : {Protocol::kGet, Protocol::kActiveMessage}) {
      UcxOptions options;
      options.tls = tls;
      options.protocol = protocol;
      auto server = UcxTransport::Create(a.base(), kArena, options);
      auto reader = UcxTransport::Create(b.base(), kArena, options);
      ASSERT_TRUE(server.ok() && reader.ok());
      size_t batch = 0;
      auto next_ops = [&] {
        std::vector<PullOp> ops;
        for (size_t i = 0; i < kBatch; ++i, ++batch) {
          ops.push_back({.remote_offset = (batch % kBlocks) * kBlock,
                         .local_offset = ((batch + 97) % kBlocks) * kBlock,
                         .bytes = kBlock});
        }
        return ops;
      };
      ASSERT_TRUE((*reader)->PullSync((*server)->LocalInfo(), next_ops(), 30'000).ok());
      std::vector<double> rates;
      for (int round = 0; round < 3; ++round) {
        const Clock::time_point start = Clock::now();
        uint64_t bytes = 0;
        while (Clock::now() - start < std::chrono::seconds(1)) {
          ASSERT_TRUE((*reader)->PullSync((*server)->LocalInfo(), next_ops(), 30'000).ok());
          bytes += kBatch * kBlock;
        }
        rates.push_back(bytes / std::chrono::duration<double>(Clock::now() - start).count() / 1e9);
      }
      std::sort(rates.begin(), rates.end());
      std::printf("THROUGHPUT tls=%s protocol=%s median=%.2f GB/s  [%s]\n", tls,
                  Name(protocol).c_str(), rates[rates.size() / 2], (*reader)->Mode().c_str());
    }
  }
}

}  // namespace
}  // namespace kvtier::transport
