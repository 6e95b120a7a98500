// kvtier-bench: the benchmark driver. One subcommand per capability; each prints its details,
// then RESULT lines comparing our figure with a physical baseline measured in the same run.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "absl/strings/str_split.h"
#include "bench/dram_bench.h"
#include "bench/gpu_bench.h"
#include "bench/nvme_bench.h"
#include "bench/remote_bench.h"
#include "bench/ring_bench.h"
#include "bench/trace_bench.h"
#include "bench/transport_bench.h"
#include "bench/ucx_perftest.h"
#include "bench/weights_bench.h"
#include "common/size.h"

using kvtier::bench::Result;

namespace {

// CLI11 validator-like conversion of "1MiB" style sizes.
bool ParseSizeFlag(const std::string& text, const char* flag, uint64_t* out) {
  auto v = kvtier::ParseSize(text, flag);
  if (!v.ok()) {
    std::fprintf(stderr, "kvtier-bench: %s\n", std::string(v.status().message()).c_str());
    return false;
  }
  *out = *v;
  return true;
}

int Report(const absl::StatusOr<std::vector<Result>>& results, bool json,
           std::string (*format)(const Result&) = kvtier::bench::FormatResult) {
  if (!results.ok()) {
    std::fprintf(stderr, "kvtier-bench: %s\n", results.status().ToString().c_str());
    return 1;
  }
  if (json) {
    std::printf("%s\n", kvtier::bench::ResultsJson(*results).c_str());
  } else {
    for (const Result& r : *results) std::printf("%s\n", format(r).c_str());
  }
  return 0;
}

// Prints the per-test figures and the best (or them as JSON); the exit status.
int ReportUcxBaseline(const kvtier::bench::UcxPerftestOptions& options,
                      const absl::StatusOr<kvtier::bench::UcxPerftestResult>& result, bool json) {
  if (!result.ok()) {
    std::fprintf(stderr, "kvtier-bench: %s\n", result.status().ToString().c_str());
    return 1;
  }
  const std::string tls = options.tls.empty() ? "default" : options.tls;
  if (json) {
    nlohmann::json figures = nlohmann::json::array();
    for (const auto& f : result->figures) {
      figures.push_back({{"test", f.test}, {"gbps", f.gbps}, {"error", f.error}});
    }
    nlohmann::json out = {{"tls", tls},
                          {"block_bytes", options.bytes},
                          {"figures", figures},
                          {"best_test", result->best_test},
                          {"best_gbps", result->best_gbps},
                          {"best_two_sided_test", result->best_two_sided_test},
                          {"best_two_sided_gbps", result->best_two_sided_gbps}};
    std::printf("%s\n", out.dump().c_str());
    return 0;
  }
  for (const auto& f : result->figures) {
    if (f.error.empty()) {
      std::printf("ucx_perftest %-10s tls=%s block_bytes=%llu %8.2f GB/s   (%s)\n", f.test.c_str(),
                  tls.c_str(), static_cast<unsigned long long>(options.bytes), f.gbps,
                  f.command.c_str());
    } else {
      std::printf("ucx_perftest %-10s tls=%s FAILED: %s\n", f.test.c_str(), tls.c_str(),
                  f.error.c_str());
    }
  }
  // One-sided tests reuse one buffer: on shared memory they measure cache; see ucx_perftest.h.
  std::printf(
      "BASELINE ucx_perftest tls=%s block_bytes=%llu best_test=%s best_gbps=%.2f "
      "two_sided_test=%s two_sided_gbps=%.2f\n",
      tls.c_str(), static_cast<unsigned long long>(options.bytes), result->best_test.c_str(),
      result->best_gbps,
      result->best_two_sided_test.empty() ? "-" : result->best_two_sided_test.c_str(),
      result->best_two_sided_gbps);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvtier-bench: kvtier benchmarks against physical baselines"};
  app.require_subcommand(1);
  bool json = false;
  app.add_flag("--json", json, "Print the RESULT figures as JSON");

  kvtier::bench::GpuBenchOptions gpu;
  CLI::App* gpu_cmd =
      app.add_subcommand("gpu", "Device -> arena -> device (SaveKv/LoadKv) vs cudaMemcpy");
  gpu_cmd->add_option("--blocks", gpu.blocks, "Blocks per call (2 MiB each)")
      ->capture_default_str();
  gpu_cmd->add_option("--rounds", gpu.rounds, "Rounds")->capture_default_str();
  gpu_cmd->add_option("--socket", gpu.socket, "Use this daemon instead of starting one");

  kvtier::bench::DramBenchOptions dram;
  std::string dram_block = "1MiB";
  CLI::App* dram_cmd = app.add_subcommand("dram", "DRAM tier save/load vs memcpy");
  dram_cmd->add_option("--block-size", dram_block, "Block size")->capture_default_str();
  dram_cmd->add_option("--blocks", dram.blocks, "Blocks per round")->capture_default_str();
  dram_cmd->add_option("--batch", dram.batch, "Keys per call")->capture_default_str();
  dram_cmd->add_option("--rounds", dram.rounds, "Interleaved rounds")->capture_default_str();
  dram_cmd->add_option("--lookups", dram.lookups, "Lookup calls timed")->capture_default_str();
  dram_cmd->add_option("--socket", dram.socket, "Use this daemon instead of starting one");

  kvtier::bench::TraceBenchOptions trace;
  std::string trace_block = "16KiB", trace_dram, trace_nvme;
  CLI::App* trace_cmd =
      app.add_subcommand("trace", "Replay a Mooncake trace: block hit ratio vs LRU and best case");
  trace_cmd->add_option("--trace", trace.trace, "Trace file (JSONL, Mooncake format)")
      ->capture_default_str();
  trace_cmd->add_option("--block-bytes", trace_block, "Bytes per trace block (512 tokens)")
      ->capture_default_str();
  trace_cmd->add_option("--dram", trace_dram, "Daemon DRAM capacity")->required();
  trace_cmd->add_option("--nvme", trace_nvme, "Daemon NVMe capacity (default: DRAM only)");
  trace_cmd->add_option("--limit", trace.limit, "Replay the first N requests (0: all)")
      ->capture_default_str();

  kvtier::bench::NvmeBenchOptions nvme;
  std::string nvme_block = "1MiB";
  CLI::App* nvme_cmd = app.add_subcommand(
      "nvme",
      "NVMe tier demote (write) and promote (read) throughput vs fio on the same file system; "
      "always starts its own daemons (no --socket)");
  nvme_cmd->add_option("--block-size", nvme_block, "Block size")->capture_default_str();
  nvme_cmd->add_option("--qd", nvme.qd, "Daemon --nvme-queue-depth and fio --iodepth")
      ->capture_default_str();
  nvme_cmd->add_option("--blocks", nvme.blocks, "Blocks per round (0: about 1 GiB)")
      ->capture_default_str();
  nvme_cmd->add_option("--rounds", nvme.rounds, "Interleaved rounds")->capture_default_str();
  nvme_cmd->add_option("--batch", nvme.batch, "Keys per Save/Load call")->capture_default_str();
  nvme_cmd->add_option("--streams", nvme.streams, "Load calls in flight at once (read phase)")
      ->capture_default_str();
  nvme_cmd->add_option("--dir", nvme.dir,
                       "Directory for the device files, on a disk (default: the current one)");

  kvtier::bench::RingBenchOptions ring;
  CLI::App* ring_cmd = app.add_subcommand(
      "ring",
      "Cluster placement over N nodes: lookup rate, memory, balance and movement vs hash mod N "
      "(one core, no daemon)");
  ring_cmd->add_option("--nodes", ring.nodes, "Nodes (slots 0..N-1)")->capture_default_str();
  ring_cmd->add_option("--keys", ring.keys, "Random keys (0: 200 x nodes)")->capture_default_str();
  ring_cmd->add_option("--seed", ring.seed, "Seed of the keys and of the node that leaves")
      ->capture_default_str();

  kvtier::bench::UcxPerftestOptions ucx;
  std::string ucx_block = "1MiB";
  std::string ucx_tests = "tag_bw,ucp_get,ucp_put_bw,ucp_am_bw";
  CLI::App* ucx_cmd = app.add_subcommand(
      "ucx-baseline",
      "UCX baseline: ucx_perftest server and client on 127.0.0.1, bandwidth per UCP test and the "
      "best");
  ucx_cmd->add_option("--tls", ucx.tls, "UCX_TLS, e.g. tcp or posix,cma (',self' is added)")
      ->capture_default_str();
  ucx_cmd->add_option("--block-size", ucx_block, "Message size")->capture_default_str();
  ucx_cmd->add_option("--tests", ucx_tests, "ucx_perftest tests, comma-separated")
      ->capture_default_str();
  ucx_cmd->add_option("--iterations", ucx.iterations, "Messages per test (0: about 1 GiB)")
      ->capture_default_str();
  ucx_cmd->add_option("--timeout", ucx.timeout_s, "Seconds allowed per test")
      ->capture_default_str();

  kvtier::bench::RemoteBenchOptions remote;
  std::string remote_block = "1MiB";
  CLI::App* remote_cmd = app.add_subcommand(
      "remote",
      "Cluster of 3 daemons on loopback: blocks saved on one, read through another over UCX, vs "
      "ucx_perftest; pool-wide lookup latency of a 2,048-block chain");
  remote_cmd->add_option("--block-size", remote_block, "Block size")->capture_default_str();
  remote_cmd->add_option("--blocks", remote.blocks, "Blocks (0: about 256 MiB)")
      ->capture_default_str();
  remote_cmd->add_option("--batch", remote.batch, "Keys per Acquire")->capture_default_str();
  remote_cmd->add_option("--streams", remote.streams, "Acquire calls in flight")
      ->capture_default_str();
  remote_cmd->add_option("--rounds", remote.rounds, "Interleaved rounds")->capture_default_str();
  remote_cmd->add_option("--lookups", remote.lookups, "Lookup calls timed")->capture_default_str();
  remote_cmd->add_option("--tls", remote.tls,
                         "UCX_TLS for the daemons (default: $UCX_TLS, else tcp)");

  kvtier::bench::TransportBenchOptions transport;
  std::string transport_block = "1MiB", transport_arena = "1GiB";
  CLI::App* transport_cmd = app.add_subcommand(
      "transport",
      "The UCX transport alone: two processes, one pulling blocks from the other's arena (no "
      "daemon, no control plane), vs ucx_perftest");
  transport_cmd->add_option("--block-size", transport_block, "Block (op) size")
      ->capture_default_str();
  transport_cmd->add_option("--arena", transport_arena, "Arena size on each side (working set)")
      ->capture_default_str();
  transport_cmd->add_option("--batch", transport.batch, "Ops per Pull")->capture_default_str();
  transport_cmd->add_option("--passes", transport.passes, "Sweeps of the arena per round")
      ->capture_default_str();
  transport_cmd->add_option("--inflight", transport.inflight, "Pulls in flight")
      ->capture_default_str();
  transport_cmd->add_option("--rounds", transport.rounds, "Interleaved rounds")
      ->capture_default_str();
  transport_cmd->add_flag("--verify", transport.verify,
                          "XXH3 of every block on arrival, on a worker thread (as the daemon)");
  transport_cmd->add_option("--protocol", transport.protocol, "auto, am or get")
      ->capture_default_str();
  transport_cmd->add_option("--tls", transport.tls, "UCX_TLS (default: $UCX_TLS, else tcp)");
  transport_cmd->add_option("--arena-pages", transport.arena_pages, "auto, 4k, thp or hugetlb")
      ->capture_default_str();

  kvtier::bench::WeightsBenchOptions weights;
  std::string weights_size = "256MiB", weights_rate = "400Mbit", weights_chunk;
  CLI::App* weights_cmd = app.add_subcommand(
      "weights",
      "Model-weight fan-out: N daemons pull one file through an origin capped in aggregate (nginx "
      "in a network namespace, tbf) vs N curl readers of the same origin; needs CAP_NET_ADMIN");
  weights_cmd->add_option("--nodes", weights.nodes, "Node counts to run, e.g. 1,2,4")
      ->delimiter(',')
      ->capture_default_str();
  weights_cmd->add_option("--size", weights_size, "File size")->capture_default_str();
  weights_cmd
      ->add_option("--origin-rate", weights_rate,
                   "The origin's aggregate cap (400Mbit, 1Gbit, 50MB/s)")
      ->capture_default_str();
  weights_cmd->add_option("--chunk-size", weights_chunk,
                          "The daemons' --weight-chunk-size (default: theirs)");
  weights_cmd->add_option("--tls", weights.tls,
                          "UCX_TLS for the daemons (default: $UCX_TLS, else tcp)");
  weights_cmd->add_option("--dir", weights.dir, "Directory for the copies (default: /tmp)");
  weights_cmd->add_option("--rounds", weights.rounds, "Rounds of naive and ours, interleaved")
      ->capture_default_str();
  weights_cmd->add_option("--timeout", weights.timeout_s, "Seconds allowed per phase")
      ->capture_default_str();
  weights_cmd->add_flag("--baseline-only", weights.baseline_only,
                        "Only the naive curl readers (checks the origin's cap; no RESULT line)");

  CLI11_PARSE(app, argc, argv);
  if (weights_cmd->parsed()) {
    auto rate = kvtier::bench::ParseBitRate(weights_rate, "--origin-rate");
    if (!rate.ok()) {
      std::fprintf(stderr, "kvtier-bench: %s\n", std::string(rate.status().message()).c_str());
      return 2;
    }
    weights.origin_rate_bits = *rate;
    if (!ParseSizeFlag(weights_size, "--size", &weights.size) ||
        (!weights_chunk.empty() &&
         !ParseSizeFlag(weights_chunk, "--chunk-size", &weights.chunk_size))) {
      return 2;
    }
    return Report(kvtier::bench::RunWeightsBench(weights), json,
                  kvtier::bench::FormatWeightsResult);
  }
  if (transport_cmd->parsed()) {
    if (!ParseSizeFlag(transport_block, "--block-size", &transport.block_bytes) ||
        !ParseSizeFlag(transport_arena, "--arena", &transport.arena_bytes)) {
      return 2;
    }
    return Report(kvtier::bench::RunTransportBench(transport), json);
  }
  if (remote_cmd->parsed()) {
    if (!ParseSizeFlag(remote_block, "--block-size", &remote.block_bytes)) return 2;
    return Report(kvtier::bench::RunRemoteBench(remote), json);
  }
  if (gpu_cmd->parsed()) {
    if (!kvtier::bench::GpuBenchHasDevice()) {
      std::printf("SKIP gpu: no device\n");
      return 0;
    }
    return Report(kvtier::bench::RunGpuBench(gpu), json);
  }
  if (dram_cmd->parsed()) {
    if (!ParseSizeFlag(dram_block, "--block-size", &dram.block_bytes)) return 2;
    return Report(kvtier::bench::RunDramBench(dram), json);
  }
  if (trace_cmd->parsed()) {
    if (!ParseSizeFlag(trace_block, "--block-bytes", &trace.block_bytes) ||
        !ParseSizeFlag(trace_dram, "--dram", &trace.dram_bytes) ||
        (!trace_nvme.empty() && !ParseSizeFlag(trace_nvme, "--nvme", &trace.nvme_bytes))) {
      return 2;
    }
    return Report(kvtier::bench::RunTraceBench(trace), json, kvtier::bench::FormatTraceResult);
  }
  if (nvme_cmd->parsed()) {
    if (!ParseSizeFlag(nvme_block, "--block-size", &nvme.block_bytes)) return 2;
    return Report(kvtier::bench::RunNvmeBench(nvme), json);
  }
  if (ring_cmd->parsed()) {
    return Report(kvtier::bench::RunRingBench(ring), json, kvtier::bench::FormatRingResult);
  }
  if (ucx_cmd->parsed()) {
    if (!ParseSizeFlag(ucx_block, "--block-size", &ucx.bytes)) return 2;
    ucx.tests.clear();
    for (const auto& t : absl::StrSplit(ucx_tests, ',', absl::SkipEmpty())) {
      ucx.tests.emplace_back(t);
    }
    return ReportUcxBaseline(ucx, kvtier::bench::RunUcxPerftest(ucx), json);
  }
  return 2;
}
