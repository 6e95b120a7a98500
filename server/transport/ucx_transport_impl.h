// Internals of UcxTransport, shared by its three .cc files: ucx_transport.cc (set-up, the progress
// loop, shutdown), ucx_pull.cc (the reader side) and ucx_serve.cc (answering peers' reads).
//
// Threading: Pull() runs on any thread and only touches the submission queue (mu_). Everything
// else, including every UCX call after Init(), runs on the progress thread; UCX callbacks run
// inside ucp_worker_progress() on that thread too. One lock, so no lock order to state.
#pragma once

#include <ucp/api/ucp.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/transport/peer_info.h"
#include "server/transport/ucx_transport.h"

namespace kvtier::transport {

using Clock = std::chrono::steady_clock;

// Active message ids (a worker-wide namespace; both are ours).
inline constexpr unsigned kAmReadRequest = 0x4b54;
inline constexpr unsigned kAmReadReply = 0x4b55;

// Wire formats of the two active messages: headers only; the reply carries the bytes as its data.
struct ReadRequest {
  uint64_t pull_id;
  uint32_t op_index;
  uint32_t reserved;
  uint64_t remote_offset;
  uint64_t bytes;
};
struct ReadReply {
  uint64_t pull_id;
  uint32_t op_index;
  uint32_t code;  // absl::StatusCode of the serving side; 0: OK, and the bytes follow
};

// The UCX status as ours, with `what` in front of UCX's words.
absl::Status UcxError(absl::string_view what, ucs_status_t status);

inline bool InRange(uint64_t offset, uint64_t bytes, uint64_t size) {
  return offset <= size && bytes <= size - offset;
}

// What a transport list (UCX_TLS syntax) allows.
struct TlsTraits {
  std::string effective;  // the list UCX will read ("default" when none is set)
  bool shm = false;       // shared-memory transports (posix, sysv, cma, knem, xpmem)
  bool shm_am = false;    // posix or sysv: same-host active messages (no peer failure detection)
  bool tcp = false;
};
TlsTraits ReadTls(const std::string& configured);

// Fixed-size objects handed to UCX as request user_data, recycled (no allocation per op).
template <typename T>
class SlotPool {
 public:
  T* Acquire() {
    if (free_.empty()) {
      all_.push_back(std::make_unique<T>());
      return all_.back().get();
    }
    T* slot = free_.back();
    free_.pop_back();
    return slot;
  }
  void Release(T* slot) { free_.push_back(slot); }

 private:
  std::vector<std::unique_ptr<T>> all_;
  std::vector<T*> free_;
};

class UcxTransport::Impl {
 public:
  Impl(std::byte* arena, size_t arena_bytes, const UcxOptions& options)
      : arena_(arena), arena_bytes_(arena_bytes), options_(options), tls_(ReadTls(options.tls)) {}
  ~Impl();

  absl::Status Init();
  const std::string& local_info() const { return local_info_; }
  std::string Mode() const;
  bool gpu_memory_supported() const { return gpu_supported_; }
  void Pull(const std::string& peer_info, std::vector<PullOp> ops, int deadline_ms,
            std::function<void(absl::Status)> done);
  bool OnProgressThread() const { return std::this_thread::get_id() == thread_.get_id(); }
  Counters counters() const {
    return {pulls_.load(std::memory_order_relaxed), bytes_in_.load(std::memory_order_relaxed),
            bytes_served_.load(std::memory_order_relaxed), errors_.load(std::memory_order_relaxed)};
  }

 private:
  struct PullState;
  struct Peer;

  // One op of a pull; the user_data of the UCX requests that write its bytes.
  struct OpSlot {
    PullState* pull = nullptr;
    uint32_t index = 0;
    bool finished = false;
  };

  struct PullState {
    Impl* impl = nullptr;
    uint64_t id = 0;
    std::string peer_key;  // the peer_info blob (the endpoint cache key)
    PeerInfo info;
    std::vector<PullOp> ops;
    std::vector<OpSlot> slots;
    std::function<void(absl::Status)> done;
    Clock::time_point deadline;
    absl::Status status;      // the first error; set before the start for rejected pulls
    Peer* peer = nullptr;     // null once the peer is dropped
    size_t ops_left = 0;      // ops not finished
    size_t ucx_requests = 0;  // gets and rendezvous receives in flight (they write our arena)
    bool posted = false;
    bool abandoned = false;  // failed with requests UCX cannot cancel (see DropPeer)
    bool finishing = false;  // queued for its done callback
  };

  struct Peer {
    Impl* impl = nullptr;
    std::string key;
    ucp_ep_h ep = nullptr;
    ucp_rkey_h rkey = nullptr;
    uint64_t remote_base = 0;
    bool use_get = false;
    bool peer_errors = false;  // UCP_ERR_HANDLING_MODE_PEER: UCX reports the peer's failure
    pid_t pid = 0;             // the peer process, when it is on this host and pid namespace
    bool failed = false;
  };

