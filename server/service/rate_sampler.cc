#include "server/service/rate_sampler.h"

namespace kvtier {

RateSampler::RateSampler(BlockStore* store, int period_ms) : store_(store) {
  loop_ = std::make_unique<BackgroundLoop>(absl::Milliseconds(period_ms), [this] {
    Sample();
    return false;
  });
}

TierRates RateSampler::Rates(const std::string& name) {
  absl::MutexLock lock(&mu_);
  auto it = tiers_.find(name);
  return it == tiers_.end() ? TierRates{} : it->second.rates;
}

void RateSampler::Sample() {
  StoreStats stats = store_->Stats();  // outside mu_: it takes the store's locks
  const int64_t now = store_->NowMs();
  absl::MutexLock lock(&mu_);
  for (const TierCounters& t : stats.tiers) {
    Last& last = tiers_[t.name];
    if (last.at_ms >= 0 && now > last.at_ms) {
      const double seconds = static_cast<double>(now - last.at_ms) / 1000.0;
      last.rates.write_bytes_per_s = static_cast<double>(t.bytes_in - last.bytes_in) / seconds;
      last.rates.read_bytes_per_s = static_cast<double>(t.bytes_out - last.bytes_out) / seconds;
    }
    last.at_ms = now;
    last.bytes_in = t.bytes_in;
    last.bytes_out = t.bytes_out;
  }
}

}  // namespace kvtier
