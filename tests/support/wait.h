// Waiting on a condition with a deadline (tests never sleep a fixed time and hope).
#pragma once

#include <functional>

#include "absl/time/time.h"

namespace kvtier::testing {

// Polls `condition` every `poll` until it holds (true) or `timeout` passes (false).
bool WaitUntil(const std::function<bool()>& condition, absl::Duration timeout,
               absl::Duration poll = absl::Milliseconds(10));

}  // namespace kvtier::testing
