// The CLI's commands: each asks the daemon through a kvtier::Client and prints a table or JSON.
// Arguments are parsed (and rejected) before any connection, so a typo never waits on a daemon.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "kvtier/client.h"

namespace kvtier::cli {

struct BlocksArgs {
  uint64_t namespace_id = 0;  // 0 = every namespace
  uint32_t limit = 0;         // 0 = the daemon's default
  Tier tier = Tier::kNone;    // kNone = every tier
};

struct DropArgs {
  uint64_t namespace_id = 0;
  bool all = false;
  std::vector<BlockKey> keys;
};

// `ns_hex` empty = every namespace.
// `tier` is "" (every tier), "hbm", "dram" or "nvme".
Status ParseBlocksArgs(const std::string& ns_hex, uint32_t limit, BlocksArgs* out,
                       const std::string& tier = "");
// Exactly one of `all` and a non-empty `key_hex`.
Status ParseDropArgs(const std::string& ns_hex, bool all, const std::vector<std::string>& key_hex,
                     DropArgs* out);

Status RunStatus(Client& client, bool json, std::ostream& out);
Status RunTiers(Client& client, bool json, std::ostream& out);
Status RunNamespaces(Client& client, bool json, std::ostream& out);
Status RunBlocks(Client& client, const BlocksArgs& args, bool json, std::ostream& out);
Status RunDrop(Client& client, const DropArgs& args, bool json, std::ostream& out);
Status RunCluster(Client& client, bool json, std::ostream& out);

}  // namespace kvtier::cli
