#include "server/cluster/static_peers.h"

#include <xxhash.h>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace kvtier {

absl::StatusOr<Roster> ParseStaticPeers(const std::string& text) {
  Roster roster;
  absl::flat_hash_set<std::string> ids, addresses;
  std::string canonical;
  uint32_t slot = 0;
  for (absl::string_view entry : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    const size_t at = entry.find('@');
    const size_t colon = entry.rfind(':');
    int port = 0;
    if (at == absl::string_view::npos || at == 0 || colon == absl::string_view::npos ||
        colon < at + 2 || !absl::SimpleAtoi(entry.substr(colon + 1), &port) || port <= 0 ||
        port > 65535) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "--peers: '%s' is not id@host:port (e.g. a@127.0.0.1:7410)", std::string(entry)));
    }
    Member m;
    m.id = std::string(entry.substr(0, at));
    m.address = std::string(entry.substr(at + 1));
    m.slot = slot++;
    if (!ids.insert(m.id).second) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--peers: node id '%s' appears twice", m.id));
    }
    if (!addresses.insert(m.address).second) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--peers: address '%s' appears twice", m.address));
    }
    absl::StrAppend(&canonical, m.id, "@", m.address, ",");
    roster.members.push_back(std::move(m));
  }
  if (roster.members.empty()) {
    return absl::InvalidArgumentError("--peers: empty (give id@host:port,...)");
  }
  roster.version = XXH3_64bits(canonical.data(), canonical.size()) | 1;  // never 0
  return roster;
}

}  // namespace kvtier
