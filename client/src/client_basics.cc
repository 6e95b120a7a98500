// The small value helpers of the public API: status text, tier names, socket resolution.
#include <cstdlib>
#include <string>

#include "kvtier/client.h"

namespace kvtier {
namespace {

// gRPC's canonical code names, indexed by code number.
constexpr const char* kCodeNames[] = {
    "OK",        "CANCELLED",      "UNKNOWN",           "INVALID_ARGUMENT",   "DEADLINE_EXCEEDED",
    "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED",   "OUT_OF_RANGE",   "UNIMPLEMENTED",     "INTERNAL",           "UNAVAILABLE",
    "DATA_LOSS",
};

constexpr const char* kDefaultSocket = "./var/kvtier.sock";

}  // namespace

std::string Status::ToString() const {
  if (ok()) return "OK";
  const int code = static_cast<int>(code_);
  std::string text = code >= 0 && code < static_cast<int>(std::size(kCodeNames))
                         ? kCodeNames[code]
                         : "CODE_" + std::to_string(code);
  if (!message_.empty()) {
    text += ": ";
    text += message_;
  }
  return text;
}

const char* TierName(Tier tier) {
  switch (tier) {
    case Tier::kNone:
      return "none";
    case Tier::kHbm:
      return "hbm";
    case Tier::kDram:
      return "dram";
    case Tier::kNvme:
      return "nvme";
    case Tier::kRemote:
      return "remote";
  }
  return "unknown";
}

std::string ResolveSocketPath(const std::string& explicit_path) {
  if (!explicit_path.empty()) return explicit_path;
  const char* env = std::getenv("KVTIER_SOCKET");
  if (env != nullptr && env[0] != '\0') return env;
  return kDefaultSocket;
}

}  // namespace kvtier
