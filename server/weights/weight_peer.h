// WeightPeerChannel: what one daemon asks another about weight chunks (the WeightPeer gRPC
// service; the implementation lives in server/service/). Blocking: the weight cache calls it from
// its own worker threads.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/cluster/roster.h"
#include "server/weights/file_identity.h"

namespace kvtier {

class WeightPeerChannel {
 public:
  virtual ~WeightPeerChannel() = default;
  // Asks the member to hold chunk `index` of `file` (from its cache, a holder, or the origin);
  // answers where it got it ("origin", "peer", "local"). Bounded by `timeout_ms`.
  virtual absl::StatusOr<std::string> FetchChunk(const FileIdentity& file, uint64_t index,
                                                 int timeout_ms) = 0;
};

using WeightPeerConnector = std::function<std::unique_ptr<WeightPeerChannel>(const Member&)>;

}  // namespace kvtier
