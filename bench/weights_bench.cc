#include "bench/weights_bench.h"

#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "common/size.h"
#include "tests/support/nginx_origin.h"

namespace kvtier::bench {
namespace {

using kvtier::testing::CurlFetch;
using kvtier::testing::CurlResult;
using kvtier::testing::NginxOrigin;
using kvtier::testing::NginxOriginOptions;
using kvtier::testing::Sha256OfFile;

constexpr const char* kFileName = "model.safetensors";

// A directory removed on destruction.
class TempDir {
 public:
  static absl::StatusOr<TempDir> Make(const std::string& parent) {
    std::string tmpl = (parent.empty() ? std::string("/tmp") : parent) + "/kvtier-weights-XXXXXX";
    if (mkdtemp(tmpl.data()) == nullptr) {
      return absl::InternalError(absl::StrCat("mkdtemp in ", parent.empty() ? "/tmp" : parent));
    }
    TempDir d;
    d.path_ = tmpl;
    return d;
  }
  TempDir() = default;
  TempDir(TempDir&& o) noexcept : path_(std::move(o.path_)) { o.path_.clear(); }
  TempDir& operator=(TempDir&&) = delete;
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Checks that every file in `paths` has the sha256 `want`.
absl::Status CheckCopies(const std::vector<std::string>& paths, const std::string& want) {
  for (const std::string& p : paths) {
    auto got = Sha256OfFile(p);
    if (!got.ok()) return got.status();
    if (*got != want) {
      return absl::DataLossError(
          absl::StrCat(p, ": sha256 ", *got, " differs from the origin's ", want));
    }
  }
  return absl::OkStatus();
}

// N curl processes each read the whole file at once; seconds until the last is done.
absl::StatusOr<double> RunNaive(const NginxOrigin& origin, int n, const std::string& out_dir,
                                const std::string& sha, int timeout_s) {
  std::vector<CurlResult> results(n);
  std::vector<std::string> paths;
  for (int i = 0; i < n; ++i) paths.push_back(absl::StrCat(out_dir, "/naive", i));
  std::vector<std::thread> threads;
  const auto t0 = Now();
  for (int i = 0; i < n; ++i) {
    threads.emplace_back(
        [&, i] { results[i] = CurlFetch(origin.Url(kFileName), paths[i], "", timeout_s); });
  }
  for (std::thread& t : threads) t.join();
  const double secs = Seconds(Now() - t0);
  for (const CurlResult& r : results) {
    if (r.exit_code != 0 || r.http_status != 200) {
      return absl::InternalError(absl::StrCat("curl failed: ", r.output));
    }
  }
  absl::Status s = CheckCopies(paths, sha);
  for (const std::string& p : paths) std::filesystem::remove(p);
  if (!s.ok()) return s;
  return secs;
}

struct PullFigures {
  double seconds = 0;  // until the last pull finished
  std::vector<nlohmann::json> summaries;
};

// N daemons (static peers), each pulling the file at the same moment.
absl::StatusOr<PullFigures> RunOurs(const NginxOrigin& origin, const WeightsBenchOptions& o, int n,
                                    const std::string& out_dir, const std::string& sha) {
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) ids.push_back(absl::StrCat("w", i));
  // Room for the whole file in each daemon's DRAM, beside what the daemon keeps for itself.
  const uint64_t capacity = o.size + (256ULL << 20);
  std::vector<std::string> args = {"--dram-capacity", std::to_string(capacity), "--weight-capacity",
                                   std::to_string(capacity)};
  if (o.chunk_size != 0) {
    args.insert(args.end(), {"--weight-chunk-size", std::to_string(o.chunk_size)});
  }
  // KVTIER_WEIGHTS_BENCH_LOGS=DIR: the daemons' logs are kept as DIR/<id>.log (with
  // KVTIER_BENCH_LOG=debug, a line per chunk fetched).
  const char* log_dir = std::getenv("KVTIER_WEIGHTS_BENCH_LOGS");
  auto daemons = StartStaticCluster(ids, ClusterTls(o.tls), args);
  if (!daemons.ok()) return daemons.status();

