#include "server/transport/ucx_transport.h"

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "server/transport/ucx_transport_impl.h"
#include "spdlog/spdlog.h"

namespace kvtier::transport {
namespace {

// How long the progress thread keeps polling after the last sign of activity before it sleeps on
// the worker's event fd. Waking from the event fd costs far more than a poll (in a VM most of
// all): sleeping between the messages of a transfer halved its throughput (1 MiB am-rndv over
// tcp, 2.2 vs 2.5-3.2 GB/s), so the thread polls while transfers are in flight, and a little
// while after the last one (the next request of a stream usually follows within that).
constexpr auto kSpinWhileBusy = std::chrono::milliseconds(5);
constexpr auto kSpinAfterActivity = std::chrono::milliseconds(2);
// After a wakeup with nothing new (a stalled peer, a timeout): poll this long, then sleep again,
// so a silent peer does not keep a core busy until its deadline.
constexpr auto kSpinAfterWakeup = std::chrono::microseconds(200);
// Sleep bounds: short while work is in flight (not every UCX progress raises an event), long when
// idle (UCX keepalive only).
constexpr int kBusySleepMs = 2;
constexpr int kIdleSleepMs = 100;
// UCX TCP_TX_SEG_SIZE and TCP_RX_SEG_SIZE unless set in the environment.
constexpr char kTcpSegmentSize[] = "256k";
// Shutdown lets pulls in flight finish, then endpoints close, each for at most this long.
constexpr auto kShutdownGrace = std::chrono::seconds(1);

}  // namespace

absl::Status UcxError(absl::string_view what, ucs_status_t status) {
  const std::string message = absl::StrCat(what, ": ", ucs_status_string(status));
  switch (status) {
    case UCS_ERR_INVALID_PARAM:
      return absl::InvalidArgumentError(message);
    case UCS_ERR_CANCELED:
      return absl::CancelledError(message);
    case UCS_ERR_NO_MEMORY:
      return absl::ResourceExhaustedError(message);
    default:
      // Unreachable or failed peers, reset connections, missing devices: "not now".
      return absl::UnavailableError(message);
  }
}

TlsTraits ReadTls(const std::string& configured) {
  TlsTraits t;
  std::string list = configured;
  if (list.empty()) {
    const char* env = std::getenv("UCX_TLS");
    list = env != nullptr ? env : "";
  }
  t.effective = list.empty() ? "default" : list;
  if (list.empty() || list == "all") {
    t.shm = t.shm_am = t.tcp = true;
    return t;
  }
  const bool exclude = list[0] == '^';
  bool shm = false, shm_am = false, tcp = false;
  for (absl::string_view tl : absl::StrSplit(exclude ? list.substr(1) : list, ',')) {
    const bool alias = tl == "sm" || tl == "shm" || tl == "all";
    if (alias || tl == "posix" || tl == "sysv" || tl == "mm") shm = shm_am = true;
    if (alias || tl == "cma" || tl == "knem" || tl == "xpmem") shm = true;
    if (tl == "tcp" || tl == "all") tcp = true;
  }
  t.shm = exclude ? !shm : shm;
  t.shm_am = exclude ? !shm_am : shm_am;
  t.tcp = exclude ? !tcp : tcp;
  return t;
}

// ---- Set-up and tear-down --------------------------------------------------------------------

absl::Status UcxTransport::Impl::Init() {
  if (arena_ == nullptr || arena_bytes_ == 0) {
    return absl::InvalidArgumentError("UcxTransport: empty arena");
  }
  absl::Status s = InitContext();
  if (s.ok()) s = InitWorker();
  if (s.ok()) s = InitArena();
  if (!s.ok()) {
    Teardown();
    return s;
  }
  ProbeGpuMemory();
  PeerInfo info;
  std::random_device rd;
  info.instance_id = (uint64_t{rd()} << 32) ^ rd();
  info.host_id = host_id_;
  info.pid_namespace = pid_namespace_;
  info.pid = static_cast<uint32_t>(getpid());
  info.arena_base = reinterpret_cast<uint64_t>(arena_);
  info.arena_bytes = arena_bytes_;
  info.worker_address.assign(reinterpret_cast<const char*>(address_), address_bytes_);
  info.rkey.assign(static_cast<const char*>(rkey_buffer_), rkey_bytes_);
  local_info_ = EncodePeerInfo(info);
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "kvt-ucx");  // for top -H and perf
    Loop();
  });
  return absl::OkStatus();
}

