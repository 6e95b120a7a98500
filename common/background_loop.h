// BackgroundLoop: a thread that calls `step` over and over until the loop is destroyed. After a
// step that did nothing (returned false) it waits `idle` before the next; a stop wakes it at once.
#pragma once

#include <functional>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace kvtier {

class BackgroundLoop {
 public:
  // `step` returns true when it did work and should run again at once.
  BackgroundLoop(absl::Duration idle, std::function<bool()> step);
  ~BackgroundLoop();  // stops after the current step and joins
  BackgroundLoop(const BackgroundLoop&) = delete;
  BackgroundLoop& operator=(const BackgroundLoop&) = delete;

 private:
  void Run();

  absl::Duration idle_;
  std::function<bool()> step_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace kvtier
