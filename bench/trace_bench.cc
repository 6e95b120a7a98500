#include "bench/trace_bench.h"

#include <stdlib.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/trace_model.h"
#include "common/size.h"

namespace kvtier::bench {
namespace {

constexpr size_t kBatch = 1024;            // keys per call (the daemon's default cap is 4096)
constexpr uint64_t kProgressEvery = 1000;  // requests between progress lines

// Block content derived from the hash id, so every load can be checked: word j of block `id`.
// Bijective in id for a fixed j, and in j for a fixed id.
inline uint64_t PatternWord(uint64_t id, uint64_t j) {
  uint64_t x = ((id + 1) * 0x9E3779B97F4A7C15ULL) ^ (j * 0xBF58476D1CE4E5B9ULL);
  return x ^ (x >> 31);
}

void FillBlock(uint64_t id, std::byte* p, size_t n) {
  size_t j = 0;
  for (; (j + 1) * 8 <= n; ++j) {
    const uint64_t w = PatternWord(id, j);
    std::memcpy(p + j * 8, &w, 8);
  }
  const uint64_t w = PatternWord(id, j);
  std::memcpy(p + j * 8, &w, n - j * 8);
}

bool CheckBlock(uint64_t id, const std::byte* p, size_t n) {
  size_t j = 0;
  for (; (j + 1) * 8 <= n; ++j) {
    uint64_t got;
    std::memcpy(&got, p + j * 8, 8);
    if (got != PatternWord(id, j)) return false;
  }
  const uint64_t w = PatternWord(id, j);
  return std::memcmp(p + j * 8, &w, n - j * 8) == 0;
}

std::string ResolveTrace(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::path(path).is_absolute() || fs::exists(path, ec)) return path;
  return (fs::path(SelfDir()) / ".." / ".." / path).lexically_normal().string();
}

// A temporary directory for the NVMe file, removed on destruction (after the daemon stops: the
// Target is declared after it).
struct TempDir {
  std::string path;
  ~TempDir() {
    std::error_code ec;
    if (!path.empty()) std::filesystem::remove_all(path, ec);
  }
};

// Replays requests one at a time against the daemon and keeps the counts.
class Replayer {
 public:
  Replayer(Client& client, const Namespace& ns, uint64_t block_bytes)
      : client_(client), ns_(ns), hasher_(ns.id, 512), block_bytes_(block_bytes) {}

  absl::Status Request(const std::vector<uint64_t>& ids);

  HitCount count;
  std::array<uint64_t, 4> tier_hits{};  // indexed by Tier
  uint64_t saved = 0;
  uint64_t rejected = 0;       // blocks not saved: RESOURCE_EXHAUSTED
  uint64_t disagreements = 0;  // requests where Load found fewer blocks than Lookup
  uint64_t checked_bytes = 0;

 private:
  BlockKey KeyOf(uint64_t id) const {
    char bytes[8];
    std::memcpy(bytes, &id, 8);
    return hasher_.FromEngineHash(std::string_view(bytes, 8));
  }

