// kvtier-bench dram: save and load N blocks through the client against a real daemon, check every
// loaded byte, and compare with a single-thread memcpy of the same bytes in the same run.
#pragma once

#include <string>
#include <vector>

#include "bench/bench_util.h"

namespace kvtier::bench {

struct DramBenchOptions {
  uint64_t block_bytes = 1 << 20;
  uint64_t blocks = 512;
  uint32_t batch = 32;
  int rounds = 5;
  int lookups = 300;
  std::string socket;  // empty: start a daemon
};

// Prints details to stdout and returns the RESULT figures (the dram_save_load one last).
absl::StatusOr<std::vector<Result>> RunDramBench(const DramBenchOptions& options);

}  // namespace kvtier::bench
