#include "server/service/lease_reaper.h"

#include "spdlog/spdlog.h"

namespace kvtier {

LeaseReaper::LeaseReaper(BlockStore* store, int period_ms)
    : store_(store), period_ms_(period_ms), thread_([this] { Run(); }) {}

LeaseReaper::~LeaseReaper() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void LeaseReaper::Run() {
  absl::MutexLock lock(&mu_);
  while (!stop_) {
    // Wakes early only to stop.
    mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Milliseconds(period_ms_));
    if (stop_) break;
    mu_.Unlock();
    const size_t n = store_->ExpireLeases();
    if (n > 0) spdlog::debug("ended {} expired leases", n);
    mu_.Lock();
  }
}

}  // namespace kvtier