absl::Status UcxTransport::Impl::InitContext() {
  ucp_config_t* config = nullptr;
  ucs_status_t st = ucp_config_read(nullptr, nullptr, &config);
  if (st != UCS_OK) return UcxError("ucp_config_read", st);
  if (!options_.tls.empty()) st = ucp_config_modify(config, "TLS", options_.tls.c_str());
  if (st == UCS_OK && !options_.net_devices.empty()) {
    st = ucp_config_modify(config, "NET_DEVICES", options_.net_devices.c_str());
  }
  // UCX's tcp moves data in segments of 8 KiB (tx) and 64 KiB (rx) by default; with 256 KiB ones
  // 1 MiB am-rndv pulls between two processes went from 3.9 to 5.5 GB/s (gets: 1.6 to 5.4).
  // UCX_TCP_{TX,RX}_SEG_SIZE in the environment still win. (Named without the TCP_ prefix:
  // ucp_config_modify hands names it does not know to each transport's own table.)
  for (const char* name : {"TX_SEG_SIZE", "RX_SEG_SIZE"}) {
    if (st == UCS_OK && tls_.tcp &&
        std::getenv(absl::StrCat("UCX_TCP_", name).c_str()) == nullptr) {
      st = ucp_config_modify(config, name, kTcpSegmentSize);
    }
  }
  if (st != UCS_OK) {
    ucp_config_release(config);
    return absl::InvalidArgumentError(absl::StrCat("UCX rejects tls='", options_.tls,
                                                   "' net_devices='", options_.net_devices,
                                                   "': ", ucs_status_string(st)));
  }
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES | UCP_PARAM_FIELD_NAME;
  params.features = UCP_FEATURE_RMA | UCP_FEATURE_AM | UCP_FEATURE_WAKEUP;
  params.name = "kvtier";
  st = ucp_init(&params, config, &context_);
  ucp_config_release(config);
  if (st != UCS_OK) {
    context_ = nullptr;
    return absl::UnavailableError(
        absl::StrCat("UCX cannot start with tls='", tls_.effective, "': ", ucs_status_string(st)));
  }
  return absl::OkStatus();
}

absl::Status UcxTransport::Impl::InitWorker() {
  ucp_worker_params_t wp{};
  wp.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  wp.thread_mode = UCS_THREAD_MODE_SINGLE;  // only the progress thread touches it
  ucs_status_t st = ucp_worker_create(context_, &wp, &worker_);
  if (st != UCS_OK) {
    worker_ = nullptr;
    return UcxError("ucp_worker_create", st);
  }
  st = ucp_worker_get_efd(worker_, &worker_fd_);
  if (st != UCS_OK) return UcxError("ucp_worker_get_efd", st);
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) return absl::InternalError(absl::StrCat("eventfd: ", std::strerror(errno)));
  st = ucp_worker_get_address(worker_, &address_, &address_bytes_);
  if (st != UCS_OK) {
    address_ = nullptr;
    return UcxError("ucp_worker_get_address", st);
  }
  ucp_am_handler_param_t hp{};
  hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_FLAGS |
                  UCP_AM_HANDLER_PARAM_FIELD_CB | UCP_AM_HANDLER_PARAM_FIELD_ARG;
  hp.flags = UCP_AM_FLAG_WHOLE_MSG;
  hp.arg = this;
  hp.id = kAmReadRequest;
  hp.cb = &OnReadRequest;
  st = ucp_worker_set_am_recv_handler(worker_, &hp);
  if (st != UCS_OK) return UcxError("ucp_worker_set_am_recv_handler", st);
  hp.id = kAmReadReply;
  hp.cb = &OnReadReply;
  st = ucp_worker_set_am_recv_handler(worker_, &hp);
  if (st != UCS_OK) return UcxError("ucp_worker_set_am_recv_handler", st);
  return absl::OkStatus();
}