  // An AM read request being sent (the header must live until the send completes).
  struct SendSlot {
    Impl* impl = nullptr;
    ReadRequest request{};
  };
  // A reply being sent from our arena.
  struct ServeSlot {
    Impl* impl = nullptr;
    ReadReply reply{};
    uint64_t bytes = 0;
  };

  // UCX callbacks: static trampolines.
  static void OnEpError(void* arg, ucp_ep_h ep, ucs_status_t status);
  static void OnGetDone(void* request, ucs_status_t status, void* user_data);
  static void OnRequestSent(void* request, ucs_status_t status, void* user_data);
  static void OnReplyData(void* request, ucs_status_t status, size_t length, void* user_data);
  static void OnServeSent(void* request, ucs_status_t status, void* user_data);
  static ucs_status_t OnReadRequest(void* arg, const void* header, size_t header_length, void* data,
                                    size_t length, const ucp_am_recv_param_t* param);
  static ucs_status_t OnReadReply(void* arg, const void* header, size_t header_length, void* data,
                                  size_t length, const ucp_am_recv_param_t* param);

  // ucx_transport.cc: set-up, loop, shutdown.
  absl::Status InitContext();
  absl::Status InitWorker();
  absl::Status InitArena();
  void ProbeGpuMemory();
  void Teardown();
  void Loop();
  bool TakeQueued(std::vector<std::unique_ptr<PullState>>* out);
  bool Busy() const { return !pulls_by_id_.empty() || serves_in_flight_ > 0 || !closing_.empty(); }
  void Shutdown();

  // ucx_pull.cc: the reader side.
  void Start(std::unique_ptr<PullState> pull);
  absl::StatusOr<Peer*> PeerFor(const PullState& pull);
  void PostGet(PullState* pull, OpSlot* slot);
  void PostReadRequest(PullState* pull, OpSlot* slot);
  ucs_status_t ReceiveReply(const ReadReply& reply, void* data, size_t length, bool rendezvous);
  void OpFinished(OpSlot* slot, ucs_status_t status);
  void FailPull(PullState* pull, absl::Status status);
  void MaybeFinish(PullState* pull);
  int RunFinished();
  void DropPeer(Peer* peer, const absl::Status& why);
  void CloseEndpoint(std::unique_ptr<Peer> peer, bool force);
  void ReapClosedEndpoints();
  void CheckDeadlines(Clock::time_point now);

  // ucx_serve.cc: answering peers' reads from our arena.
  void ServeRead(const ReadRequest& request, ucp_ep_h reply_ep);

  std::byte* const arena_;
  const size_t arena_bytes_;
  const UcxOptions options_;
  const TlsTraits tls_;
  const uint64_t host_id_ = LocalHostId();
  const uint64_t pid_namespace_ = LocalPidNamespace();

  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  ucp_mem_h memh_ = nullptr;
  void* rkey_buffer_ = nullptr;
  size_t rkey_bytes_ = 0;
  ucp_address_t* address_ = nullptr;
  size_t address_bytes_ = 0;
  int worker_fd_ = -1;
  int wake_fd_ = -1;
  std::string local_info_;
  bool gpu_supported_ = false;
  std::string gpu_detail_;
  std::thread thread_;

  absl::Mutex mu_;
  std::vector<std::unique_ptr<PullState>> queue_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;  // the progress thread takes no more pulls
  std::atomic<bool> queued_{false};           // queue_ may be non-empty (read without mu_)
  std::atomic<bool> stop_{false};

  // Progress thread only.
  uint64_t next_pull_id_ = 1;
  absl::flat_hash_map<uint64_t, std::unique_ptr<PullState>> pulls_by_id_;
  absl::flat_hash_map<std::string, std::unique_ptr<Peer>> peers_;  // by peer_info blob
  std::vector<std::unique_ptr<Peer>> to_close_;                    // dropped, close by force
  std::vector<std::pair<void*, std::unique_ptr<Peer>>> closing_;   // close request, its peer
  // Failed endpoints UCX cannot close by force (no peer failure detection): left open, with the
  // pulls whose requests they still hold, until the worker is destroyed.
  std::vector<std::unique_ptr<Peer>> quarantined_;
  std::vector<std::unique_ptr<PullState>> parked_;
  std::vector<uint64_t> finished_;  // pull ids whose done is due
  SlotPool<SendSlot> send_slots_;
  SlotPool<ServeSlot> serve_slots_;
  size_t serves_in_flight_ = 0;
  bool activity_ = false;  // something happened since the loop last looked
  Clock::time_point next_liveness_check_{};

  std::atomic<uint64_t> pulls_{0}, bytes_in_{0}, bytes_served_{0}, errors_{0};
};

}  // namespace kvtier::transport
