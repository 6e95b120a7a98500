// Roster: the members of a kvtier cluster as one daemon sees them. Membership (static --peers or
// etcd) produces it; placement and the peer client consume it. Placement is a pure function of
// the roster, so two daemons with the same roster version agree on every key's owner.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvtier {

struct Member {
  std::string id;       // node id (unique in the cluster)
  std::string address;  // host:port of its Peer gRPC service
  uint32_t slot = 0;    // stable ordinal used by placement; unique in the cluster
  friend bool operator==(const Member&, const Member&) = default;
};

struct Roster {
  // Changes whenever the member set changes (etcd: the revision of the latest change; static: a
  // hash of the list). Travels in peer requests so a stale view is noticed.
  uint64_t version = 0;
  std::vector<Member> members;  // sorted by slot
};

}  // namespace kvtier
