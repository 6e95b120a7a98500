#include "cli_format.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_format.h"
#include "common/block_key.h"
#include "common/size.h"

namespace kvtier::cli {

std::string NamespaceIdToHex(uint64_t id) { return absl::StrFormat("%016x", id); }

Status ParseNamespaceId(std::string_view text, std::string_view what, uint64_t* out) {
  std::string_view digits = text;
  if (digits.size() >= 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
    digits.remove_prefix(2);
  }
  auto bad = [&](std::string_view why) {
    return Status(Status::Code::kInvalidArgument,
                  absl::StrFormat("%s: '%s' %s (a namespace id is 16 hex digits, as `kvtier "
                                  "namespaces` prints it)",
                                  what, text, why));
  };
  if (digits.empty()) return bad("is empty");
  if (digits.size() > 16) return bad("has more than 16 hex digits");
  uint64_t value = 0;
  for (char c : digits) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return bad("is not hexadecimal");
    const int v = absl::ascii_isdigit(static_cast<unsigned char>(c))
                      ? c - '0'
                      : absl::ascii_tolower(static_cast<unsigned char>(c)) - 'a' + 10;
    value = (value << 4) | static_cast<uint64_t>(v);
  }
  *out = value;
  return Status();
}

std::string KeyToHex(const BlockKey& key) { return kvtier::KeyToHex(Key128{key.lo, key.hi}); }

Status ParseKey(std::string_view text, BlockKey* out) {
  absl::StatusOr<Key128> key = KeyFromHex(text);
  if (!key.ok()) {
    return Status(static_cast<Status::Code>(key.status().code()),
                  std::string(key.status().message()));
  }
  *out = BlockKey{key->lo, key->hi};
  return Status();
}

std::string FormatDuration(uint64_t ms) {
  constexpr uint64_t kSecond = 1000, kMinute = 60 * kSecond, kHour = 60 * kMinute,
                     kDay = 24 * kHour;
  if (ms < kSecond) return absl::StrFormat("%dms", ms);
  if (ms < kMinute) return absl::StrFormat("%.1fs", static_cast<double>(ms) / kSecond);
  if (ms < kHour) return absl::StrFormat("%dm %02ds", ms / kMinute, (ms % kMinute) / kSecond);
  if (ms < kDay) return absl::StrFormat("%dh %02dm", ms / kHour, (ms % kHour) / kMinute);
  return absl::StrFormat("%dd %02dh", ms / kDay, (ms % kDay) / kHour);
}

std::string FormatPercent(uint64_t part, uint64_t whole) {
  if (whole == 0) return "-";
  return absl::StrFormat("%.1f%%", 100.0 * static_cast<double>(part) / static_cast<double>(whole));
}

std::string FormatSize(uint64_t bytes) { return FormatBytes(bytes); }

}  // namespace kvtier::cli
