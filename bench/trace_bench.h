// kvtier-bench trace: replays a Mooncake-format request trace against a real kvtierd (Lookup the
// request's key chain, Load the hit prefix and check its bytes, Save the missing blocks) and
// compares its leading-prefix block hit ratio with an infinite cache (the best case) and a plain
// LRU of the same DRAM capacity, both simulated on the same trace in the same run.
#pragma once

#include <string>
#include <vector>

#include "bench/bench_util.h"

namespace kvtier::bench {

struct TraceBenchOptions {
  // Relative paths are tried from the working directory, else from the repository root
  // (<SelfDir>/../..).
  std::string trace = "../shared/traces/mooncake_conversation_trace.jsonl";
  uint64_t block_bytes = 16 << 10;  // bytes per trace block (one hash id, 512 tokens)
  uint64_t dram_bytes = 0;          // --dram-capacity of the daemon
  uint64_t nvme_bytes = 0;          // 0: DRAM only; else --nvme-capacity (file in a temp dir)
  size_t limit = 0;                 // replay the first N requests; 0: all
};

// Prints details to stdout and returns the RESULT figures: trace_hit_lru, then trace_hit (last).
// Each has baseline_name "best" (the infinite cache).
absl::StatusOr<std::vector<Result>> RunTraceBench(const TraceBenchOptions& options);

// "RESULT <name> ours=<hit ratio> best=<infinite-cache hit ratio> ratio=<ours/best>".
std::string FormatTraceResult(const Result& r);

}  // namespace kvtier::bench
