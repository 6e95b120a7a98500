// Logging setup: spdlog to stderr with a "kvtierd" style pattern.
#pragma once

#include <string_view>

#include "absl/status/status.h"

namespace kvtier {

// Sets the default logger's level from "trace" "debug" "info" "warn" "error" "off".
absl::Status SetLogLevel(std::string_view level);

// Default logger on stderr, named `name`, pattern "[time] [name] [level] message".
void InitLogging(std::string_view name);

}  // namespace kvtier
