// JSON forms of the client's result types, for `--json` output. Namespace ids and keys are hex
// strings (as the tables print them), so no consumer loses bits to 53-bit JSON numbers.
#pragma once

#include <string>

#include "kvtier/client.h"
#include "nlohmann/json.hpp"

namespace kvtier::cli {

nlohmann::json TierToJson(const TierStats& tier);
nlohmann::json StatsToJson(const DaemonStats& stats, const std::string& socket_path);
nlohmann::json NamespaceToJson(const NamespaceEntry& entry);
nlohmann::json BlockToJson(const BlockEntry& block);
nlohmann::json DropToJson(uint64_t namespace_id, const DropResult& result);
nlohmann::json ClusterToJson(const ClusterInfo& info);

}  // namespace kvtier::cli
