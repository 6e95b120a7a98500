// kvtier-bench gpu: device → arena → device through kvtier/gpu.h (SaveKv, LoadKv) for a realistic
// paged cache (32 layers, 8 KV heads, head size 128, bf16, 16-token blocks, vLLM flash layout,
// shuffled block ids) against a plain cudaMemcpy of the same bytes between device memory and
// pinned host memory in the same run. Every loaded byte is checked.
#pragma once

#include <string>
#include <vector>

#include "bench/bench_util.h"

namespace kvtier::bench {

struct GpuBenchOptions {
  int blocks = 128;  // per call (2 MiB each)
  int rounds = 5;
  std::string socket;  // empty: start a daemon
};

// False when this binary has no CUDA or the machine no device (the caller prints
// "SKIP gpu: no device").
bool GpuBenchHasDevice();

// Prints details to stdout and returns RESULT gpu_save and gpu_load.
absl::StatusOr<std::vector<Result>> RunGpuBench(const GpuBenchOptions& options);

}  // namespace kvtier::bench
