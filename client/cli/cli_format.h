// Text forms the CLI prints and accepts: namespace ids, keys, durations, percentages.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kvtier/client.h"

namespace kvtier::cli {

// 16 lowercase hex digits.
std::string NamespaceIdToHex(uint64_t id);
// 1 to 16 hex digits, optionally after "0x". INVALID_ARGUMENT naming `what` otherwise.
Status ParseNamespaceId(std::string_view text, std::string_view what, uint64_t* out);

// 32 lowercase hex digits, high half first (common/block_key.h's form).
std::string KeyToHex(const BlockKey& key);
Status ParseKey(std::string_view text, BlockKey* out);

// "850ms" "12.3s" "4m 05s" "3h 12m" "2d 04h".
std::string FormatDuration(uint64_t ms);
// "12.5%", or "-" when `whole` is 0.
std::string FormatPercent(uint64_t part, uint64_t whole);
// Human byte size ("1.50 GiB"), common/size.h's form.
std::string FormatSize(uint64_t bytes);

}  // namespace kvtier::cli
