// Static membership: the roster written on the command line (--peers id@host:port,...), for small
// setups and tests. A member's slot is its position in the list, so every daemon must be given
// the same list; the roster version is a hash of it, and a daemon given a different list is
// noticed at its first peer call (its version differs).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "server/cluster/roster.h"

namespace kvtier {

// Parses "id@host:port,id@host:port,...". Errors name the flag `--peers` and the bad entry.
absl::StatusOr<Roster> ParseStaticPeers(const std::string& text);

}  // namespace kvtier
