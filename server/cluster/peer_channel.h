// PeerChannel: the calls one daemon makes on another (the Peer service), as the cluster layer
// sees them: decoded types, asynchronous, each bounded by a deadline. The gRPC implementation
// lives in server/service/ (nothing under cluster/ knows gRPC).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/block_key.h"
#include "server/cluster/roster.h"

namespace kvtier {

struct KeyBatch {
  uint64_t ns = 0;
  std::vector<Key128> keys;
};

struct PeerHello {
  std::string node_id;
  uint64_t roster_version = 0;
  std::string transport_info;
  uint64_t incarnation = 0;  // new at every start of the daemon
};

struct PinResult {
  uint64_t lease_id = 0;  // 0: nothing pinned
  std::vector<uint64_t> offsets;
  std::vector<uint64_t> checksums;
  uint64_t block_bytes = 0;
};

class PeerChannel {
 public:
  template <typename T>
  using Done = std::function<void(absl::StatusOr<T>)>;
  virtual ~PeerChannel() = default;

  // Every call carries the caller's roster version; `done` runs exactly once, on another thread.
  // `incarnation`: the caller's (see HelloRequest).
  virtual void Hello(uint64_t roster_version, uint64_t incarnation, Done<PeerHello> done) = 0;
  virtual void UpdateDirectory(uint64_t roster_version, std::vector<KeyBatch> gained,
                               std::vector<KeyBatch> lost, Done<uint32_t> done) = 0;
  // One holder list per key.
  virtual void LookupDirectory(uint64_t roster_version, uint64_t ns, std::vector<Key128> keys,
                               Done<std::vector<std::vector<std::string>>> done) = 0;
  virtual void Pin(uint64_t roster_version, uint64_t ns, std::vector<Key128> keys,
                   uint32_t lease_ms, Done<PinResult> done) = 0;
  virtual void Unpin(uint64_t roster_version, std::vector<uint64_t> lease_ids,
                     Done<uint32_t> done) = 0;
};

// Opens a channel to a member (lazily connecting; never blocks).
using PeerConnector = std::function<std::unique_ptr<PeerChannel>(const Member&)>;

}  // namespace kvtier
