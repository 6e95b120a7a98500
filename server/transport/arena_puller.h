// ArenaPuller: moves block bytes from a peer daemon's DRAM arena into ours. The cluster layer
// decides what to pull (over the Peer gRPC service, which pins the blocks on the holder); a
// puller only moves bytes. UcxTransport implements it; tests may use an in-process one.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace kvtier {

struct PullOp {
  uint64_t remote_offset = 0;  // in the peer's arena
  uint64_t local_offset = 0;   // in ours
  uint64_t bytes = 0;
};

class ArenaPuller {
 public:
  virtual ~ArenaPuller() = default;
  // What a peer needs to reach this node (opaque; handed out by the Peer service's Hello).
  virtual const std::string& LocalInfo() const = 0;
  // How bytes move (transport and protocol), for logs and `kvtier cluster`.
  virtual std::string Mode() const = 0;
  // Copies every op from the peer described by `peer_info` into our arena, then calls `done`
  // once (on some other thread, or inline on an early error) with OK or why not. Never waits
  // longer than `deadline_ms`.
  virtual void Pull(const std::string& peer_info, std::vector<PullOp> ops, int deadline_ms,
                    std::function<void(absl::Status)> done) = 0;
};

}  // namespace kvtier
