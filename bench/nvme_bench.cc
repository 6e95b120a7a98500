#include "bench/nvme_bench.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/fio.h"
#include "common/size.h"

namespace kvtier::bench {
namespace {

namespace fs = std::filesystem;

std::string BlockLabel(uint64_t bytes) {
  return bytes % (1 << 20) == 0 ? absl::StrCat(bytes >> 20, "MiB")
                                : absl::StrCat(bytes >> 10, "KiB");
}

// One measured phase: its rate, and what the device under the files saw meanwhile.
struct Phase {
  double gbps = 0;
  std::optional<DiskActivity> disk;
};

// Device counters from now until End(); nothing when the device cannot be read.
class DiskWindow {
 public:
  explicit DiskWindow(std::string path) : path_(std::move(path)), start_(SampleDisk(path_)) {}
  std::optional<DiskActivity> End(double seconds) const {
    auto end = SampleDisk(path_);
    if (!start_.ok() || !end.ok()) return std::nullopt;
    return Between(*start_, *end, seconds);
  }

 private:
  std::string path_;
  absl::StatusOr<DiskSample> start_;
};

std::string Device(const Phase& p) {
  if (!p.disk) return "n/a";
  return absl::StrFormat("%.1f x %.0f KiB", p.disk->requests_in_flight, p.disk->request_kib);
}

// Per round figures of one direction (write or read), in GB/s.
struct Series {
  std::vector<double> ours, fio, plain, ratio, best_ratio;
  void Add(const Phase& o, const Phase& f, const Phase& p) {
    ours.push_back(o.gbps);
    fio.push_back(f.gbps);
    plain.push_back(p.gbps);
    ratio.push_back(o.gbps / f.gbps);
    best_ratio.push_back(o.gbps / std::max(f.gbps, p.gbps));
  }
  std::string Summary() const {
    return absl::StrFormat(
        "ours %.2f GB/s, fio %.2f, plain fio %.2f; ours / the better fio of each round %.2fx",
        Median(ours), Median(fio), Median(plain), Median(best_ratio));
  }
};

struct Setup {
  explicit Setup(const NvmeBenchOptions& options) : o(options) {}
  const NvmeBenchOptions& o;
  uint64_t total = 0;
  std::string dir;  // where the device files go
  std::string nvme_path;
  std::vector<std::string> args;  // daemon flags shared by both phases
  std::vector<const void*> src;
  std::vector<void*> dst;
};

using Connected = ConnectedDaemon;

absl::StatusOr<Connected> StartDaemon(const Setup& s, const std::vector<std::string>& more) {
  std::vector<std::string> args = s.args;
  args.insert(args.end(), more.begin(), more.end());
  return StartConnected(args, "kvtier-bench-nvme", s.o.block_bytes, /*timeout_ms=*/60'000);
}

absl::StatusOr<TierStats> NvmeTier(Client& client) {
  DaemonStats stats;
  if (Status st = client.Stats(&stats); !st.ok()) return ToAbsl(st);
  for (const TierStats& t : stats.tiers) {
    if (t.name == "nvme") return t;
  }
  return absl::FailedPreconditionError("the daemon reports no nvme tier");
}

std::string LogTail(Connected& c) {
  std::string log = c.target.daemon->ReadLog();
  return log.size() > 2000 ? log.substr(log.size() - 2000) : log;
}

// Saves every block (DRAM) and waits for the mover to have written all of them to NVMe.
// The rate is of the time from the first Save to the last NVMe write done; *save_s = the Saves'.
absl::StatusOr<Phase> OursWrite(const Setup& s, const std::vector<BlockKey>& keys, double* save_s) {
  // Every block, not only those the admission rule picks (a chain's unread tail is skipped).
  auto c = StartDaemon(s, {"--demote-watermark", "0.01", "--nvme-admit", "all"});
  if (!c.ok()) return c.status();
  const NvmeBenchOptions& o = s.o;
  const DiskWindow disk(s.dir);
  const auto t0 = Now();
  for (uint64_t i = 0; i < o.blocks; i += o.batch) {
    const size_t n = std::min<uint64_t>(o.batch, o.blocks - i);
    size_t saved = 0;
    Status st = c->client->Save(c->ns, {keys.data() + i, n}, {s.src.data() + i, n}, &saved,
                                i == 0 ? BlockKey{} : keys[i - 1]);
    if (!st.ok()) return ToAbsl(st);
    if (saved != n) return absl::InternalError("save wrote fewer blocks than asked");
  }
  const auto saved_at = Now();
  uint64_t last_bytes = 0;
  auto progress_at = Now();
  for (;;) {
    auto tier = NvmeTier(*c->client);
    if (!tier.ok()) return tier.status();
    if (tier->bytes_in >= s.total) break;
    if (tier->status != "ok") {
      return absl::InternalError(absl::StrCat("nvme tier: ", tier->status, "; log: ", LogTail(*c)));
    }
    if (tier->bytes_in != last_bytes) {
      last_bytes = tier->bytes_in;
      progress_at = Now();
    }
    if (Seconds(Now() - progress_at) > 10 || Seconds(Now() - t0) > 120) {
      return absl::DeadlineExceededError(
          absl::StrFormat("the mover wrote %s of %s to NVMe and stopped; log: %s",
                          FormatBytes(tier->bytes_in), FormatBytes(s.total), LogTail(*c)));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  const double seconds = Seconds(Now() - t0);
  *save_s = Seconds(saved_at - t0);
  return Phase{static_cast<double>(s.total) / seconds / 1e9, disk.End(seconds)};
}

// Warm restart on the same device file, then Load every block (each one an NVMe read), `streams`
// calls in flight.
absl::StatusOr<Phase> OursRead(const Setup& s, const std::vector<BlockKey>& keys) {
  auto c = StartDaemon(s, {});
  if (!c.ok()) return c.status();
  const NvmeBenchOptions& o = s.o;
  auto before = NvmeTier(*c->client);
  if (!before.ok()) return before.status();
  if (before->blocks < o.blocks) {
    return absl::InternalError(absl::StrCat("warm restart found ", before->blocks, " blocks of ",
                                            o.blocks, " on NVMe; log: ", LogTail(*c)));
  }
  std::atomic<uint64_t> next{0};
  std::vector<absl::Status> errors(o.streams);
  // Zero-copy reads: each lease pins its blocks in the arena until the bytes are checked below,
  // outside the timed part (a Load would add a client memcpy that is not part of promotion).
  std::vector<std::vector<std::pair<uint64_t, std::unique_ptr<ReadLease>>>> held(o.streams);
  std::vector<std::thread> threads;
  const DiskWindow disk(s.dir);
  const auto t0 = Now();
  for (unsigned t = 0; t < o.streams; ++t) {
    threads.emplace_back([&, t] {
      for (;;) {
        const uint64_t i = next.fetch_add(o.batch);
        if (i >= o.blocks) return;
        const size_t n = std::min<uint64_t>(o.batch, o.blocks - i);
        std::unique_ptr<ReadLease> lease;
        Status st = c->client->AcquireRead(c->ns, {keys.data() + i, n}, &lease);
        const size_t loaded = st.ok() ? lease->size() : 0;
        if (st.ok()) held[t].emplace_back(i, std::move(lease));
        if (!st.ok() || loaded != n) {
          errors[t] = st.ok() ? absl::InternalError(absl::StrFormat(
                                    "load found %d of %d blocks at %d", loaded, n, i))
                              : ToAbsl(st);
          return;
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  const double seconds = Seconds(Now() - t0);
  std::optional<DiskActivity> activity = disk.End(seconds);
  for (auto& stream : held) {
    for (auto& [first, lease] : stream) {
      for (size_t j = 0; j < lease->size(); ++j) {
        std::memcpy(s.dst[first + j], lease->block(j).data(), o.block_bytes);
      }
      lease.reset();  // releases
    }
  }
  for (const absl::Status& e : errors) {
    if (!e.ok()) return absl::Status(e.code(), absl::StrCat(e.message(), "; log: ", LogTail(*c)));
  }
  auto after = NvmeTier(*c->client);
  if (!after.ok()) return after.status();
  if (after->bytes_out - before->bytes_out != s.total) {
    return absl::InternalError(absl::StrFormat("expected %d bytes read from NVMe, daemon says %d",
                                               s.total, after->bytes_out - before->bytes_out));
  }
  return Phase{static_cast<double>(s.total) / seconds / 1e9, activity};
}

struct FioPair {
  Phase write, read;
  std::string command;  // of the read
};

// fio writes a fresh file of the same bytes, then reads it back; the file is removed.
absl::StatusOr<FioPair> FioWriteRead(const Setup& s, const std::string& path, bool fixed_buffers) {
  std::error_code ec;
  fs::remove(path, ec);
  FioJob job;
  job.filename = path;
  job.rw = "write";
  job.size_bytes = s.total;
  job.block_bytes = s.o.block_bytes;
  job.iodepth = s.o.qd;
  job.fixed_buffers = fixed_buffers;
  auto w = RunFio(job);
  if (!w.ok()) return w.status();
  job.rw = "read";  // the file the write just laid out
  auto r = RunFio(job);
  fs::remove(path, ec);
  if (!r.ok()) return r.status();
  return FioPair{{w->gbps, w->disk}, {r->gbps, r->disk}, r->command};
}

}  // namespace

absl::StatusOr<std::vector<Result>> RunNvmeBench(const NvmeBenchOptions& opts) {
  NvmeBenchOptions o = opts;
  if (o.block_bytes == 0 || o.qd == 0 || o.rounds <= 0 || o.batch == 0 || o.streams == 0) {
    return absl::InvalidArgumentError(
        "--block-size, --qd, --rounds, --batch and --streams must be > 0");
  }
  if (o.blocks == 0) o.blocks = std::max<uint64_t>(1, (1ULL << 30) / o.block_bytes);
  if (auto fio = FindFio(); !fio.ok()) return fio.status();
  auto dir = ScratchDir::Create(o.dir, "kvtier-nvme-bench", "--dir");
  if (!dir.ok()) return dir.status();

  Setup s(o);
  s.total = o.blocks * o.block_bytes;
  s.dir = (*dir)->path();
  s.nvme_path = (*dir)->file("nvme.dat");
  const uint64_t slot = (o.block_bytes + 4095) / 4096 * 4096;
  const uint64_t dram = o.blocks * slot + (64ULL << 20);
  const uint64_t nvme = 2 * o.blocks * (slot + 4096) + (64ULL << 20);
  s.args = {"--dram-capacity",    std::to_string(dram),
            "--nvme-path",        s.nvme_path,
            "--nvme-capacity",    std::to_string(nvme),
            "--nvme-queue-depth", std::to_string(o.qd),
            "--log-level",        "warn"};
  const std::string fio_path = (*dir)->file("fio.dat");

  std::printf("nvme: %llu blocks of %s (%s), qd %u, %d rounds, files in %s\n",
              static_cast<unsigned long long>(o.blocks), FormatBytes(o.block_bytes).c_str(),
              FormatBytes(s.total).c_str(), o.qd, o.rounds, (*dir)->path().c_str());
  std::printf(
      "  write (ours): kvtierd --nvme-queue-depth %u --demote-watermark 0.01 --nvme-admit all; "
      "Save (DRAM) %u keys per call; timed from the first Save until the nvme tier's bytes_in = "
      "all bytes "
      "(each block one writev: 4 KiB record header + payload)\n",
      o.qd, o.batch);
  std::printf(
      "  read (ours): kvtierd restarted on the same file (every block on NVMe only); %u threads "
      "of AcquireRead(%u keys): zero-copy, each block read NVMe -> its DRAM arena slot (io_uring, "
      "at most %u reads in flight in the daemon), leases held until the clock stops; then every "
      "byte is copied out and checked\n",
      o.streams, o.batch, o.qd);
  std::printf(
      "  baseline: fio (io_uring, O_DIRECT) in the same directory, same block size, iodepth and "
      "bytes: write a fresh file, then read it back. RESULT's fio uses --fixedbufs (registered "
      "buffers, as the daemon registers its arena for reads); plain fio (without) is shown for "
      "reference: on this virtual disk either can be up to 2x faster than the other from run "
      "to run. Ours, fio and plain fio take turns at going first\n");

  std::vector<std::byte> src(s.total), dst(s.total);
  FillRandom(src.data(), s.total, 42);
  s.src.resize(o.blocks);
  s.dst.resize(o.blocks);
  for (uint64_t i = 0; i < o.blocks; ++i) {
    s.src[i] = src.data() + i * o.block_bytes;
    s.dst[i] = dst.data() + i * o.block_bytes;
  }

  std::mt19937_64 rng(std::random_device{}());
  Series write, read;  // fio --fixedbufs is the baseline; plain fio is for reference
  std::string fio_command;
  for (int round = 0; round < o.rounds; ++round) {
    Phase ow, orr, fw, fr, pw, pr;  // ours, fio, plain fio: write and read
    double save_s = 0;
    auto ours = [&]() -> absl::Status {
      std::vector<BlockKey> keys(o.blocks);
      for (BlockKey& k : keys) k = {rng(), rng()};
      std::error_code ec;
      fs::remove(s.nvme_path, ec);
      std::memset(dst.data(), 0xA5, s.total);  // poison: a load that copies nothing fails
      auto w = OursWrite(s, keys, &save_s);
      if (!w.ok()) return w.status();
      auto r = OursRead(s, keys);
      if (!r.ok()) return r.status();
      fs::remove(s.nvme_path, ec);
      if (std::memcmp(src.data(), dst.data(), s.total) != 0) {
        return absl::DataLossError("loaded bytes differ from saved bytes");
      }
      ow = *w;
      orr = *r;
      return absl::OkStatus();
    };
    auto fio = [&](bool fixed) -> absl::Status {
      auto f = FioWriteRead(s, fio_path, fixed);
      if (!f.ok()) return f.status();
      (fixed ? fw : pw) = f->write;
      (fixed ? fr : pr) = f->read;
      if (fixed) fio_command = f->command;
      return absl::OkStatus();
    };
    // The three take turns at going first, second, third.
    static constexpr const char* kNames[] = {"ours", "fio", "plain fio"};
    std::string order;
    for (int step = 0; step < 3; ++step) {
      const int which = (round + step) % 3;
      absl::Status st = which == 0 ? ours() : fio(/*fixed=*/which == 1);
      if (!st.ok()) return st;
      absl::StrAppend(&order, step ? ", " : "", kNames[which]);
    }
    std::printf(
        "  round %d (%s): write ours %.2f GB/s (saves %.3f s), fio %.2f (plain %.2f) = %.2fx | "
        "read ours %.2f GB/s, fio %.2f (plain %.2f) = %.2fx\n",
        round + 1, order.c_str(), ow.gbps, save_s, fw.gbps, pw.gbps, ow.gbps / fw.gbps, orr.gbps,
        fr.gbps, pr.gbps, orr.gbps / fr.gbps);
    std::printf(
        "    device (requests in flight x request size, means): write ours %s, fio %s, plain %s "
        "| read ours %s, fio %s, plain %s\n",
        Device(ow).c_str(), Device(fw).c_str(), Device(pw).c_str(), Device(orr).c_str(),
        Device(fr).c_str(), Device(pr).c_str());
    std::fflush(stdout);
    write.Add(ow, fw, pw);
    read.Add(orr, fr, pr);
  }
  std::printf("  fio read command (the write: --rw=write on a fresh file): %s\n",
              fio_command.c_str());
  std::printf("nvme: median write %s\nnvme: median read %s\n", write.Summary().c_str(),
              read.Summary().c_str());

  const std::vector<std::pair<std::string, std::string>> params = {
      {"block", BlockLabel(o.block_bytes)}, {"qd", absl::StrCat(o.qd)}};
  return std::vector<Result>{
      {"nvme_write", params, Median(write.ours), "fio", Median(write.fio), Median(write.ratio)},
      {"nvme_read", params, Median(read.ours), "fio", Median(read.fio), Median(read.ratio)}};
}

}  // namespace kvtier::bench
