// kvtier-bench remote: blocks saved on one daemon and read through another of the same cluster
// (pulled over UCX into the reader's arena), against the best ucx_perftest figure (tag_bw,
// ucp_get, ucp_put_bw, ucp_am_bw) at the same size and UCX_TLS, measured in the same run. Also
// the latency of a pool-wide lookup of a 2,048-block chain across three daemons.
#pragma once

#include <string>
#include <vector>

#include "bench/bench_util.h"

namespace kvtier::bench {

struct RemoteBenchOptions {
  uint64_t block_bytes = 1 << 20;
  uint64_t blocks = 0;  // 0: about 256 MiB of blocks
  uint32_t batch = 32;  // keys per Acquire on the reader
  int streams = 2;      // Acquire calls in flight on the reader
  int rounds = 5;
  int lookups = 200;
  uint32_t chain_blocks = 2048;
  std::string tls;  // "" = $UCX_TLS, else "tcp"
};

absl::StatusOr<std::vector<Result>> RunRemoteBench(const RemoteBenchOptions& options);

}  // namespace kvtier::bench
