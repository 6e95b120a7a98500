// The HBM tier's segment hand-out: how a client on the node learns how to open one segment of the
// daemon's device pool. One request and one reply on the side unix socket `<socket>.hbm`:
//   client -> daemon: uint32 segment index (little-endian)
//   daemon -> client: one HbmSegmentReply; with the cpu backend, the segment's memfd rides with
//                     it (SCM_RIGHTS); with cuda, `handle` holds the cudaIpcMemHandle_t.
// Then the daemon closes the connection. Plain C++, shared by kvtierd and the client library.
#pragma once

#include <cstdint>

namespace kvtier {

inline constexpr uint32_t kHbmWireMagic = 0x4b56484d;  // "KVHM"
inline constexpr uint32_t kHbmHandleBytes = 64;        // sizeof(cudaIpcMemHandle_t)

enum class HbmWireStatus : uint32_t {
  kOk = 0,
  kNoSuchSegment = 1,  // index >= number of segments
  kExportFailed = 2,   // the pool could not export the segment (see the daemon's log)
};

enum class HbmWireBackend : uint32_t { kCpu = 1, kCuda = 2 };

struct HbmSegmentReply {
  uint32_t magic = kHbmWireMagic;
  uint32_t status = 0;      // HbmWireStatus
  uint32_t backend = 0;     // HbmWireBackend
  int32_t device = -1;      // CUDA device of the pool (-1: cpu)
  uint64_t generation = 0;  // the DRAM arena's generation: a restarted daemon has new segments
  uint64_t segment_bytes = 0;
  uint32_t segment = 0;
  uint32_t handle_bytes = 0;  // bytes of `handle` used (0 for cpu: the memfd is the handle)
  unsigned char handle[kHbmHandleBytes] = {};
};
static_assert(sizeof(HbmSegmentReply) == 104);

}  // namespace kvtier
