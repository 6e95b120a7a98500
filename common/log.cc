#include "common/log.h"

#include <spdlog/formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <string>

#include "absl/strings/str_format.h"

namespace kvtier {
namespace {

std::atomic<bool> json_format{false};

// The fields of the LogEvent being formatted on this thread (the stderr logger is synchronous:
// it formats on the calling thread, inside LogEvent).
thread_local const LogFields* current_fields = nullptr;

// One JSON object per line: {"ts":..,"level":..,"logger":..,"msg":..,<fields>}.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    const auto since_epoch = msg.time.time_since_epoch();
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    const auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - seconds).count();
    const std::time_t t = seconds.count();
    std::tm tm{};
    gmtime_r(&t, &tm);
    const std::string ts =
        absl::StrFormat("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                        tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(millis));
    const auto level = spdlog::level::to_string_view(msg.level);
    std::string line =
        absl::StrFormat(R"({"ts":"%s","level":"%s","logger":%s,"msg":%s)", ts,
                        std::string_view(level.data(), level.size()),
                        JsonQuote(std::string_view(msg.logger_name.data(), msg.logger_name.size())),
                        JsonQuote(std::string_view(msg.payload.data(), msg.payload.size())));
    if (current_fields != nullptr) {
      for (const LogField& f : *current_fields) {
        line += "," + JsonQuote(f.key) + ":" + (f.number ? f.value : JsonQuote(f.value));
      }
    }
    line += "}\n";
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<JsonFormatter>();
  }
};

// Length of the valid UTF-8 sequence at text[i], or 0.
size_t Utf8Length(std::string_view text, size_t i) {
  const auto c = static_cast<unsigned char>(text[i]);
  size_t n = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 0;
  if (c >= 0xF5 || n == 0 || i + n > text.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((static_cast<unsigned char>(text[i + k]) & 0xC0) != 0x80) return 0;
  }
  return n;
}

}  // namespace

std::string JsonQuote(std::string_view text) {
  std::string out = "\"";
  out.reserve(text.size() + 2);
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7F) {
      out += absl::StrFormat("\\u%04x", c);
    } else if (c >= 0x80) {
      const size_t n = Utf8Length(text, i);
      if (n == 0) {
        out += absl::StrFormat("\\u%04x", c);  // a stray byte, shown as its Latin-1 character
        ++i;
        continue;
      }
      out.append(text.substr(i, n));
      i += n;
      continue;
    } else {
      out += static_cast<char>(c);
    }
    ++i;
  }
  out += '"';
  return out;
}

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

absl::Status SetLogFormat(std::string_view format) {
  if (format == "text") {
    json_format = false;
    return absl::OkStatus();
  }
  if (format != "json") {
    return absl::InvalidArgumentError("--log-format: '" + std::string(format) +
                                      "' is not text or json");
  }
  json_format = true;
  spdlog::set_formatter(std::make_unique<JsonFormatter>());
  return absl::OkStatus();
}

void LogEvent(spdlog::level::level_enum level, std::string_view msg, const LogFields& fields) {
  if (!spdlog::should_log(level)) return;
  if (json_format) {
    current_fields = &fields;
    spdlog::log(level, "{}", msg);
    current_fields = nullptr;
    return;
  }
  std::string line(msg);
  for (const LogField& f : fields) {
    const bool quote = f.value.empty() || f.value.find_first_of(" \"=") != std::string::npos;
    line += " " + f.key + "=" + (quote ? JsonQuote(f.value) : f.value);
  }
  spdlog::log(level, "{}", line);
}

}  // namespace kvtier
