// Hands the HBM tier's segments to local engines: a unix stream socket (`<socket>.hbm`) beside
// the gRPC socket, same permissions. Each connection sends one uint32 segment index and gets one
// HbmSegmentReply (common/hbm_wire.h): the cudaIpcMemHandle_t of that segment (cuda backend), or
// the segment's memfd over SCM_RIGHTS (cpu backend). A client opens each segment once and keeps
// it open (the handles are cached per segment on the client).
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "server/hbm/device_pool.h"

namespace kvtier {

class HbmHandleServer {
 public:
  // `pool` must outlive the server. `generation`: the DRAM arena's, sent with every reply.
  static absl::StatusOr<std::unique_ptr<HbmHandleServer>> Start(const std::string& path,
                                                                DevicePool* pool,
                                                                uint64_t generation);
  ~HbmHandleServer();  // stops the thread, removes the socket file

  const std::string& path() const { return path_; }

 private:
  HbmHandleServer(std::string path, int listen_fd, DevicePool* pool, uint64_t generation);
  void Serve();
  void Answer(int conn);

  std::string path_;
  int listen_fd_;
  DevicePool* pool_;
  uint64_t generation_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace kvtier
