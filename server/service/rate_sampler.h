// Read and write rates per tier over the last interval: every `period_ms` the store's byte
// counters are sampled, and the rate between the last two samples is kept.
#pragma once

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "common/background_loop.h"
#include "server/store/block_store.h"

namespace kvtier {

struct TierRates {
  double read_bytes_per_s = 0;   // bytes leaving the tier (served, or moved up)
  double write_bytes_per_s = 0;  // bytes entering it
};

class RateSampler {
 public:
  RateSampler(BlockStore* store, int period_ms);

  // The rates of tier `name` over the last full interval (zeros before the first one).
  TierRates Rates(const std::string& name);

 private:
  void Sample();

  BlockStore* store_;
  absl::Mutex mu_;
  struct Last {
    int64_t at_ms = -1;
    uint64_t bytes_in = 0, bytes_out = 0;
    TierRates rates;
  };
  absl::flat_hash_map<std::string, Last> tiers_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<BackgroundLoop> loop_;  // last: it stops before the rest goes
};

}  // namespace kvtier
