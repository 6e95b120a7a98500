// kvtierd: the KV-cache tiering daemon of one node.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>

#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/background_loop.h"
#include "common/log.h"
#include "common/size.h"
#include "common/tls_files.h"
#include "cuda/gather_scatter.h"
#include "cuda/pinned_host.h"
#include "server/cluster/cluster_node.h"
#include "server/cluster/etcd_membership.h"
#include "server/cluster/static_peers.h"
#include "server/daemon/config.h"
#include "server/dram/arena.h"
#include "server/hbm/device_pool.h"
#include "server/metrics/kvtier_metrics.h"
#include "server/metrics/metrics_server.h"
#include "server/nvme/nvme_store.h"
#include "server/security/access_policy.h"
#include "server/security/grpc_security.h"
#include "server/security/request_log.h"
#include "server/security/unix_peer_listener.h"
#include "server/service/arena_fd_server.h"
#include "server/service/hbm_handle_server.h"
#include "server/service/kvtier_service.h"
#include "server/service/peer_service.h"
#include "server/service/weights_service.h"
#include "server/store/block_store.h"
#include "server/transport/ucx_arena_puller.h"
#include "spdlog/spdlog.h"

namespace kvtier {
namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "kvtierd: %s\n", std::string(status.message()).c_str());
  return 1;
}

// --- operations (issue 8): socket permissions -------------------------------------------------
// The client sockets are created owner-only (umask 0177 around their bind), then given to
// --socket-group, if any, and opened to the group (0660): never reachable by others, not even
// for a moment.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : old_(umask(mask)) {}
  ~ScopedUmask() { umask(old_); }
  ScopedUmask(const ScopedUmask&) = delete;
  ScopedUmask& operator=(const ScopedUmask&) = delete;

 private:
  mode_t old_;
};

absl::Status OpenSocketToGroup(const std::string& path, int64_t gid) {
  if (gid >= 0 && chown(path.c_str(), static_cast<uid_t>(-1), static_cast<gid_t>(gid)) != 0) {
    return absl::PermissionDeniedError(
        absl::StrFormat("--socket-group: cannot give %s to group %d: %s (the daemon's user must "
                        "be a member of the group)",
                        path, gid, std::strerror(errno)));
  }
  if (chmod(path.c_str(), 0660) != 0) {
    return absl::PermissionDeniedError(
        absl::StrFormat("--socket: cannot chmod 0660 %s: %s", path, std::strerror(errno)));
  }
  return absl::OkStatus();
}
// --- end operations ---------------------------------------------------------------------------