  std::vector<std::string> dirs, copies;
  for (int i = 0; i < n; ++i) {
    dirs.push_back(absl::StrCat(out_dir, "/ours", i));
    std::filesystem::create_directories(dirs.back());
    copies.push_back(dirs.back() + "/" + kFileName);
  }
  std::vector<ProcessResult> results(n);
  std::vector<std::thread> threads;
  const std::string kvtier = SelfDir() + "/kvtier";
  const auto t0 = Now();
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      results[i] = RunProgram({kvtier, "--socket", (*daemons)[i]->socket_path(), "weights", "pull",
                               origin.Url(kFileName), "--to", dirs[i], "--json"},
                              o.timeout_s);
    });
  }
  for (std::thread& t : threads) t.join();
  PullFigures figures;
  figures.seconds = Seconds(Now() - t0);
  if (log_dir != nullptr) {
    for (int i = 0; i < n; ++i) {
      std::ofstream(absl::StrCat(log_dir, "/", ids[i], ".log")) << (*daemons)[i]->ReadLog();
    }
  }
  for (int i = 0; i < n; ++i) {
    if (results[i].exit_code != 0) {
      const bool alive = (*daemons)[i]->Alive();
      const std::string log = (*daemons)[i]->ReadLog();
      return absl::InternalError(absl::StrCat(
          "`kvtier weights pull` on ", ids[i], " exited ", results[i].exit_code, " (its daemon ",
          alive ? "is alive" : "is gone", "): ", results[i].output,
          "\ndaemon log (tail): ", log.substr(log.size() > 3000 ? log.size() - 3000 : 0)));
    }
    const std::string& out = results[i].output;
    const size_t brace = out.rfind('{');
    nlohmann::json j = nlohmann::json::parse(
        brace == std::string::npos ? std::string("null") : out.substr(brace), nullptr, false);
    figures.summaries.push_back(j.is_object() ? j : nlohmann::json::object());
  }
  if (absl::Status s = CheckCopies(copies, sha); !s.ok()) return s;
  return figures;  // the daemons stop here, so nginx logs whatever they still had in flight
}

// What the origin did for entries [from, end) of its log.
struct OriginSpan {
  uint64_t bytes = 0;
  int requests = 0;
  double seconds = 0;  // first request's start to last request's end
};
OriginSpan SpanOf(const std::vector<kvtier::testing::AccessLogEntry>& log, size_t from) {
  OriginSpan span;
  double first = 0, last = 0;
  for (size_t i = from; i < log.size(); ++i) {
    const double start = log[i].end_s - log[i].duration_s;
    if (span.requests == 0 || start < first) first = start;
    if (span.requests == 0 || log[i].end_s > last) last = log[i].end_s;
    span.bytes += log[i].body_bytes;
    ++span.requests;
  }
  span.seconds = last - first;
  return span;
}

uint64_t Field(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_number_unsigned() ? j[key].get<uint64_t>() : 0;
}

}  // namespace

absl::StatusOr<uint64_t> ParseBitRate(const std::string& text, const std::string& what) {
  std::string t = absl::AsciiStrToLower(absl::StripAsciiWhitespace(text));
  absl::string_view v = t;
  if (absl::ConsumeSuffix(&v, "/s")) {
    auto bytes = ParseSize(std::string(v), what);
    if (!bytes.ok()) return bytes.status();
    return *bytes * 8;
  }
  uint64_t scale = 1;
  if (absl::ConsumeSuffix(&v, "kbit")) {
    scale = 1'000;
  } else if (absl::ConsumeSuffix(&v, "mbit")) {
    scale = 1'000'000;
  } else if (absl::ConsumeSuffix(&v, "gbit")) {
    scale = 1'000'000'000;
  } else {
    absl::ConsumeSuffix(&v, "bit");
  }
  double number = 0;
  if (!absl::SimpleAtod(v, &number) || number <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": '", text, "' is not a rate (e.g. 400Mbit, 1Gbit, 50MB/s, 64MiB/s)"));
  }
  return static_cast<uint64_t>(number * static_cast<double>(scale));
}

std::string FormatWeightsResult(const Result& r) {
  std::string line = "RESULT " + r.name;
  std::string tail;
  for (const auto& [k, v] : r.params) {
    absl::StrAppend(k == "origin_bytes" ? &tail : &line, " ", k, "=", v);
  }
  absl::StrAppend(&line,
                  absl::StrFormat(" ours=%.2f baseline_%s=%.2f ratio=%.2f", r.ours, r.baseline_name,
                                  r.baseline, r.ratio),
                  tail);
  return line;
}

