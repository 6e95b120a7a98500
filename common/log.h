// Logging setup: spdlog to stderr, as text ("[time] [name] [level] message") or as one JSON object
// per line (--log-format json).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "spdlog/common.h"

namespace kvtier {

// Sets the default logger's level from "trace" "debug" "info" "warn" "error" "off".
absl::Status SetLogLevel(std::string_view level);

// Default logger on stderr, named `name`, pattern "[time] [name] [level] message".
void InitLogging(std::string_view name);

// "text" (the default) or "json": one object per line with "ts" (UTC, RFC 3339 with
// milliseconds), "level", "logger", "msg" and the fields of LogEvent. Call after InitLogging.
absl::Status SetLogFormat(std::string_view format);

// A named value that goes with a log line: a JSON member in the json format, " key=value" after
// the message in text.
struct LogField {
  std::string key;
  std::string value;
  bool number = false;  // `value` is a decimal number: written as a JSON number, not a string
};
using LogFields = std::vector<LogField>;

// Logs `msg` at `level` on the default logger with `fields`.
void LogEvent(spdlog::level::level_enum level, std::string_view msg, const LogFields& fields);

// `text` as a JSON string literal (quotes included; control characters and bytes that are not
// valid UTF-8 escaped), for hand-built JSON.
std::string JsonQuote(std::string_view text);

}  // namespace kvtier
