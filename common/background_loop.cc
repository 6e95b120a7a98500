#include "common/background_loop.h"

namespace kvtier {

BackgroundLoop::BackgroundLoop(absl::Duration idle, std::function<bool()> step)
    : idle_(idle), step_(std::move(step)), thread_([this] { Run(); }) {}

BackgroundLoop::~BackgroundLoop() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void BackgroundLoop::Run() {
  for (;;) {
    const bool busy = step_();
    absl::MutexLock lock(&mu_);
    if (!busy) mu_.AwaitWithTimeout(absl::Condition(&stop_), idle_);
    if (stop_) return;
  }
}

}  // namespace kvtier