absl::Status UcxTransport::Impl::InitArena() {
  ucp_mem_map_params_t mp{};
  mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_ADDRESS | UCP_MEM_MAP_PARAM_FIELD_LENGTH |
                  UCP_MEM_MAP_PARAM_FIELD_MEMORY_TYPE;
  mp.address = arena_;
  mp.length = arena_bytes_;
  mp.memory_type = UCS_MEMORY_TYPE_HOST;
  ucs_status_t st = ucp_mem_map(context_, &mp, &memh_);
  if (st != UCS_OK) {
    memh_ = nullptr;
    return UcxError("ucp_mem_map of the arena", st);
  }
  st = ucp_rkey_pack(context_, memh_, &rkey_buffer_, &rkey_bytes_);
  if (st != UCS_OK) {
    rkey_buffer_ = nullptr;
    return UcxError("ucp_rkey_pack", st);
  }
  return absl::OkStatus();
}

void UcxTransport::Impl::ProbeGpuMemory() {
  ucp_context_attr_t attr{};
  attr.field_mask = UCP_ATTR_FIELD_MEMORY_TYPES;
  if (ucp_context_query(context_, &attr) != UCS_OK ||
      !(attr.memory_types & UCS_BIT(UCS_MEMORY_TYPE_CUDA))) {
    gpu_detail_ = "not supported by this UCX, GPU blocks stage through DRAM";
    return;
  }
  // UCX reports CUDA support: confirm by having it allocate and register a little GPU memory.
  ucp_mem_map_params_t mp{};
  mp.field_mask = UCP_MEM_MAP_PARAM_FIELD_LENGTH | UCP_MEM_MAP_PARAM_FIELD_FLAGS |
                  UCP_MEM_MAP_PARAM_FIELD_MEMORY_TYPE;
  mp.length = 64 * 1024;
  mp.flags = UCP_MEM_MAP_ALLOCATE;
  mp.memory_type = UCS_MEMORY_TYPE_CUDA;
  ucp_mem_h memh = nullptr;
  const ucs_status_t st = ucp_mem_map(context_, &mp, &memh);
  if (st == UCS_OK) {
    ucp_mem_unmap(context_, memh);
    gpu_supported_ = true;
    gpu_detail_ = "cuda supported by this UCX";
  } else {
    gpu_detail_ = absl::StrCat("UCX lists cuda but cannot register it (", ucs_status_string(st),
                               "), GPU blocks stage through DRAM");
  }
}

// Releases whatever Init() created, in reverse order. Runs on the progress thread once it has
// stopped (or on the creating thread when Init() failed before starting it).
void UcxTransport::Impl::Teardown() {
  if (address_ != nullptr) ucp_worker_release_address(worker_, address_);
  address_ = nullptr;
  // Destroying the worker cancels what is still in flight; the callbacks may run now and touch
  // our slots, which are freed only with the Impl.
  if (worker_ != nullptr) ucp_worker_destroy(worker_);
  worker_ = nullptr;
  if (rkey_buffer_ != nullptr) ucp_rkey_buffer_release(rkey_buffer_);
  rkey_buffer_ = nullptr;
  if (memh_ != nullptr) ucp_mem_unmap(context_, memh_);
  memh_ = nullptr;
  if (context_ != nullptr) ucp_cleanup(context_);
  context_ = nullptr;
}

UcxTransport::Impl::~Impl() {
  if (thread_.joinable()) {
    stop_.store(true);
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
    thread_.join();  // the thread tears UCX down before it ends
  }
  if (wake_fd_ >= 0) close(wake_fd_);
}

std::string UcxTransport::Impl::Mode() const {
  std::string protocol;
  switch (options_.protocol) {
    case UcxOptions::Protocol::kGet:
      protocol = tls_.shm ? "get" : "get (RMA emulated by UCX over these transports)";
      break;
    case UcxOptions::Protocol::kActiveMessage:
      protocol = "am-rndv";
      break;
    case UcxOptions::Protocol::kAuto:
      if (tls_.shm && tls_.tcp) {
        protocol = "auto (get to peers on this host over shared memory, am-rndv to others)";
      } else if (tls_.shm) {
        protocol = "get (shared memory; UCX 1.13 emulates it with posix copies)";
      } else {
        protocol = "am-rndv (RMA emulated on these transports)";
      }
      break;
  }
  return absl::StrCat("tls=", tls_.effective, " protocol=", protocol,
                      "; gpu memory: ", gpu_detail_);
}

// ---- Submission (any thread) -----------------------------------------------------------------

