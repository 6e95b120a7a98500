// kvtier-bench nvme: demote (write) and promote (read) throughput of the daemon's NVMe tier,
// against fio on the same file system with the same block size and queue depth, interleaved.
// It always starts its own daemons (two per round: the write one, then a warm restart on the
// same device file for the reads).
#pragma once

#include <string>
#include <vector>

#include "bench/bench_util.h"

namespace kvtier::bench {

struct NvmeBenchOptions {
  uint64_t block_bytes = 1 << 20;
  uint64_t blocks = 0;  // 0: about 1 GiB worth
  unsigned qd = 32;     // --nvme-queue-depth of the daemon, fio --iodepth
  int rounds = 3;
  uint32_t batch = 32;   // keys per Save / Load call
  unsigned streams = 2;  // Load calls in flight at once during the read phase
  std::string dir;       // where the device files go (empty: the current directory)
};

// Prints details to stdout and returns the RESULT figures: nvme_write, then nvme_read.
absl::StatusOr<std::vector<Result>> RunNvmeBench(const NvmeBenchOptions& options);

}  // namespace kvtier::bench
