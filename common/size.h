// Byte sizes as people write them: "512MiB", "4GiB", "1.5G", "4096".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kvtier {

// Accepts an integer or decimal number with an optional unit: B, KiB/MiB/GiB/TiB (and K/M/G/T,
// also binary), KB/MB/GB/TB (decimal). Case-insensitive. `what` names the flag in errors.
absl::StatusOr<uint64_t> ParseSize(std::string_view text, std::string_view what);

// "1.50 GiB", "512.00 MiB", "4.00 KiB", "17 B".
std::string FormatBytes(uint64_t bytes);

}  // namespace kvtier
