// Read and write rates per tier over the last interval: a thread samples the store's byte
// counters every `period_ms` and keeps the rate between the last two samples.
#pragma once

#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "server/store/block_store.h"

namespace kvtier {

struct TierRates {
  double read_bytes_per_s = 0;   // bytes leaving the tier (served, or moved up)
  double write_bytes_per_s = 0;  // bytes entering it
};

class RateSampler {
 public:
  RateSampler(BlockStore* store, int period_ms);
  ~RateSampler();  // stops and joins

  // The rates of tier `name` over the last full interval (zeros before the first one).
  TierRates Rates(const std::string& name);

 private:
  void Run();
  void Sample();

  BlockStore* store_;
  int period_ms_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  struct Last {
    int64_t at_ms = -1;
    uint64_t bytes_in = 0, bytes_out = 0;
    TierRates rates;
  };
  absl::flat_hash_map<std::string, Last> tiers_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace kvtier
