#include "server/store/tier_mover.h"

namespace kvtier {

TierMover::TierMover(BlockStore* store, size_t batch, int idle_ms)
    : store_(store), batch_(batch), idle_ms_(idle_ms), thread_([this] { Run(); }) {}

TierMover::~TierMover() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void TierMover::Run() {
  for (;;) {
    // Started writes are bounded by the NVMe engine's queue depth: DemoteSome waits there.
    const size_t started = store_->DemoteSome(batch_);
    absl::MutexLock lock(&mu_);
    if (stop_) return;
    if (started == 0) {
      mu_.AwaitWithTimeout(absl::Condition(&stop_), absl::Milliseconds(idle_ms_));
      if (stop_) return;
    }
  }
}

}  // namespace kvtier
