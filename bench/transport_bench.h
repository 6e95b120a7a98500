// kvtier-bench transport: the UCX transport alone (server/transport), without the daemons' control
// plane: two processes, each with a UcxTransport over its own arena; one pulls blocks from the
// other's arena, optionally verifying each block's XXH3 on arrival the way the daemon does. The
// baseline is the best ucx_perftest figure at the same size and UCX_TLS, in the same run. It
// splits the remote-get gap (kvtier-bench remote) into what the transport costs and what the
// control plane (lookup, pin, commit) adds.
#pragma once

#include <string>
#include <vector>

#include "bench/bench_util.h"

namespace kvtier::bench {

struct TransportBenchOptions {
  uint64_t block_bytes = 1 << 20;
  uint64_t arena_bytes = 1ULL << 30;  // each side's arena: the working set the pulls sweep
  int passes = 1;      // sweeps of the arena per round (a small arena stays in cache)
  uint32_t batch = 8;  // ops per Pull (the daemon posts 8 MiB per Pull)
  int inflight = 8;    // Pulls in flight
  int rounds = 3;
  bool verify = false;               // XXH3 of every block on arrival, on a worker thread
  std::string protocol = "auto";     // auto, am, get
  std::string tls;                   // "" = $UCX_TLS, else tcp
  std::string arena_pages = "auto";  // as kvtierd's --arena-pages
};

absl::StatusOr<std::vector<Result>> RunTransportBench(const TransportBenchOptions& options);

}  // namespace kvtier::bench
