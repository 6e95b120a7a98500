// kvtier-bench ring: the cluster placement (server/cluster/placement.h) over N nodes, on one core
// and without a daemon. Measures the Owner() lookup rate, the memory of the view, balance (max /
// mean keys per node) against `hash mod N` on the same keys, and how many keys move when one node
// leaves or joins (ideal: one node's share), plus the one event that moves more: the slot
// capacity doubling.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "bench/bench_util.h"

namespace kvtier::bench {

struct RingBenchOptions {
  uint32_t nodes = 100000;  // members, at slots 0..nodes-1
  size_t keys = 0;          // random Key128s; 0: 200 per node
  uint64_t seed = 1;        // for the keys and the node that leaves
};

// Prints details to stdout and returns ring_lookup, ring_memory, ring_balance, ring_movement
// (last). Only ring_balance has a baseline ("uniform": hash mod N).
absl::StatusOr<std::vector<Result>> RunRingBench(const RingBenchOptions& options);

// "RESULT <name> <params> ours=<v>", plus " baseline_<what>=<v> ratio=<r>" when there is one.
std::string FormatRingResult(const Result& r);

}  // namespace kvtier::bench