  Client& client_;
  Namespace ns_;
  PrefixHasher hasher_;
  uint64_t block_bytes_;
  std::vector<BlockKey> keys_;
  std::vector<Tier> tiers_;
  std::vector<std::byte> buf_;
  std::vector<void*> ptrs_;
};

absl::Status Replayer::Request(const std::vector<uint64_t>& ids) {
  const size_t n = ids.size();
  keys_.resize(n);
  for (size_t i = 0; i < n; ++i) keys_[i] = KeyOf(ids[i]);
  if (buf_.size() < n * block_bytes_) buf_.resize(n * block_bytes_);
  ptrs_.resize(n);
  for (size_t i = 0; i < n; ++i) ptrs_[i] = buf_.data() + i * block_bytes_;

  // Lookup: the leading present keys and their tiers, batch by batch until the first miss.
  size_t found = 0;
  tiers_.clear();
  for (size_t b = 0; b < n; b += kBatch) {
    const size_t m = std::min(kBatch, n - b);
    LookupResult lr;
    if (Status s = client_.Lookup(ns_.id, {keys_.data() + b, m}, &lr); !s.ok()) return ToAbsl(s);
    if (lr.tiers.size() < lr.prefix_blocks) {
      return absl::InternalError("lookup answered fewer tiers than present keys");
    }
    tiers_.insert(tiers_.end(), lr.tiers.begin(), lr.tiers.begin() + lr.prefix_blocks);
    found += lr.prefix_blocks;
    if (lr.prefix_blocks < m) break;
  }

  // Load the hit prefix into poisoned buffers and check every byte.
  std::memset(buf_.data(), 0xA5, found * block_bytes_);
  size_t loaded = 0;
  for (size_t b = 0; b < found; b += kBatch) {
    const size_t m = std::min(kBatch, found - b);
    size_t got = 0;
    Status s = client_.Load(ns_, {keys_.data() + b, m}, {ptrs_.data() + b, m}, &got);
    if (!s.ok()) return ToAbsl(s);
    loaded += got;
    if (got < m) break;
  }
  for (size_t i = 0; i < loaded; ++i) {
    if (!CheckBlock(ids[i], buf_.data() + i * block_bytes_, block_bytes_)) {
      return absl::DataLossError(absl::StrCat("loaded bytes of hash id ", ids[i], " differ"));
    }
  }
  checked_bytes += loaded * block_bytes_;
  if (loaded != found) ++disagreements;
  for (size_t i = 0; i < loaded; ++i) ++tier_hits[static_cast<size_t>(tiers_[i]) & 3];
  count.refs += n;
  count.hits += loaded;

  // Save the rest, chained to the block before each batch.
  for (size_t b = loaded; b < n; b += kBatch) {
    const size_t m = std::min(kBatch, n - b);
    for (size_t i = b; i < b + m; ++i)
      FillBlock(ids[i], buf_.data() + i * block_bytes_, block_bytes_);
    std::vector<const void*> src(ptrs_.begin() + b, ptrs_.begin() + b + m);
    size_t wrote = 0;
    Status s =
        client_.Save(ns_, {keys_.data() + b, m}, src, &wrote, b == 0 ? BlockKey{} : keys_[b - 1]);
    if (s.code() == Status::Code::kResourceExhausted) {
      rejected += n - b;  // the rest of the chain could not link to a missing parent anyway
      break;
    }
    if (!s.ok()) return ToAbsl(s);
    saved += wrote;
  }
  return absl::OkStatus();
}

// A daemon for the replay, a client of it and the trace's namespace. The NVMe file (when
// nvme_bytes > 0) goes in a temporary directory owned by *nvme_dir.
using TraceDaemon = ConnectedDaemon;

absl::StatusOr<TraceDaemon> StartTraceDaemon(const TraceBenchOptions& o, uint64_t nvme_bytes,
                                             TempDir* nvme_dir) {
  std::vector<std::string> args = {"--dram-capacity", std::to_string(o.dram_bytes), "--log-level",
                                   "warn"};
  if (nvme_bytes > 0) {
    char tmpl[] = "/tmp/kvtier-bench-nvme-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
    nvme_dir->path = tmpl;
    args.insert(args.end(), {"--nvme-path", nvme_dir->path + "/nvme.dat", "--nvme-capacity",
                             std::to_string(nvme_bytes)});
  }
  return StartConnected(args, "kvtier-bench-trace", o.block_bytes);
}

// The same replay against a DRAM-only daemon of the same DRAM size: the figure NVMe is
// measured against.
absl::StatusOr<HitCount> ReplayDramOnly(const TraceBenchOptions& o,
                                        const std::vector<TraceRequest>& trace) {
  TempDir unused;
  auto daemon = StartTraceDaemon(o, 0, &unused);
  if (!daemon.ok()) return daemon.status();
  Replayer replay(*daemon->client, daemon->ns, o.block_bytes);
  for (const TraceRequest& r : trace) {
    if (absl::Status s = replay.Request(r.hash_ids); !s.ok()) return s;
  }
  return replay.count;
}

std::string Ratio(double v) { return absl::StrFormat("%.4f", v); }

std::string Share(uint64_t part, uint64_t whole) {
  return absl::StrFormat("%.4f", whole == 0 ? 0.0 : static_cast<double>(part) / whole);
}

// Rounded down to a whole MiB (at least 1 MiB), as a flag value.
std::string SizeFlag(double bytes) {
  const uint64_t mib = std::max<uint64_t>(1, static_cast<uint64_t>(bytes) >> 20);
  return mib % 1024 == 0 ? absl::StrCat(mib / 1024, "GiB") : absl::StrCat(mib, "MiB");
}

void PrintTiers(const DaemonStats& before, const DaemonStats& after,
                const std::array<uint64_t, 4>& tier_hits, uint64_t refs) {
  std::map<std::string, const TierStats*> old;
  for (const TierStats& t : before.tiers) old[t.name] = &t;
  std::printf("%-6s %12s %12s %9s %10s %8s %12s %12s %10s\n", "tier", "capacity", "used", "blocks",
              "hits", "hit", "bytes_in", "bytes_out", "evictions");
  for (const TierStats& t : after.tiers) {
    const TierStats zero;
    const TierStats& o = old.contains(t.name) ? *old[t.name] : zero;
    uint64_t hits = 0;
    for (int tier = 0; tier < 4; ++tier) {
      if (t.name == TierName(static_cast<Tier>(tier))) hits = tier_hits[tier];
    }
    std::printf("%-6s %12s %12s %9llu %10llu %8s %12s %12s %10llu\n", t.name.c_str(),
                FormatBytes(t.capacity_bytes).c_str(), FormatBytes(t.used_bytes).c_str(),
                static_cast<unsigned long long>(t.blocks), static_cast<unsigned long long>(hits),
                Share(hits, refs).c_str(), FormatBytes(t.bytes_in - o.bytes_in).c_str(),
                FormatBytes(t.bytes_out - o.bytes_out).c_str(),
                static_cast<unsigned long long>(t.evictions - o.evictions));
  }
}

}  // namespace