absl::StatusOr<std::vector<Result>> RunWeightsBench(const WeightsBenchOptions& o) {
  if (o.nodes.empty() || o.size == 0 || o.origin_rate_bits == 0) {
    return absl::InvalidArgumentError("--nodes, --size and --origin-rate must be > 0");
  }
  for (int n : o.nodes) {
    if (n <= 0 || n > 16) return absl::InvalidArgumentError("--nodes: each count in 1..16");
  }
  if (o.rounds <= 0) return absl::InvalidArgumentError("--rounds must be > 0");
  NginxOriginOptions origin_options;
  origin_options.network_namespace = true;
  origin_options.rate_bits_per_sec = o.origin_rate_bits;
  auto origin = NginxOrigin::Start(origin_options);
  if (!origin.ok()) {
    return absl::Status(origin.status().code(),
                        absl::StrCat("the capped origin (nginx in a network namespace): ",
                                     origin.status().message()));
  }
  auto file = (*origin)->WriteRandomFile(kFileName, o.size, 6);
  if (!file.ok()) return file.status();
  auto sha = Sha256OfFile(*file);
  if (!sha.ok()) return sha.status();
  auto out = TempDir::Make(o.dir);
  if (!out.ok()) return out.status();
  std::printf(
      "weights: nginx %s in netns %s, tbf %s/s aggregate; %s random file, sha256 %.16s...; "
      "copies under %s\n",
      (*origin)->Url(kFileName).c_str(), (*origin)->netns().c_str(),
      absl::StrFormat("%.0f Mbit", static_cast<double>(o.origin_rate_bits) / 1e6).c_str(),
      FormatBytes(o.size).c_str(), sha->c_str(), out->path().c_str());
  std::fflush(stdout);

  std::vector<Result> results;
  const double size = static_cast<double>(o.size);
  for (int n : o.nodes) {
    // Rounds interleave the two (naive, ours, naive, ours, ...); the medians are reported, and
    // the most the origin sent in any round of ours.
    std::vector<double> naive_s, ours_s, ratios;
    uint64_t worst_origin_bytes = 0;
    for (int round = 0; round < o.rounds; ++round) {
      uint64_t before = (*origin)->BytesServed();
      auto naive = RunNaive(**origin, n, out->path(), *sha, o.timeout_s);
      if (!naive.ok()) return naive.status();
      const uint64_t naive_bytes = (*origin)->BytesServed() - before;
      naive_s.push_back(*naive);
      std::printf("  nodes=%d round %d: naive %d x curl %.2f s (origin sent %.2fx the file)", n,
                  round + 1, n, *naive, static_cast<double>(naive_bytes) / size);
      if (o.baseline_only) {
        std::printf("\n");
        std::fflush(stdout);
        continue;
      }
      const size_t log_from = (*origin)->AccessLog().size();
      auto ours = RunOurs(**origin, o, n, out->path(), *sha);
      if (!ours.ok()) return ours.status();
      const OriginSpan span = SpanOf((*origin)->AccessLog(), log_from);
      const uint64_t origin_bytes = span.bytes;
      for (int i = 0; i < n; ++i) {
        std::filesystem::remove_all(absl::StrCat(out->path(), "/ours", i));
      }
      ours_s.push_back(ours->seconds);
      ratios.push_back(*naive / ours->seconds);
      worst_origin_bytes = std::max(worst_origin_bytes, origin_bytes);
      std::printf(
          "; ours %.2f s (origin sent %.3fx in %d requests, busy %.2f s from the first request's "
          "start to the last one's end: %.1f MB/s, the cap is %.1f)\n",
          ours->seconds, static_cast<double>(origin_bytes) / size, span.requests, span.seconds,
          span.seconds > 0 ? static_cast<double>(origin_bytes) / span.seconds / 1e6 : 0.0,
          static_cast<double>(o.origin_rate_bits) / 8e6);
      for (int i = 0; i < n; ++i) {
        const nlohmann::json& j = ours->summaries[i];
        std::printf(
            "    w%d: %.2f s, from origin %s, peers %s, local %s\n", i,
            j.contains("seconds") && j["seconds"].is_number() ? j["seconds"].get<double>() : -1.0,
            FormatBytes(Field(j, "origin_bytes")).c_str(),
            FormatBytes(Field(j, "peer_bytes")).c_str(),
            FormatBytes(Field(j, "local_bytes")).c_str());
      }
      std::fflush(stdout);
    }
    if (o.baseline_only) continue;
    results.push_back({"weights_fanout",
                       {{"nodes", std::to_string(n)},
                        {"origin_bytes",
                         absl::StrFormat("%.3f", static_cast<double>(worst_origin_bytes) / size)}},
                       Median(ours_s),
                       "naive",
                       Median(naive_s),
                       Median(ratios)});
  }
  return results;
}

}  // namespace kvtier::bench
