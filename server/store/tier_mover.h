// TierMover: the background thread that writes cold DRAM blocks down to NVMe (BlockStore::
// DemoteSome) while DRAM is over its watermark, so evictions find clean copies to drop.
#pragma once

#include <thread>

#include "absl/synchronization/mutex.h"
#include "server/store/block_store.h"

namespace kvtier {

class TierMover {
 public:
  // Works in batches of `batch` blocks; sleeps `idle_ms` when there is nothing to move.
  TierMover(BlockStore* store, size_t batch, int idle_ms);
  ~TierMover();  // stops and joins (writes in flight finish in the NVMe engine)

 private:
  void Run();

  BlockStore* store_;
  size_t batch_;
  int idle_ms_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace kvtier