void UcxTransport::Impl::Pull(const std::string& peer_info, std::vector<PullOp> ops,
                              int deadline_ms, std::function<void(absl::Status)> done) {
  auto pull = std::make_unique<PullState>();
  pull->impl = this;
  pull->done = std::move(done);
  pull->ops = std::move(ops);
  pull->deadline = Clock::now() + std::chrono::milliseconds(deadline_ms);
  // Validate here, off the progress thread: nothing invalid reaches UCX or touches memory.
  if (deadline_ms <= 0) {
    pull->status = absl::InvalidArgumentError(absl::StrCat("deadline_ms ", deadline_ms));
  } else if (auto info = DecodePeerInfo(peer_info); !info.ok()) {
    pull->status = info.status();
  } else {
    pull->info = *std::move(info);
    for (size_t i = 0; i < pull->ops.size() && pull->status.ok(); ++i) {
      const PullOp& op = pull->ops[i];
      if (op.bytes == 0) {
        pull->status = absl::InvalidArgumentError(absl::StrCat("op ", i, ": zero bytes"));
      } else if (!InRange(op.remote_offset, op.bytes, pull->info.arena_bytes)) {
        pull->status = absl::InvalidArgumentError(
            absl::StrCat("op ", i, ": remote range [", op.remote_offset, ", +", op.bytes,
                         ") outside the peer's arena of ", pull->info.arena_bytes, " bytes"));
      } else if (!InRange(op.local_offset, op.bytes, arena_bytes_)) {
        pull->status = absl::InvalidArgumentError(
            absl::StrCat("op ", i, ": local range [", op.local_offset, ", +", op.bytes,
                         ") outside our arena of ", arena_bytes_, " bytes"));
      }
    }
    pull->peer_key = peer_info;
    pull->slots.resize(pull->ops.size());
  }
  std::unique_ptr<PullState> rejected;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) {
      rejected = std::move(pull);
    } else {
      queue_.push_back(std::move(pull));
      queued_.store(true, std::memory_order_release);
    }
  }
  if (rejected != nullptr) {  // the transport is being destroyed: nobody will progress it
    rejected->done(absl::CancelledError("UcxTransport is shutting down"));
    return;
  }
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(wake_fd_, &one, sizeof(one));
}

// ---- Progress thread ---------------------------------------------------------------------------

