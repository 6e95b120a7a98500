#include "bench/transport_bench.h"

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include <array>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "bench/ucx_perftest.h"
#include "common/checksum.h"
#include "common/size.h"
#include "server/dram/arena.h"
#include "server/transport/ucx_transport.h"

namespace kvtier::bench {
namespace {

using transport::PullOp;
using transport::UcxOptions;
using transport::UcxTransport;

// Block i of the serving arena holds the byte (i % 251) everywhere, so a pulled block's XXH3 has
// one of 251 known values: the verification is real, and filling 1 GiB stays cheap.
uint8_t Fill(uint64_t block) { return static_cast<uint8_t>(block % 251); }

// An arena made as the daemon makes its own (a memfd, with the same choice of pages).
absl::StatusOr<std::unique_ptr<Arena>> MapArena(const TransportBenchOptions& o) {
  absl::StatusOr<ArenaPages> pages = ParseArenaPages(o.arena_pages);
  if (!pages.ok()) return pages.status();
  absl::StatusOr<std::unique_ptr<Arena>> arena =
      Arena::Create(o.arena_bytes, "kvtier-bench-transport", *pages);
  if (arena.ok() && (*arena)->size() < o.arena_bytes) {
    return absl::InvalidArgumentError("--arena: not a whole number of pages");
  }
  return arena;
}

bool WriteAll(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool ReadAll(int fd, void* data, size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

absl::StatusOr<UcxOptions> Options(const TransportBenchOptions& o, const std::string& tls) {
  UcxOptions u;
  u.tls = tls;
  if (o.protocol == "am") {
    u.protocol = UcxOptions::Protocol::kActiveMessage;
  } else if (o.protocol == "get") {
    u.protocol = UcxOptions::Protocol::kGet;
  } else if (o.protocol != "auto") {
    return absl::InvalidArgumentError(
        absl::StrCat("--protocol: '", o.protocol, "'; give auto, am or get"));
  }
  return u;
}

// The serving process: an arena with known contents and a transport; sends LocalInfo up
// `info_fd`, then serves until `stop_fd` closes.
[[noreturn]] void Serve(const TransportBenchOptions& o, const UcxOptions& u, int info_fd,
                        int stop_fd) {
  absl::StatusOr<std::unique_ptr<Arena>> mapped = MapArena(o);
  if (!mapped.ok()) _exit(3);
  std::byte* arena = (*mapped)->base();
  for (uint64_t b = 0; b < o.arena_bytes / o.block_bytes; ++b) {
    std::memset(arena + b * o.block_bytes, Fill(b), o.block_bytes);
  }
  auto t = UcxTransport::Create(arena, o.arena_bytes, u);
  if (!t.ok()) {
    std::fprintf(stderr, "transport bench server: %s\n", t.status().ToString().c_str());
    _exit(4);
  }
  const std::string& info = (*t)->LocalInfo();
  const uint64_t n = info.size();
  if (!WriteAll(info_fd, &n, sizeof(n)) || !WriteAll(info_fd, info.data(), n)) _exit(5);
  char c;
  while (read(stop_fd, &c, 1) > 0) {
  }
  t->reset();
  _exit(0);
}

// Verifies landed blocks off the progress thread, the way the daemon's cluster workers do.
class Verifier {
 public:
  Verifier(const std::byte* arena, uint64_t block_bytes) : arena_(arena), block_(block_bytes) {
    std::vector<std::byte> b(block_bytes);
    for (int v = 0; v < 251; ++v) {
      std::memset(b.data(), v, block_bytes);
      sums_[v] = BlockChecksum(b.data(), block_bytes);
    }
    thread_ = std::thread([this] { Loop(); });
  }
  ~Verifier() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  // Each job: (local offset, remote block index) pairs; `then` runs after they are checked.
  void Post(std::vector<std::pair<uint64_t, uint64_t>> blocks, std::function<void()> then) {
    {
      std::lock_guard<std::mutex> l(mu_);
      jobs_.push_back({std::move(blocks), std::move(then)});
    }
    cv_.notify_one();
  }
  uint64_t bad() const { return bad_.load(); }

 private:
  struct Job {
    std::vector<std::pair<uint64_t, uint64_t>> blocks;
    std::function<void()> then;
  };
  void Loop() {
    for (;;) {
      Job job;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [this] { return stop_ || !jobs_.empty(); });
        if (jobs_.empty()) return;
        job = std::move(jobs_.front());
        jobs_.pop_front();
      }
      for (const auto& [local, remote] : job.blocks) {
        if (BlockChecksum(arena_ + local, block_) != sums_[Fill(remote)]) bad_.fetch_add(1);
      }
      job.then();
    }
  }
  const std::byte* arena_;
  const uint64_t block_;
  std::array<uint64_t, 251> sums_{};
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stop_ = false;
  std::atomic<uint64_t> bad_{0};
  std::thread thread_;
};

}  // namespace

absl::StatusOr<std::vector<Result>> RunTransportBench(const TransportBenchOptions& o) {
  if (o.block_bytes == 0 || o.batch == 0 || o.inflight <= 0 || o.rounds <= 0 || o.passes <= 0 ||
      o.arena_bytes < o.block_bytes * o.batch) {
    return absl::InvalidArgumentError(
        "--block-size, --batch, --inflight, --rounds must be > 0 and --arena must hold a batch");
  }
  const std::string tls = ClusterTls(o.tls);
  auto u = Options(o, tls);
  if (!u.ok()) return u.status();
  const uint64_t blocks = o.arena_bytes / o.block_bytes;
  // KVTIER_TRANSPORT_TRACE=1: a line per 64 blocks posted, with the time since the round started.
  const bool trace = std::getenv("KVTIER_TRANSPORT_TRACE") != nullptr;
  std::printf(
      "transport: UCX_TLS=%s protocol=%s; two processes, %s arenas, %s blocks pulled in ops of "
      "%u blocks, %d pulls in flight, verify %s; %d rounds interleaved with ucx_perftest\n",
      tls.c_str(), o.protocol.c_str(), kvtier::FormatBytes(o.arena_bytes).c_str(),
      kvtier::FormatBytes(o.block_bytes).c_str(), o.batch, o.inflight, o.verify ? "xxh3" : "off",
      o.rounds);
  std::fflush(stdout);
  int info_pipe[2], stop_pipe[2];
  if (pipe(info_pipe) != 0 || pipe(stop_pipe) != 0) return absl::InternalError("pipe");
  const pid_t child = fork();
  if (child < 0) return absl::InternalError("fork");
  if (child == 0) {
    close(info_pipe[0]);
    close(stop_pipe[1]);
    Serve(o, *u, info_pipe[1], stop_pipe[0]);
  }
  close(info_pipe[1]);
  close(stop_pipe[0]);
  auto finish_child = [&] {
    close(stop_pipe[1]);
    int status = 0;
    waitpid(child, &status, 0);
  };
  uint64_t n = 0;
  std::string info;
  if (!ReadAll(info_pipe[0], &n, sizeof(n)) || n > (1 << 20) ||
      !(info.resize(n), ReadAll(info_pipe[0], info.data(), n))) {
    finish_child();
    return absl::UnavailableError("the serving process did not start its transport");
  }
  close(info_pipe[0]);
  absl::StatusOr<std::unique_ptr<Arena>> mapped = MapArena(o);
  if (!mapped.ok()) {
    finish_child();
    return mapped.status();
  }
  std::byte* arena = (*mapped)->base();
  auto t = UcxTransport::Create(arena, o.arena_bytes, *u);
  if (!t.ok()) {
    finish_child();
    return t.status();
  }
  std::printf("transport: %s; arena pages: %s\n", (*t)->Mode().c_str(),
              (*mapped)->pages_detail().c_str());
  Verifier verifier(arena, o.block_bytes);

  std::vector<double> ours, base, ratios;
  std::string best_test;
  absl::Status failure;
  for (int round = 0; round < o.rounds && failure.ok(); ++round) {
    auto perf = MeasureUcxPerftestBest(tls, o.block_bytes);
    if (!perf.ok()) {
      failure = perf.status();
      break;
    }
    best_test = perf->best_test;
    std::mutex mu;
    std::condition_variable cv;
    int inflight = 0;
    absl::Status error;
    const bool cpu = std::getenv("KVTIER_BENCH_CPU") != nullptr;
    auto both_cpu = [&] {
      std::map<std::string, double> all = ThreadCpu(getpid(), "reader");
      for (const auto& [k, v] : ThreadCpu(child, "server")) all[k] += v;
      return all;
    };
    const std::map<std::string, double> cpu_before =
        cpu ? both_cpu() : std::map<std::string, double>{};
    const auto t0 = Now();
    for (uint64_t pos = 0; pos < blocks * o.passes; pos += o.batch) {
      const uint64_t b = pos % blocks;
      const uint64_t end = std::min<uint64_t>(blocks, b + o.batch);
      std::vector<PullOp> ops;
      std::vector<std::pair<uint64_t, uint64_t>> landed;
      for (uint64_t i = b; i < end; ++i) {
        // The reader's slots are a rotation of the server's, as in a daemon (any slot).
        const uint64_t local = ((i + blocks / 2) % blocks) * o.block_bytes;
        ops.push_back({i * o.block_bytes, local, o.block_bytes});
        landed.emplace_back(local, i);
      }
      {
        std::unique_lock<std::mutex> l(mu);
        cv.wait(l, [&] { return inflight < o.inflight; });
        ++inflight;
      }
      if (trace && pos % 64 == 0 && pos > 0) {
        std::printf("    %llu MiB at %.3f s\n",
                    static_cast<unsigned long long>(pos * o.block_bytes >> 20),
                    Seconds(Now() - t0));
      }
      auto release = [&] {
        std::lock_guard<std::mutex> l(mu);
        --inflight;
        cv.notify_all();
      };
      (*t)->Pull(info, std::move(ops), 30'000,
                 [&, landed = std::move(landed), release](absl::Status s) mutable {
                   if (!s.ok()) {
                     {
                       std::lock_guard<std::mutex> l(mu);
                       if (error.ok()) error = s;
                     }
                     release();
                   } else if (o.verify) {
                     verifier.Post(std::move(landed), release);
                   } else {
                     release();
                   }
                 });
    }
    {
      std::unique_lock<std::mutex> l(mu);
      cv.wait(l, [&] { return inflight == 0; });
      if (!error.ok()) failure = error;
    }
    const double secs = Seconds(Now() - t0);
    if (cpu) PrintCpu(cpu_before, both_cpu(), secs);
    const double gbps = static_cast<double>(blocks * o.passes * o.block_bytes) / secs / 1e9;
    std::printf("  round %d: ucx_perftest best %.2f GB/s (%s) | transport pull %.2f GB/s = %.2fx\n",
                round + 1, perf->best_gbps, perf->best_test.c_str(), gbps, gbps / perf->best_gbps);
    std::fflush(stdout);
    ours.push_back(gbps);
    base.push_back(perf->best_gbps);
    ratios.push_back(gbps / perf->best_gbps);
  }
  t->reset();
  finish_child();
  mapped->reset();
  if (!failure.ok()) return failure;
  if (verifier.bad() > 0) {
    return absl::DataLossError(absl::StrCat(verifier.bad(), " pulled blocks failed their XXH3"));
  }
  const std::string block = o.block_bytes % (1 << 20) == 0
                                ? absl::StrCat(o.block_bytes >> 20, "MiB")
                                : absl::StrCat(o.block_bytes >> 10, "KiB");
  return std::vector<Result>{{"transport_get",
                              {{"block", block},
                               {"tls", tls},
                               {"protocol", o.protocol},
                               {"verify", o.verify ? "xxh3" : "off"},
                               {"best", best_test}},
                              Median(ours),
                              "ucx_perftest",
                              Median(base),
                              Median(ratios)}};
}

}  // namespace kvtier::bench