int Run(int argc, char** argv) {
  bool exit_now = false;
  std::string message;
  auto parsed = ParseDaemonFlags(argc, argv, &exit_now, &message);
  if (!parsed.ok()) return Fail(parsed.status());
  if (exit_now) {
    std::cout << message << "\n";
    return 0;
  }
  DaemonConfig config = *parsed;
  InitLogging("kvtierd");
  if (auto s = SetLogLevel(config.log_level); !s.ok()) return Fail(s);
  // --- security (issue 8): log format, TLS files, namespace restrictions; checked before any
  // memory is reserved ----------------------------------------------------------------------------
  if (auto s = SetLogFormat(config.log_format); !s.ok()) return Fail(s);
  std::optional<TlsPem> tls;
  if (!config.tls_cert.empty() || !config.tls_key.empty() || !config.tls_ca.empty()) {
    auto pem = LoadTlsFiles({config.tls_cert, config.tls_key, config.tls_ca});
    if (!pem.ok()) return Fail(pem.status());
    tls = std::move(*pem);
  }
  auto access_policy = AccessPolicy::Create(config.allow_models);
  if (!access_policy.ok()) return Fail(access_policy.status());
  // --- end security ---------------------------------------------------------------------------

  // Signals are taken by sigwait below; every thread started from here on inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto arena = Arena::Create(config.dram_capacity, "kvtier-dram-arena",
                             *ParseArenaPages(config.arena_pages));  // checked with the flags
  if (!arena.ok()) return Fail(arena.status());
  spdlog::info("dram arena: {}, pages: {}", FormatBytes((*arena)->size()),
               (*arena)->pages_detail());

  StoreOptions store_options;
  store_options.default_lease_ms = config.lease_ms;
  store_options.max_lease_ms = config.max_lease_ms;
  store_options.max_batch_keys = config.max_batch;
  store_options.demote_watermark = config.demote_watermark;
  store_options.nvme_admit =
      config.nvme_admit == "all" ? StoreOptions::Admit::kAll : StoreOptions::Admit::kReused;
  store_options.hbm_promote_hits = config.hbm_promote_hits;
  BlockStore store((*arena)->size(), store_options);

  // The cluster, when asked for: UCX for the bytes, the Peer service for control. Set up before
  // the NVMe tier so that blocks recovered from the device are announced too.
  std::optional<Roster> static_roster;
  if (!config.peers.empty()) {
    auto roster = ParseStaticPeers(config.peers);
    if (!roster.ok()) return Fail(roster.status());
    auto self = std::find_if(roster->members.begin(), roster->members.end(),
                             [&](const Member& m) { return m.id == config.node_id; });
    if (self == roster->members.end()) {
      return Fail(absl::InvalidArgumentError(
          absl::StrFormat("--peers: this node (--node-id %s) is not in the list", config.node_id)));
    }
    if (config.listen.empty()) {
      config.listen = self->address;
    } else if (config.listen != self->address) {
      return Fail(absl::InvalidArgumentError(absl::StrFormat(
          "--listen: %s differs from this node's --peers entry %s", config.listen, self->address)));
    }
    static_roster = std::move(*roster);
  }
  const bool clustered = static_roster.has_value() || !config.etcd.empty();
  std::unique_ptr<UcxArenaPuller> puller;
  std::unique_ptr<ClusterNode> cluster;
  if (clustered) {
    transport::UcxOptions ucx;
    ucx.tls = config.ucx_tls;
    ucx.net_devices = config.ucx_net_devices;
    using Protocol = transport::UcxOptions::Protocol;
    ucx.protocol = config.ucx_protocol == "get"  ? Protocol::kGet
                   : config.ucx_protocol == "am" ? Protocol::kActiveMessage
                                                 : Protocol::kAuto;
    auto created = transport::UcxTransport::Create((*arena)->base(), (*arena)->size(), ucx);
    if (!created.ok()) return Fail(created.status());
    puller = std::make_unique<UcxArenaPuller>(std::move(*created));
    spdlog::info("cluster transport: {}", puller->Mode());
    ClusterOptions cluster_options;
    cluster_options.self_id = config.node_id;
    cluster_options.peer_timeout_ms = config.peer_timeout_ms;
    cluster = std::make_unique<ClusterNode>(
        cluster_options, &store, puller.get(), (*arena)->base(), (*arena)->size(),
        GrpcPeerConnector(config.node_id, config.peer_timeout_ms,
                          tls ? MutualTlsChannelCredentials(*tls) : nullptr,
                          config.tls_server_name));
    store.SetListener(cluster.get());
  }

  // The NVMe tier, when asked for: its device is scanned and what is intact served again.
  std::unique_ptr<NvmeStore> nvme;
  std::unique_ptr<BackgroundLoop> mover;
  if (!config.nvme_path.empty()) {
    NvmeOptions nvme_options;
    nvme_options.path = config.nvme_path;
    nvme_options.capacity = config.nvme_capacity;
    nvme_options.queue_depth = config.nvme_queue_depth;
    nvme_options.fail_writes_after = config.nvme_fail_writes_after;
    std::vector<RecoveredBlock> recovered;
    auto opened = NvmeStore::Open(nvme_options, (*arena)->base(), (*arena)->size(), &recovered);
    if (!opened.ok()) return Fail(opened.status());
    nvme = std::move(*opened);
    store.AttachNvme(nvme.get(), (*arena)->base());
    store.AdoptRecovered(recovered);
    // Writes cold DRAM blocks down while DRAM is over its watermark; the writes in flight are
    // bounded by the engine's queue depth (DemoteSome waits there).
    mover = std::make_unique<BackgroundLoop>(absl::Milliseconds(5),
                                             [&store] { return store.DemoteSome(32) > 0; });
  }

  const std::string socket = std::filesystem::absolute(config.socket_path).string();
  const std::string fd_socket = socket + ".arena";
  absl::StatusOr<std::unique_ptr<ArenaFdServer>> fd_server;
  {
    ScopedUmask owner_only(0177);
    fd_server = ArenaFdServer::Start(fd_socket, (*arena)->fd(), (*arena)->generation());
  }
  if (!fd_server.ok()) return Fail(fd_server.status());
  if (auto s = OpenSocketToGroup(fd_socket, config.socket_gid); !s.ok()) return Fail(s);

  ServiceInfo info;
  info.node_id = config.node_id;
  info.version = KVTIER_VERSION;
  info.fd_socket_path = fd_socket;
  info.arena_bytes = (*arena)->size();
  info.arena_generation = (*arena)->generation();
  info.arena_pages = (*arena)->pages_detail();
  info.started_ms = store.NowMs();
  // --- HBM tier (issue 5) ----------------------------------------------------------------------
  // A device pool above DRAM: the cuda backend on --gpu (absent, with the reason, without a
  // device), or the cpu backend when asked for explicitly (tests). Hot blocks are promoted into
  // it by the mover below; engines open its segments through <socket>.hbm.
  const int devices = cuda::DeviceCount();
  if (devices == 0) {
    spdlog::info("no CUDA device: running without a CUDA HBM tier");
  } else {
    spdlog::info("{} CUDA device(s)", devices);
  }
  std::unique_ptr<DevicePool> hbm_pool;
  std::unique_ptr<HbmHandleServer> hbm_server;
  std::unique_ptr<BackgroundLoop> hbm_mover;
  cuda::PinnedHostRange pinned_arena;  // cuda backend: the arena is page-locked for its copies
  if (config.hbm_capacity > 0) {
    std::string absent;
    if (config.hbm_backend == "cpu") {
      auto pool = CreateCpuDevicePool(config.hbm_capacity, config.hbm_segment);
      if (!pool.ok()) return Fail(pool.status());
      hbm_pool = std::move(*pool);
    } else if (devices == 0) {
      absent = "absent: no CUDA device (or driver) on this machine";
    } else if (config.gpu >= devices) {
      absent = absl::StrFormat("absent: --gpu %d, but this machine has %d device(s)", config.gpu,
                               devices);
    } else {
      auto pool = CreateCudaDevicePool(config.hbm_capacity, config.hbm_segment, config.gpu);
      if (!pool.ok()) return Fail(pool.status());
      hbm_pool = std::move(*pool);
      auto pinned = cuda::PinHostRange((*arena)->base(), (*arena)->size());
      if (pinned.ok()) {
        pinned_arena = std::move(*pinned);
      } else {
        spdlog::warn("hbm: DRAM arena not page-locked ({}); HBM copies go through pageable memory",
                     pinned.status().ToString());
      }
    }
    if (!absent.empty()) {
      TierCounters hbm;
      hbm.name = "hbm";
      hbm.status = absent;
      spdlog::warn("--hbm-capacity {}: HBM tier {}", FormatBytes(config.hbm_capacity), absent);
      info.extra_tiers.push_back(hbm);
    } else {
      store.AttachHbm(hbm_pool.get(), (*arena)->base());
      const std::string hbm_socket = socket + ".hbm";
      absl::StatusOr<std::unique_ptr<HbmHandleServer>> started;
      {
        ScopedUmask owner_only(0177);
        started = HbmHandleServer::Start(hbm_socket, hbm_pool.get(), (*arena)->generation());
      }
      if (!started.ok()) return Fail(started.status());
      hbm_server = std::move(*started);
      if (auto s = OpenSocketToGroup(hbm_socket, config.socket_gid); !s.ok()) return Fail(s);
      info.hbm.socket_path = hbm_socket;
      info.hbm.backend = hbm_pool->backend();
      info.hbm.device = hbm_pool->device();
      info.hbm.segments = hbm_pool->num_segments();
      info.hbm.segment_bytes = hbm_pool->segment_bytes();
      hbm_mover = std::make_unique<BackgroundLoop>(absl::Milliseconds(5),
                                                   [&store] { return store.PromoteSome(32) > 0; });
      spdlog::info("hbm tier: {} backend, {} in {} segment(s){}", hbm_pool->backend(),
                   FormatBytes(hbm_pool->capacity()), hbm_pool->num_segments(),
                   hbm_pool->device() >= 0 ? absl::StrFormat(" on device %d", hbm_pool->device())
                                           : std::string());
    }
  }
  // --- end HBM tier -----------------------------------------------------------------------------
  // The weight cache (issue 6): chunks in the store, the weights disk, fetches through the cluster.
  WeightOptions weight_options;
  weight_options.chunk_size = config.weight_chunk_size;
  weight_options.capacity = config.weight_capacity;
  weight_options.origin_readers = config.weight_origin_readers;
  weight_options.disk_dir = config.weight_dir;
  weight_options.disk_capacity = config.weight_disk_capacity;
  weight_options.open_origin = [origin_options =
                                    OriginOptions{config.weight_ca_file}](const std::string& uri) {
    return OpenOrigin(uri, origin_options);
  };
  auto weights = WeightCache::Create(weight_options, &store, (*arena)->base(), cluster.get(),
                                     GrpcWeightPeerConnector(config.node_id));
  if (!weights.ok()) return Fail(weights.status());
  WeightsService weights_service(weights->get());
  WeightPeerService weight_peer_service(weights->get());

  RateSampler rates(&store, /*period_ms=*/1000);
  KvTierService service(&store, info, &rates);
  std::unique_ptr<PeerService> peer_service;
  std::unique_ptr<EtcdMembership> membership;
  if (cluster) {
    peer_service = std::make_unique<PeerService>(cluster.get(), config.max_batch);
    service.AttachCluster(cluster.get(), [&membership, etcd = config.etcd]() {
      if (!membership) return MembershipStatus{etcd.empty() ? "static" : "etcd " + etcd, "ok"};
      const EtcdMembershipState state = membership->State();
      if (state.connected) return MembershipStatus{"etcd " + etcd, "ok"};
      return MembershipStatus{
          "etcd " + etcd, absl::StrFormat("etcd unreachable since %s (%s), keeping the last view",
                                          absl::FormatTime("%Y-%m-%d %H:%M:%S UTC",
                                                           absl::FromUnixMillis(state.since_ms),
                                                           absl::UTCTimeZone()),
                                          state.last_error)};
    });
  }
  // Ends expired leases, so a killed client's pins and reserved slots go within a period.
  BackgroundLoop reaper(absl::Milliseconds(config.reaper_period_ms), [&store] {
    if (size_t n = store.ExpireLeases(); n > 0) spdlog::debug("ended {} expired leases", n);
    return false;
  });

  // --- operations (issue 8): /metrics, /healthz, /readyz --------------------------------------
  // Started before the gRPC server, so probes see "not ready" rather than nothing; stopped
  // before anything it reads goes (it is declared after all of it).
  std::atomic<bool> serving{false}, stopping{false};
  std::unique_ptr<MetricsServer> metrics;
  if (!config.metrics_listen.empty()) {
    MetricsServer::Handlers handlers;
    handlers.metrics = [&] {
      MetricsSources sources;
      sources.node_id = config.node_id;
      sources.version = KVTIER_VERSION;
      sources.uptime_seconds = static_cast<double>(store.NowMs() - info.started_ms) / 1000.0;
      sources.store = store.Stats();
      sources.extra_tiers = info.extra_tiers;
      if (cluster) sources.cluster = cluster->View();
      sources.weights = (*weights)->Counters();
      sources.request_durations = {{"lookup", service.lookup_latency().Snapshot()},
                                   {"acquire", service.acquire_latency().Snapshot()}};
      return RenderKvtierMetrics(sources);
    };
    handlers.ready = [&]() -> absl::Status {
      if (stopping.load()) return absl::UnavailableError("stopping");
      if (!serving.load()) return absl::UnavailableError("the gRPC server is not serving yet");
      if (cluster && cluster->roster_version() == 0) {
        return absl::UnavailableError(
            config.etcd.empty() ? "no cluster roster yet"
                                : "no cluster roster yet (waiting for etcd " + config.etcd + ")");
      }
      return absl::OkStatus();
    };
    auto started = MetricsServer::Start(config.metrics_listen, std::move(handlers));
    if (!started.ok()) return Fail(started.status());
    metrics = std::move(*started);
  }
  // --- end operations ---------------------------------------------------------------------------

  unlink(socket.c_str());  // a stale socket file from a killed daemon
  grpc::ServerBuilder builder;
  // With namespace restrictions the unix socket is ours (UnixPeerListener, below), so that each
  // call's uid and groups are known.
  const bool restricted = access_policy->restricted();
  if (!restricted) builder.AddListeningPort("unix:" + socket, grpc::InsecureServerCredentials());
  int tcp_port = 0;
  if (!config.listen.empty()) {
    builder.AddListeningPort(
        config.listen, tls ? MutualTlsServerCredentials(*tls) : grpc::InsecureServerCredentials(),
        &tcp_port);
  }
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(MakeRequestLogFactory({config.slow_request_ms}));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  // Set once the listener runs (calls over TCP may come before); read by gRPC's threads.
  std::unique_ptr<UnixPeerListener> unix_peers;
  std::atomic<const UnixPeerListener*> unix_peers_ptr{nullptr};
  if (restricted) {
    service.AttachAccessPolicy(&*access_policy,
                               [&unix_peers_ptr](const grpc::ServerContextBase& ctx) {
                                 return IdentifyCaller(ctx, unix_peers_ptr.load());
                               });
  }
  builder.RegisterService(&service);
  if (peer_service) builder.RegisterService(peer_service.get());
  builder.RegisterService(&weights_service);
  if (cluster) builder.RegisterService(&weight_peer_service);
  std::unique_ptr<grpc::Server> server;
  {
    ScopedUmask owner_only(0177);
    server = builder.BuildAndStart();
    if (server && restricted) {
      auto listening = UnixPeerListener::Start(socket, server.get());
      if (!listening.ok()) return Fail(listening.status());
      unix_peers = std::move(*listening);
      unix_peers_ptr.store(unix_peers.get());
    }
  }
  if (!server || (!config.listen.empty() && tcp_port == 0)) {
    return Fail(absl::FailedPreconditionError(
        absl::StrFormat("cannot serve on unix:%s%s (in use, or no permission?)", socket,
                        config.listen.empty() ? "" : " and " + config.listen)));
  }
  if (auto s = OpenSocketToGroup(socket, config.socket_gid); !s.ok()) return Fail(s);
  if (static_roster) {
    if (auto s = cluster->SetRoster(*static_roster); !s.ok()) return Fail(s);
  } else if (cluster) {
    // etcd: register under the address peers can reach (the real port when --listen said 0).
    const std::string host = config.listen.substr(0, config.listen.rfind(':'));
    EtcdMembership::Options etcd;
    etcd.endpoint = config.etcd;
    etcd.cluster = config.cluster;
    etcd.self_id = config.node_id;
    etcd.self_address = absl::StrFormat("%s:%d", host, tcp_port);
    etcd.ttl_s = config.etcd_ttl_s;
    ClusterNode* node = cluster.get();
    etcd.on_change = [node](const Roster& roster) {
      if (auto s = node->SetRoster(roster); !s.ok()) {
        spdlog::warn("cluster: roster version {} not taken: {}", roster.version, s.ToString());
      }
    };
    auto started = EtcdMembership::Start(std::move(etcd));
    if (!started.ok()) return Fail(started.status());
    membership = std::move(*started);
  }
  serving.store(true);
  spdlog::info("tiers: {}{}", hbm_pool ? "HBM, " : "", nvme ? "DRAM, NVMe" : "DRAM only");
  // The real port, when --listen asked for port 0.
  const std::string listening =
      (config.listen.empty()
           ? ""
           : absl::StrFormat(" listen=%s:%d", config.listen.substr(0, config.listen.rfind(':')),
                             tcp_port)) +
      (tls ? " tls=mutual" : "") + (restricted ? " namespaces=restricted" : "");
  const std::string nvme_text =
      nvme ? absl::StrFormat(" nvme=%s", FormatBytes(nvme->Counters().capacity_bytes)) : "";
  const std::string cluster_text =
      !cluster        ? ""
      : static_roster ? absl::StrFormat(" cluster=static:%d", static_roster->members.size())
                      : absl::StrFormat(" cluster=etcd:%s", config.etcd);
  const std::string metrics_text =
      metrics ? absl::StrFormat(" metrics=%s:%d",
                                config.metrics_listen.substr(0, config.metrics_listen.rfind(':')),
                                metrics->port())
              : "";
  const std::string hbm_text =
      hbm_pool
          ? absl::StrFormat(" hbm=%s(%s)", FormatBytes(hbm_pool->capacity()), hbm_pool->backend())
          : "";
  std::printf("kvtierd ready: node=%s socket=%s dram=%s%s%s%s%s%s pid=%d\n", config.node_id.c_str(),
              config.socket_path.c_str(), FormatBytes((*arena)->size()).c_str(), hbm_text.c_str(),
              nvme_text.c_str(), listening.c_str(), cluster_text.c_str(), metrics_text.c_str(),
              getpid());
  std::fflush(stdout);

  int sig = 0;
  sigwait(&signals, &sig);
  spdlog::info("{} received: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");
  stopping.store(true);  // /readyz answers 503 from here on
  // In-flight calls get up to a second to finish (ours never block, so they finish at once);
  // then they are cancelled. gRPC 1.51 also waits out the whole grace period while any client
  // keeps an idle connection open, so it is kept short.
  membership.reset();  // leaves the roster at once (revokes its etcd lease)
  if (unix_peers) unix_peers->StopAccepting();  // no new connections for the server from here on
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  server->Wait();
  unix_peers.reset();  // after the last call that could look its caller up
  if (metrics) metrics->Stop();
  weights->reset();  // its workers use the store and the cluster
  mover.reset();     // before the store and the device it writes to
  hbm_mover.reset();
  hbm_server.reset();
  if (cluster) {
    store.SetListener(nullptr);
    cluster.reset();  // waits out its calls in flight, before the transport they use
  }
  unlink(socket.c_str());
  spdlog::info("stopped");
  return 0;
}

}  // namespace
}  // namespace kvtier

int main(int argc, char** argv) { return kvtier::Run(argc, argv); }
