// kvtier-bench weights: the model-weight fan-out (issue 6). A real nginx origin in a network
// namespace whose sending side a tbf qdisc caps at --origin-rate in aggregate (as a blob store
// caps a blob; tests/support/nginx_origin.h) serves a random file of --size. For each node count
// N: the naive baseline (N curl processes each read the whole file from the origin, all at
// once) against ours (N kvtierd with static peers on loopback, each running
// `kvtier weights pull URI --to DIR --json` at the same moment). Times until every node holds
// the whole file, the origin's bytes (from nginx's access log) and every copy's sha256 against
// the origin's; --rounds interleaves the two and reports medians (and the most the origin sent):
//   RESULT weights_fanout nodes=4 ours=<s> baseline_naive=<s> ratio=<baseline/ours>
//          origin_bytes=<x file size>
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "bench/bench_util.h"

namespace kvtier::bench {

struct WeightsBenchOptions {
  std::vector<int> nodes = {4};
  uint64_t size = 256ULL << 20;
  uint64_t origin_rate_bits = 400'000'000;  // the origin's aggregate cap, bits per second
  uint64_t chunk_size = 0;                  // --weight-chunk-size of the daemons (0: theirs)
  std::string tls;                          // UCX_TLS of the daemons ("" = $UCX_TLS, else tcp)
  std::string dir;                          // where the copies go ("" = /tmp)
  int rounds = 3;                           // naive and ours interleaved, medians reported
  int timeout_s = 600;                      // per phase
  bool baseline_only = false;               // only the curl readers (no daemons, no RESULT)
};

// "400Mbit", "1gbit", "2500kbit", "800000000bit" or "800000000" (bits per second), or a byte
// rate such as "50MB/s" or "64MiB/s"; `what` names the flag in errors.
absl::StatusOr<uint64_t> ParseBitRate(const std::string& text, const std::string& what);

absl::StatusOr<std::vector<Result>> RunWeightsBench(const WeightsBenchOptions& options);
// The RESULT line: params first, then ours, baseline_naive, ratio, and origin_bytes last.
std::string FormatWeightsResult(const Result& r);

}  // namespace kvtier::bench
