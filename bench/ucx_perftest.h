// The UCX baseline for peer-to-peer transfers: runs `ucx_perftest` (server and client, two
// processes on 127.0.0.1) for a few UCP tests at one message size and reports their bandwidth.
// Everything has a deadline; children are killed when it passes.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kvtier::bench {

struct UcxPerftestOptions {
  std::string tls;           // UCX_TLS for both processes; ",self" is added when missing
  uint64_t bytes = 1 << 20;  // message size (-s)
  std::vector<std::string> tests = {"tag_bw", "ucp_get", "ucp_put_bw", "ucp_am_bw"};
  uint64_t iterations = 0;  // -n; 0: about 1 GiB per test (at least 200 messages)
  int timeout_s = 30;       // per test, server and client together
};

struct UcxPerftestFigure {
  std::string test;
  double gbps = 0;      // 1e9 bytes per second; 0 when the test failed
  std::string error;    // why it failed; empty on success
  std::string command;  // the client's command line, with its environment
};

struct UcxPerftestResult {
  std::vector<UcxPerftestFigure> figures;  // one per test, in the order asked
  // The fastest test. Note: one-sided tests (ucp_get, ucp_put_bw) reuse one buffer, so on shared
  // memory they measure cache, not RAM (tens of GB/s); best_two_sided is the RAM-bound figure.
  std::string best_test;
  double best_gbps = 0;
  std::string best_two_sided_test;  // the faster of tag_bw and ucp_am_bw, when run
  double best_two_sided_gbps = 0;
};

// Full path of ucx_perftest on $PATH, or NOT_FOUND saying how to get it.
absl::StatusOr<std::string> FindUcxPerftest();

// Runs every test in `options.tests`. A test that fails is reported in its figure; the call fails
// only when none succeeds (or ucx_perftest is missing).
absl::StatusOr<UcxPerftestResult> RunUcxPerftest(const UcxPerftestOptions& options);

// RunUcxPerftest with the default tests: the baseline `kvtier-bench remote` compares against.
absl::StatusOr<UcxPerftestResult> MeasureUcxPerftestBest(const std::string& tls, uint64_t bytes);

// Bandwidth in GB/s (1e9 B/s) from ucx_perftest's output: the overall bandwidth of its "Final:"
// line, which it prints in MB/s of 2^20 bytes.
absl::StatusOr<double> ParseUcxPerftestGbps(const std::string& output);

}  // namespace kvtier::bench
