// Ends expired leases in the background, so a killed client's pins and reserved slots are freed
// within about `period_ms` of their deadline.
#pragma once

#include <thread>

#include "absl/synchronization/mutex.h"
#include "server/store/block_store.h"

namespace kvtier {

class LeaseReaper {
 public:
  LeaseReaper(BlockStore* store, int period_ms);
  ~LeaseReaper();  // stops and joins

 private:
  void Run();

  BlockStore* store_;
  int period_ms_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace kvtier
