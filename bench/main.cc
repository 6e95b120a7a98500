// kvtier-bench: the benchmark driver. One subcommand per capability; each prints its details,
// then RESULT lines comparing our figure with a physical baseline measured in the same run.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "bench/dram_bench.h"
#include "bench/nvme_bench.h"
#include "bench/trace_bench.h"
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"kvtier-bench: kvtier benchmarks against physical baselines"};
  app.require_subcommand(1);
  bool json = false;
  app.add_flag("--json", json, "Print the RESULT figures as JSON");

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

  CLI11_PARSE(app, argc, argv);
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
  return 2;
}