std::string FormatTraceResult(const Result& r) {
  return absl::StrCat("RESULT ", r.name, " ours=", Ratio(r.ours), " best=", Ratio(r.baseline),
                      " ratio=", absl::StrFormat("%.3f", r.ratio));
}

absl::StatusOr<std::vector<Result>> RunTraceBench(const TraceBenchOptions& o) {
  if (o.block_bytes == 0) return absl::InvalidArgumentError("--block-bytes must be > 0");
  if (o.dram_bytes == 0) return absl::InvalidArgumentError("--dram is required (e.g. 256MiB)");
  const std::string path = ResolveTrace(o.trace);
  auto trace = LoadTrace(path, o.limit);
  if (!trace.ok() && path != o.trace) {
    return absl::Status(trace.status().code(), absl::StrCat(trace.status().message(),
                                                            " (not found from the working "
                                                            "directory either: '",
                                                            o.trace, "')"));
  }
  if (!trace.ok()) return trace.status();
  const TraceShape shape = ShapeOf(*trace);
  const uint64_t unique = shape.distinct_blocks * o.block_bytes;
  std::printf("trace: %s\n", path.c_str());
  std::printf(
      "trace: %llu requests, %llu block references, %llu distinct blocks; at %s per block the "
      "unique bytes are %s\n",
      static_cast<unsigned long long>(shape.requests),
      static_cast<unsigned long long>(shape.block_refs),
      static_cast<unsigned long long>(shape.distinct_blocks), FormatBytes(o.block_bytes).c_str(),
      FormatBytes(unique).c_str());
  std::printf("trace: target configuration (issue): --dram %s (10%%) --nvme %s (60%%)\n",
              SizeFlag(0.1 * static_cast<double>(unique)).c_str(),
              SizeFlag(0.6 * static_cast<double>(unique)).c_str());

  TempDir nvme_dir;
  auto daemon = StartTraceDaemon(o, o.nvme_bytes, &nvme_dir);
  if (!daemon.ok()) return daemon.status();
  Client* client = daemon->client.get();
  const Namespace ns = daemon->ns;

  const uint64_t lru_blocks = o.dram_bytes / o.block_bytes;
  const std::string nvme_flag =
      o.nvme_bytes > 0 ? absl::StrCat(" --nvme-capacity ", FormatBytes(o.nvme_bytes)) : "";
  std::printf("daemon: --dram-capacity %s%s; plain LRU: %llu blocks; %zu keys per call\n",
              FormatBytes(o.dram_bytes).c_str(), nvme_flag.c_str(),
              static_cast<unsigned long long>(lru_blocks), kBatch);
  std::fflush(stdout);

  DaemonStats before, after;
  if (Status s = client->Stats(&before); !s.ok()) return ToAbsl(s);
  Replayer replay(*client, ns, o.block_bytes);
  InfiniteCacheSim best;
  LruCacheSim lru(lru_blocks);
  const auto t0 = Now();
  uint64_t done = 0;
  for (const TraceRequest& r : *trace) {
    best.Request(r.hash_ids);
    lru.Request(r.hash_ids);
    if (absl::Status s = replay.Request(r.hash_ids); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("request ", done + 1, ": ", s.message()));
    }
    if (++done % kProgressEvery == 0 || done == shape.requests) {
      std::printf("  [%llu/%llu] hit ratio: ours %s, lru %s, best %s; %llu saved, %.1f s\n",
                  static_cast<unsigned long long>(done),
                  static_cast<unsigned long long>(shape.requests),
                  Ratio(replay.count.ratio()).c_str(), Ratio(lru.count().ratio()).c_str(),
                  Ratio(best.count().ratio()).c_str(),
                  static_cast<unsigned long long>(replay.saved), Seconds(Now() - t0));
      std::fflush(stdout);
    }
  }
  const double secs = Seconds(Now() - t0);
  if (Status s = client->Stats(&after); !s.ok()) return ToAbsl(s);

  const HitCount& ours = replay.count;
  std::printf(
      "replayed %llu requests, %llu block references in %.1f s (%.0f requests/s); %s of "
      "loaded blocks checked\n",
      static_cast<unsigned long long>(done), static_cast<unsigned long long>(ours.refs), secs,
      secs > 0 ? static_cast<double>(done) / secs : 0.0, FormatBytes(replay.checked_bytes).c_str());
  std::printf("hit ratio (leading-prefix blocks / block references):\n");
  std::printf("  %-26s %s (%llu blocks)\n", "ours (kvtierd):", Ratio(ours.ratio()).c_str(),
              static_cast<unsigned long long>(ours.hits));
  std::printf("  %-26s %s (%llu blocks, %llu evictions)\n",
              absl::StrCat("plain LRU, ", lru_blocks, " blocks:").c_str(),
              Ratio(lru.count().ratio()).c_str(), static_cast<unsigned long long>(lru.count().hits),
              static_cast<unsigned long long>(lru.evictions()));
  std::printf("  %-26s %s (%llu blocks)\n",
              "infinite cache (best):", Ratio(best.count().ratio()).c_str(),
              static_cast<unsigned long long>(best.count().hits));
  std::printf(
      "saves: %llu blocks written, %llu rejected (RESOURCE_EXHAUSTED); daemon "
      "rejected_writes +%llu; Lookup/Load disagreed on %llu requests\n",
      static_cast<unsigned long long>(replay.saved),
      static_cast<unsigned long long>(replay.rejected),
      static_cast<unsigned long long>(after.rejected_writes - before.rejected_writes),
      static_cast<unsigned long long>(replay.disagreements));
  PrintTiers(before, after, replay.tier_hits, ours.refs);
  std::optional<HitCount> dram_only;
  if (o.nvme_bytes > 0) {
    std::printf("replaying again against a DRAM-only daemon (same --dram, no NVMe)...\n");
    std::fflush(stdout);
    auto count = ReplayDramOnly(o, *trace);
    if (!count.ok()) return count.status();
    dram_only = *count;
    std::printf("  %-26s %s (%llu blocks)\n",
                "DRAM only (same DRAM):", Ratio(dram_only->ratio()).c_str(),
                static_cast<unsigned long long>(dram_only->hits));
  } else {
    std::printf("hint: this is the DRAM-only figure; add --nvme %s for the tiered one\n",
                SizeFlag(0.6 * static_cast<double>(unique)).c_str());
  }

  const double b = best.count().ratio();
  std::vector<Result> results;
  results.push_back(
      {"trace_hit_lru", {}, lru.count().ratio(), "best", b, b > 0 ? lru.count().ratio() / b : 0});
  if (dram_only) {
    results.push_back({"trace_hit_dram_only",
                       {},
                       dram_only->ratio(),
                       "best",
                       b,
                       b > 0 ? dram_only->ratio() / b : 0});
  }
  results.push_back({"trace_hit", {}, ours.ratio(), "best", b, b > 0 ? ours.ratio() / b : 0});
  return results;
}

}  // namespace kvtier::bench
