#include "common/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <string>

namespace kvtier {

absl::Status SetLogLevel(std::string_view level) {
  auto parsed = spdlog::level::from_str(std::string(level));
  if (parsed == spdlog::level::off && level != "off") {
    return absl::InvalidArgumentError("--log-level: '" + std::string(level) +
                                      "' is not trace, debug, info, warn, error or off");
  }
  spdlog::set_level(parsed);
  return absl::OkStatus();
}

void InitLogging(std::string_view name) {
  auto logger = spdlog::stderr_color_mt(std::string(name));
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("[%Y-%m-%d %H:%M:%S.%e] [%n] [%l] %v");
}

}  // namespace kvtier
