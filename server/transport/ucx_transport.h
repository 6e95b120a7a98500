// Moves bytes from a peer daemon's DRAM arena into ours with UCX. Which offsets to move, and the
// leases that keep them valid, are agreed elsewhere (gRPC); this only moves bytes.
//
// Every transport both pulls and serves: it registers its arena once, publishes LocalInfo() (a
// worker address and the arena's packed rkey in an envelope of ours) and answers the active-message
// read requests of peers from its arena. A reader pulls either with RMA gets (native on shared
// memory: posix/sysv/cma) or with active messages (a small request, answered by a rendezvous send
// straight from the peer's arena into ours: the fast path where UCX only emulates RMA, as on tcp).
//
// One UCX context and worker, driven by one progress thread that polls while there is traffic and
// then sleeps on the worker's event fd. UCX types stay in the .cc.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvtier::transport {

struct UcxOptions {
  // UCX transports (UCX_TLS syntax, e.g. "tcp", "posix,cma"); empty: UCX's default or $UCX_TLS.
  std::string tls;
  // UCX_NET_DEVICES for network transports; empty: UCX's default or $UCX_NET_DEVICES.
  std::string net_devices = "lo";
  enum class Protocol {
    kAuto,           // RMA get when the peer is reachable over shared memory, else kActiveMessage
    kGet,            // ucp_get_nbx from the peer's arena (UCX 1.13 emulates it: tcp, posix)
    kActiveMessage,  // request AM, answered by a rendezvous AM send from the peer's arena
  };
  Protocol protocol = Protocol::kAuto;
};

// Copy `bytes` from the peer's arena at `remote_offset` to ours at `local_offset`.
struct PullOp {
  uint64_t remote_offset = 0;
  uint64_t local_offset = 0;
  uint64_t bytes = 0;
};

class UcxTransport {
 public:
  struct Counters {
    uint64_t pulls = 0;         // Pull calls finished, successfully or not
    uint64_t bytes_in = 0;      // bytes landed in our arena
    uint64_t bytes_served = 0;  // bytes sent from our arena by active message (RMA gets by peers
                                // do not involve this side and are not counted)
    uint64_t errors = 0;        // failed pulls plus serve requests refused or failed
  };

  // Registers `arena` (`arena_bytes` > 0, owned by the caller, must outlive the transport) with a
  // new UCX context and starts the progress thread. UNAVAILABLE when UCX cannot bring up the
  // requested transports; INVALID_ARGUMENT for bad options.
  static absl::StatusOr<std::unique_ptr<UcxTransport>> Create(std::byte* arena, size_t arena_bytes,
                                                              const UcxOptions& options);
  // Stops the progress thread: queued pulls finish with CANCELLED; pulls in flight get up to a
  // second to finish, then CANCELLED (every `done` runs before this returns); endpoints are closed
  // and the arena unregistered.
  ~UcxTransport();
  UcxTransport(const UcxTransport&) = delete;
  UcxTransport& operator=(const UcxTransport&) = delete;

  // What a peer needs to pull from us (see peer_info.h). Stable for the transport's life.
  const std::string& LocalInfo() const;

  // One line for logs and benchmarks: transports, protocol, GPU memory support. E.g.
  // "tls=tcp protocol=am-rndv (RMA emulated on these transports); gpu memory: not supported by
  // this UCX, GPU blocks stage through DRAM".
  std::string Mode() const;
  // Whether UCX here can register GPU (CUDA) memory.
  bool gpu_memory_supported() const;

  // Pulls `ops` from the peer described by `peer_info` into our arena. `done` runs exactly once,
  // on the progress thread (never inside the call, except with CANCELLED while the transport is
  // being destroyed), with:
  //   OK                 every op landed;
  //   INVALID_ARGUMENT   unreadable peer_info, an op outside either arena or of zero bytes,
  //                      deadline_ms <= 0 (nothing was touched);
  //   DEADLINE_EXCEEDED  not done within deadline_ms (a silent peer);
  //   UNAVAILABLE        the peer failed or refused; CANCELLED: the transport is shutting down.
  // On an error some ops may have landed and others not. The peer's endpoint is cached (keyed by
  // peer_info) and dropped on any error or deadline, failing the other pulls in flight to it.
  // Caveat: to a peer on this host over posix/sysv, UCX 1.13 has no failure detection and cannot
  // cancel a transfer in flight; a pull that failed there (deadline) leaves its gets or started
  // rendezvous receives queued, and if the peer (stalled, not dead: a dead peer's pid is noticed)
  // answers later, those bytes still land in the destination ranges. AM replies that arrive
  // after a failure are dropped.
  // `done` may call Pull(); it must not destroy the transport. Thread-safe.
  void Pull(const std::string& peer_info, std::vector<PullOp> ops, int deadline_ms,
            std::function<void(absl::Status)> done);
  // Pull() and wait for its result. Must not be called from a `done` callback.
  absl::Status PullSync(const std::string& peer_info, std::vector<PullOp> ops, int deadline_ms);

  Counters counters() const;

 private:
  class Impl;  // server/transport/ucx_transport_impl.h
  explicit UcxTransport(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvtier::transport
