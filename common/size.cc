#include "common/size.h"

#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"

namespace kvtier {

absl::StatusOr<uint64_t> ParseSize(std::string_view text, std::string_view what) {
  auto bad = [&](std::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: '%s' %s (examples: 512MiB, 4GiB, 1073741824)", std::string(what),
                        std::string(text), std::string(why)));
  };
  // Debian's abseil has its own string_view type: convert at the boundary.
  const absl::string_view s =
      absl::StripAsciiWhitespace(absl::string_view(text.data(), text.size()));
  size_t i = 0;
  while (i < s.size() && (absl::ascii_isdigit(s[i]) || s[i] == '.')) ++i;
  if (i == 0) return bad("is not a size");
  double number;
  if (!absl::SimpleAtod(s.substr(0, i), &number)) return bad("is not a number");
  std::string unit = absl::AsciiStrToLower(absl::StripAsciiWhitespace(s.substr(i)));
  double scale;
  if (unit.empty() || unit == "b") {
    scale = 1;
  } else if (unit == "k" || unit == "kib") {
    scale = 1ULL << 10;
  } else if (unit == "m" || unit == "mib") {
    scale = 1ULL << 20;
  } else if (unit == "g" || unit == "gib") {
    scale = 1ULL << 30;
  } else if (unit == "t" || unit == "tib") {
    scale = 1ULL << 40;
  } else if (unit == "kb") {
    scale = 1e3;
  } else if (unit == "mb") {
    scale = 1e6;
  } else if (unit == "gb") {
    scale = 1e9;
  } else if (unit == "tb") {
    scale = 1e12;
  } else {
    return bad("has an unknown unit");
  }
  double bytes = std::round(number * scale);
  if (!(bytes < 18e18)) return bad("is too large");
  return static_cast<uint64_t>(bytes);
}

std::string FormatBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return absl::StrFormat("%d B", bytes);
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  return absl::StrFormat("%.2f %s", v, kUnits[u]);
}

}  // namespace kvtier