void UcxTransport::Impl::Loop() {
  std::vector<std::unique_ptr<PullState>> batch;
  Clock::time_point spin_until = Clock::now();
  Clock::time_point next_deadline_check = spin_until;
  while (true) {
    const bool stop = TakeQueued(&batch);
    for (auto& pull : batch) Start(std::move(pull));
    batch.clear();
    while (ucp_worker_progress(worker_) != 0) activity_ = true;
    ReapClosedEndpoints();
    const Clock::time_point now = Clock::now();
    if (now >= next_deadline_check) {
      CheckDeadlines(now);
      next_deadline_check = now + std::chrono::milliseconds(1);
    }
    if (RunFinished() > 0) activity_ = true;
    if (stop) break;
    if (activity_) {
      activity_ = false;
      spin_until = now + (Busy() ? kSpinWhileBusy : kSpinAfterActivity);
      continue;
    }
    if (now < spin_until) {
      // Polling, but any other thread that is ready (the daemon's verify workers, gRPC) goes
      // first: on a machine with few cores a polling thread must not hold one they need.
      sched_yield();
      continue;
    }
    // Quiet for a while: sleep until UCX or a submitter signals, or a deadline may be due.
    const ucs_status_t armed = ucp_worker_arm(worker_);
    if (armed == UCS_ERR_BUSY) continue;  // events arrived meanwhile
    int timeout_ms = Busy() ? kBusySleepMs : kIdleSleepMs;
    if (armed != UCS_OK) timeout_ms = 1;  // cannot sleep on UCX: poll it often instead
    pollfd fds[2] = {{worker_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    if (poll(fds, 2, timeout_ms) > 0 && (fds[1].revents & POLLIN)) {
      uint64_t value;
      [[maybe_unused]] ssize_t n = read(wake_fd_, &value, sizeof(value));
    }
    spin_until = Clock::now() + kSpinAfterWakeup;
  }
  Shutdown();
}

// Moves queued pulls to `out`; true once the transport is stopping.
bool UcxTransport::Impl::TakeQueued(std::vector<std::unique_ptr<PullState>>* out) {
  if (queued_.load(std::memory_order_acquire)) {  // no lock while nothing is queued
    absl::MutexLock lock(&mu_);
    queued_.store(false, std::memory_order_relaxed);
    out->swap(queue_);
    activity_ = true;
  }
  return stop_.load(std::memory_order_acquire);
}

// Ends the progress thread's work: queued pulls are cancelled; pulls in flight get a grace period
// to finish (so that peers' replies in flight complete, and because closing an endpoint by force
// mid-connection trips a UCX 1.13 assertion on the peer), then the rest are cancelled, endpoints
// close in order, and the worker goes, which ends whatever is left.
void UcxTransport::Impl::Shutdown() {
  std::vector<std::unique_ptr<PullState>> queued;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    queued.swap(queue_);
  }
  const absl::Status cancelled = absl::CancelledError("UcxTransport is shutting down");
  for (auto& pull : queued) {
    pulls_.fetch_add(1, std::memory_order_relaxed);
    pull->done(cancelled);
  }
  auto drain = [&](auto done) {
    const Clock::time_point give_up = Clock::now() + kShutdownGrace;
    while (!done() && Clock::now() < give_up) {
      while (ucp_worker_progress(worker_) != 0) {
      }
      ReapClosedEndpoints();
      CheckDeadlines(Clock::now());
      RunFinished();
      if (!done()) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  };
  drain([&] { return pulls_by_id_.empty() && serves_in_flight_ == 0; });
  for (auto& [id, pull] : pulls_by_id_) {
    if (pull->status.ok()) pull->status = cancelled;
    pull->peer = nullptr;     // its endpoint closes below
    MaybeFinish(pull.get());  // ops waiting for an AM reply are dropped now
  }
  RunFinished();
  std::vector<std::unique_ptr<Peer>> peers;
  for (auto& [key, peer] : peers_) peers.push_back(std::move(peer));
  peers_.clear();
  for (auto& peer : peers) CloseEndpoint(std::move(peer), /*force=*/false);
  drain([&] { return closing_.empty(); });
  if (!pulls_by_id_.empty() || !closing_.empty() || serves_in_flight_ > 0) {
    spdlog::warn("ucx transport: {} pulls, {} endpoint closes, {} serves unfinished at shutdown",
                 pulls_by_id_.size(), closing_.size(), serves_in_flight_);
  }
  for (auto& [request, peer] : closing_) ucp_request_free(request);
  Teardown();  // destroying the worker ends what is left; its callbacks may run now
  closing_.clear();
  quarantined_.clear();
  parked_.clear();
  for (auto& [id, pull] : pulls_by_id_) {
    pulls_.fetch_add(1, std::memory_order_relaxed);
    errors_.fetch_add(1, std::memory_order_relaxed);
    pull->done(pull->status.ok() ? cancelled : pull->status);
  }
  pulls_by_id_.clear();
}

// ---- Public face -------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<UcxTransport>> UcxTransport::Create(std::byte* arena,
                                                                   size_t arena_bytes,
                                                                   const UcxOptions& options) {
  auto impl = std::make_unique<Impl>(arena, arena_bytes, options);
  if (absl::Status s = impl->Init(); !s.ok()) return s;
  return std::unique_ptr<UcxTransport>(new UcxTransport(std::move(impl)));
}

UcxTransport::UcxTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
UcxTransport::~UcxTransport() = default;

const std::string& UcxTransport::LocalInfo() const { return impl_->local_info(); }
std::string UcxTransport::Mode() const { return impl_->Mode(); }
bool UcxTransport::gpu_memory_supported() const { return impl_->gpu_memory_supported(); }
UcxTransport::Counters UcxTransport::counters() const { return impl_->counters(); }

void UcxTransport::Pull(const std::string& peer_info, std::vector<PullOp> ops, int deadline_ms,
                        std::function<void(absl::Status)> done) {
  impl_->Pull(peer_info, std::move(ops), deadline_ms, std::move(done));
}

absl::Status UcxTransport::PullSync(const std::string& peer_info, std::vector<PullOp> ops,
                                    int deadline_ms) {
  if (impl_->OnProgressThread()) {
    return absl::FailedPreconditionError("PullSync from a done callback would deadlock");
  }
  absl::Notification finished;
  absl::Status result;
  Pull(peer_info, std::move(ops), deadline_ms, [&](absl::Status s) {
    result = std::move(s);
    finished.Notify();
  });
  finished.WaitForNotification();
  return result;
}

}  // namespace kvtier::transport
