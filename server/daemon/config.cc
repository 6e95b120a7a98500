#include "server/daemon/config.h"

#include <grp.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "common/size.h"
#include "server/dram/arena.h"

namespace kvtier {

uint64_t DefaultDramCapacity() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGE_SIZE);
  uint64_t quarter = pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * page / 4 : 0;
  return std::clamp<uint64_t>(quarter, 64ULL << 20, 4ULL << 30);
}

namespace {

absl::Status CheckListen(const std::string& listen, const char* flag = "--listen") {
  const size_t colon = listen.rfind(':');
  uint32_t port = 0;
  if (colon == std::string::npos || colon == 0 ||
      !absl::SimpleAtoi(listen.substr(colon + 1), &port) || port > 65535) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: '%s' is not HOST:PORT (e.g. 127.0.0.1:7070; port 0 picks a free one)", flag, listen));
  }
  return absl::OkStatus();
}

// The gid of group `name`, or an error naming --socket-group.
absl::StatusOr<int64_t> ResolveSocketGroup(const std::string& name) {
  group entry{};
  group* found = nullptr;
  std::vector<char> buffer(16384);
  const int err = getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
  if (err != 0 || found == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--socket-group: no group named '%s'%s", name,
                        err != 0 ? ": " + std::string(strerror(err)) : ""));
  }
  return static_cast<int64_t>(found->gr_gid);
}

absl::Status CheckSocketPath(const std::string& path) {
  if (path.empty()) return absl::InvalidArgumentError("--socket: must not be empty");
  // The fd socket beside it has ".arena" appended; both must fit in sockaddr_un.
  const size_t max = sizeof(sockaddr_un{}.sun_path) - 1 - std::string(".arena").size();
  if (path.size() > max) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--socket: '%s' is %d bytes; a unix socket path here may have at most %d",
                        path, path.size(), max));
  }
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec || access(dir.c_str(), W_OK) != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--socket: cannot create or write the directory '%s'%s", dir.string(),
                        ec ? ": " + ec.message() : ""));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DaemonConfig> ParseDaemonFlags(int argc, char** argv, bool* exit_now,
                                              std::string* message) {
  *exit_now = false;
  DaemonConfig config;
  std::string dram = "";
  CLI::App app{"kvtierd: KV-cache tiering daemon"};
  app.set_version_flag("--version", std::string(KVTIER_VERSION));
  app.set_config("--config", "", "Read flags from a TOML or INI file (keys are flag names)");
  app.add_option("--socket", config.socket_path, "Client unix socket")->capture_default_str();
  app.add_option("--listen", config.listen, "Also serve on TCP HOST:PORT (admin)");
  app.add_option("--socket-group", config.socket_group,
                 "Group given read/write on the client sockets (mode 0660; default: the "
                 "daemon's group)");
  app.add_option("--metrics-listen", config.metrics_listen,
                 "Serve /metrics (Prometheus), /healthz and /readyz over HTTP on HOST:PORT "
                 "(off by default; port 0 picks a free one)");
  // Security (issue 8): mutual TLS, namespace restrictions.
  app.add_option("--tls-cert", config.tls_cert,
                 "PEM certificate for TLS on --listen and towards peers (with --tls-key, --tls-ca: "
                 "the TCP listener then requires client certificates signed by --tls-ca)");
  app.add_option("--tls-key", config.tls_key, "PEM private key of --tls-cert");
  app.add_option("--tls-ca", config.tls_ca,
                 "PEM CA certificate(s) that clients' and peers' certificates must chain to");
  app.add_option("--tls-server-name", config.tls_server_name,
                 "Name expected in peers' certificates (default: the host of their address)");
  app.add_option("--allow-models", config.allow_models,
                 "Restrict namespaces: PRINCIPAL=PATTERN[,PATTERN...] with PRINCIPAL uid:N, "
                 "gid:N, user:NAME, group:NAME, cert:NAME or *, PATTERN a glob on the model id; "
                 "repeatable (default: every caller may use every model)")
      ->take_all();
  app.add_option("--dram-capacity", dram,
                 "DRAM tier size, e.g. 512MiB, 4GiB (default: 1/4 of RAM, at most 4 GiB)");
  app.add_option("--arena-pages", config.arena_pages,
                 "Pages behind the DRAM arena: auto (reserved huge pages if there are enough, "
                 "else transparent huge pages if the kernel allows them for shared memory, else "
                 "4 KiB), 4k, thp or hugetlb")
      ->capture_default_str();
  app.add_option("--log-level", config.log_level, "trace, debug, info, warn, error, off")
      ->capture_default_str();
  app.add_option("--log-format", config.log_format, "text or json (one object per line)")
      ->capture_default_str();
  app.add_option("--slow-request-ms", config.slow_request_ms,
                 "Log calls that take at least this long, with their request id (-1: never)")
      ->capture_default_str();
  app.add_option("--node-id", config.node_id, "Name of this node (default: host name)");
  app.add_option("--lease-ms", config.lease_ms, "Default lease on acquired/allocated blocks")
      ->capture_default_str();
  app.add_option("--max-lease-ms", config.max_lease_ms, "Longest lease a client may ask for")
      ->capture_default_str();
  app.add_option("--max-batch", config.max_batch, "Most keys in one request")
      ->capture_default_str();
  app.add_option("--reaper-period-ms", config.reaper_period_ms,
                 "How often expired leases are ended")
      ->capture_default_str();
  std::string nvme_capacity;
  app.add_option("--nvme-path", config.nvme_path,
                 "NVMe tier: a file (created and preallocated) or a block device, opened O_DIRECT");
  app.add_option("--nvme-capacity", nvme_capacity, "NVMe tier size, e.g. 64GiB");
  app.add_option("--nvme-queue-depth", config.nvme_queue_depth, "io_uring operations in flight")
      ->capture_default_str();
  app.add_option("--demote-watermark", config.demote_watermark,
                 "Fraction of DRAM in use above which cold blocks are written to NVMe")
      ->capture_default_str();
  app.add_option("--nvme-admit", config.nvme_admit,
                 "Which cold blocks go to NVMe: 'reused' (read at least once, or heading a "
                 "cached chain) or 'all'")
      ->capture_default_str();
  app.add_option("--nvme-fail-writes-after", config.nvme_fail_writes_after,
                 "Testing only: NVMe writes fail with EIO after this many")
      ->group("");  // hidden from --help
  std::string hbm_capacity;
  app.add_option("--hbm-capacity", hbm_capacity,
                 "HBM tier: a device memory pool of this size on --gpu (needs a CUDA device)");
  app.add_option("--gpu", config.gpu, "CUDA device of the HBM tier")->capture_default_str();
  app.add_option("--hbm-backend", config.hbm_backend,
                 "HBM tier memory: 'cuda' (device memory, CUDA IPC) or 'cpu' (shared memory "
                 "standing in for it, for testing without a GPU)")
      ->capture_default_str();
  app.add_option("--hbm-promote-hits", config.hbm_promote_hits,
                 "A block is promoted into HBM when a read brings its hits to this (0: never)")
      ->capture_default_str();
  std::string hbm_segment;
  app.add_option("--hbm-segment", hbm_segment,
                 "Largest HBM pool segment (one allocation and one IPC handle each); default 1GiB");
  app.add_option("--peers", config.peers,
                 "Cluster with a static roster: id@host:port,... (this node included; every "
                 "daemon gets the same list). Needs --listen (or takes its own entry's address)");
  app.add_option("--etcd", config.etcd, "Cluster membership through etcd at host:port");
  app.add_option("--cluster", config.cluster, "Cluster name (etcd key prefix)")
      ->capture_default_str();
  app.add_option("--etcd-ttl", config.etcd_ttl_s,
                 "Seconds a dead daemon stays in the etcd roster (its lease TTL)")
      ->capture_default_str();
  app.add_option("--peer-timeout-ms", config.peer_timeout_ms,
                 "Deadline of every call and transfer to another daemon")
      ->capture_default_str();
  app.add_option("--ucx-tls", config.ucx_tls,
                 "UCX transports for daemon-to-daemon transfers, e.g. tcp or posix,cma "
                 "(default: UCX's choice, or $UCX_TLS)");
  app.add_option("--ucx-net-devices", config.ucx_net_devices, "UCX network devices for tcp")
      ->capture_default_str();
  app.add_option("--ucx-protocol", config.ucx_protocol,
                 "How pulls move bytes: auto (measured best for the transport), get (RMA) or "
                 "am (active-message rendezvous)")
      ->capture_default_str();
  // Weight cache (issue 6).
  std::string weight_chunk_size, weight_capacity, weight_disk_capacity;
  app.add_option("--weight-chunk-size", weight_chunk_size,
                 "Weight files are cached in chunks of this size (default 4MiB; the same on every "
                 "daemon of a pool)");
  app.add_option("--weight-capacity", weight_capacity,
                 "DRAM held for weight chunks, out of KV churn's reach (default: 1/4 of "
                 "--dram-capacity)");
  app.add_option("--weight-origin-readers", config.weight_origin_readers,
                 "Daemons of the pool that may read one chunk from its origin at once (its "
                 "owners)")
      ->capture_default_str();
  app.add_option("--weight-ca-file", config.weight_ca_file,
                 "PEM file of the CAs that https weight origins must chain to (default: the "
                 "system's CA bundle); certificates are always verified");
  app.add_option("--weight-dir", config.weight_dir,
                 "Directory keeping weight chunks across restarts (default: <--nvme-path>.weights "
                 "with an NVMe tier, else none)");
  app.add_option("--weight-disk-capacity", weight_disk_capacity,
                 "Most bytes of chunks in --weight-dir (default: --nvme-capacity, else 64GiB)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    *exit_now = true;
    *message = app.help();
    return config;
  } catch (const CLI::CallForVersion&) {
    *exit_now = true;
    *message = std::string("kvtierd ") + KVTIER_VERSION;
    return config;
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(e.what());
  }

  if (dram.empty()) {
    config.dram_capacity = DefaultDramCapacity();
  } else {
    auto size = ParseSize(dram, "--dram-capacity");
    if (!size.ok()) return size.status();
    if (*size < (1ULL << 20)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--dram-capacity: '%s' is below the 1 MiB minimum", dram));
    }
    config.dram_capacity = *size;
  }
  if (auto pages = ParseArenaPages(config.arena_pages); !pages.ok()) return pages.status();
  if (config.node_id.empty()) {
    char host[256] = {};
    gethostname(host, sizeof(host) - 1);
    config.node_id = host[0] ? host : "kvtierd";
  }
  if (auto s = CheckSocketPath(config.socket_path); !s.ok()) return s;
  if (!config.listen.empty()) {
    if (auto s = CheckListen(config.listen); !s.ok()) return s;
  }
  if (!config.metrics_listen.empty()) {
    if (auto s = CheckListen(config.metrics_listen, "--metrics-listen"); !s.ok()) return s;
  }
  if (!config.socket_group.empty()) {
    auto gid = ResolveSocketGroup(config.socket_group);
    if (!gid.ok()) return gid.status();
    config.socket_gid = *gid;
  }
  if (!config.tls_cert.empty() || !config.tls_key.empty() || !config.tls_ca.empty()) {
    if (config.listen.empty() && config.peers.empty()) {
      return absl::InvalidArgumentError(
          "--tls-cert: TLS is for the TCP listener; give --listen (or --peers) too");
    }
  } else if (!config.tls_server_name.empty()) {
    return absl::InvalidArgumentError("--tls-server-name: needs --tls-cert, --tls-key, --tls-ca");
  }
  if (config.log_format != "text" && config.log_format != "json") {
    return absl::InvalidArgumentError(
        absl::StrFormat("--log-format: '%s' is not text or json", config.log_format));
  }
  if (config.slow_request_ms < -1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--slow-request-ms: %d is not -1 (never) or a duration", config.slow_request_ms));
  }
  if (!hbm_capacity.empty()) {
    auto size = ParseSize(hbm_capacity, "--hbm-capacity");
    if (!size.ok()) return size.status();
    config.hbm_capacity = *size;
  }
  if (!hbm_segment.empty()) {
    auto size = ParseSize(hbm_segment, "--hbm-segment");
    if (!size.ok()) return size.status();
    config.hbm_segment = *size;
  }
  // Checked here, before the DRAM arena is reserved: the pool is cut into 4 MiB slabs.
  constexpr uint64_t kHbmMin = 4ULL << 20;
  if (config.hbm_capacity > 0 && config.hbm_capacity < kHbmMin) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--hbm-capacity: %s is below the 4 MiB minimum", hbm_capacity));
  }
  if (config.hbm_segment < kHbmMin) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--hbm-segment: %s is below the 4 MiB minimum", hbm_segment));
  }
  if (config.hbm_backend != "cuda" && config.hbm_backend != "cpu") {
    return absl::InvalidArgumentError(
        absl::StrFormat("--hbm-backend: '%s' is not 'cuda' or 'cpu'", config.hbm_backend));
  }
  if (config.gpu < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--gpu: %d is not a device index", config.gpu));
  }
  if (!config.peers.empty() && !config.etcd.empty()) {
    return absl::InvalidArgumentError("--peers and --etcd: give one membership, not both");
  }
  if (!config.etcd.empty()) {
    if (auto s = CheckListen(config.etcd); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--etcd: '%s' is not HOST:PORT", config.etcd));
    }
    if (config.listen.empty()) {
      return absl::InvalidArgumentError(
          "--listen: needed with --etcd (the address other daemons reach this one at)");
    }
  }
  if (config.cluster.empty() || config.cluster.find('/') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--cluster: '%s' must be a non-empty name without '/'", config.cluster));
  }
  if (config.etcd_ttl_s < 1 || config.etcd_ttl_s > 3600) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--etcd-ttl: %d is not between 1 and 3600", config.etcd_ttl_s));
  }
  if (config.peer_timeout_ms < 10 || config.peer_timeout_ms > 600'000) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--peer-timeout-ms: %d is not between 10 and 600000", config.peer_timeout_ms));
  }
  if (config.ucx_protocol != "auto" && config.ucx_protocol != "get" &&
      config.ucx_protocol != "am") {
    return absl::InvalidArgumentError(
        absl::StrFormat("--ucx-protocol: '%s' is not auto, get or am", config.ucx_protocol));
  }
  if (config.lease_ms == 0 || config.lease_ms > config.max_lease_ms) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--lease-ms: %d must be > 0 and at most --max-lease-ms (%d)",
                        config.lease_ms, config.max_lease_ms));
  }
  if (config.max_batch == 0 || config.max_batch > 65536) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--max-batch: %d must be between 1 and 65536", config.max_batch));
  }
  if (!config.nvme_path.empty() || !nvme_capacity.empty()) {
    if (config.nvme_path.empty()) {
      return absl::InvalidArgumentError("--nvme-capacity: given without --nvme-path");
    }
    if (nvme_capacity.empty()) {
      return absl::InvalidArgumentError("--nvme-path: needs --nvme-capacity (e.g. 64GiB)");
    }
    auto size = ParseSize(nvme_capacity, "--nvme-capacity");
    if (!size.ok()) return size.status();
    config.nvme_capacity = *size;
    // Checked again when the device opens; here they fail before any memory is reserved.
    if (config.nvme_capacity < (8ULL << 20)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "--nvme-capacity: '%s' is below the 8 MiB minimum (two 4 MiB regions)", nvme_capacity));
    }
    std::filesystem::path nvme_dir = std::filesystem::path(config.nvme_path).parent_path();
    if (nvme_dir.empty()) nvme_dir = ".";
    std::error_code ec;
    if (!std::filesystem::is_directory(nvme_dir, ec)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("--nvme-path: directory '%s' does not exist", nvme_dir.string()));
    }
  }
  if (config.nvme_queue_depth == 0 || config.nvme_queue_depth > 4096) {
    return absl::InvalidArgumentError("--nvme-queue-depth: must be between 1 and 4096");
  }
  if (config.nvme_admit != "all" && config.nvme_admit != "reused") {
    return absl::InvalidArgumentError(
        absl::StrFormat("--nvme-admit: '%s' is not 'all' or 'reused'", config.nvme_admit));
  }
  if (!(config.demote_watermark > 0 && config.demote_watermark <= 1)) {
    return absl::InvalidArgumentError("--demote-watermark: must be in (0, 1]");
  }
  if (!weight_chunk_size.empty()) {
    auto size = ParseSize(weight_chunk_size, "--weight-chunk-size");
    if (!size.ok()) return size.status();
    config.weight_chunk_size = *size;
  }
  if (config.weight_chunk_size < 4096 || config.weight_chunk_size % 4096 != 0 ||
      config.weight_chunk_size > (256ULL << 20)) {
    return absl::InvalidArgumentError(
        "--weight-chunk-size: must be a multiple of 4KiB between 4KiB and 256MiB");
  }
  if (!weight_capacity.empty()) {
    auto size = ParseSize(weight_capacity, "--weight-capacity");
    if (!size.ok()) return size.status();
    config.weight_capacity = *size;
  } else {
    config.weight_capacity = config.dram_capacity / 4;
  }
  if (config.weight_capacity > config.dram_capacity) {
    return absl::InvalidArgumentError("--weight-capacity: larger than --dram-capacity");
  }
  if (config.weight_origin_readers == 0 || config.weight_origin_readers > 64) {
    return absl::InvalidArgumentError("--weight-origin-readers: must be between 1 and 64");
  }
  if (!config.weight_ca_file.empty() && access(config.weight_ca_file.c_str(), R_OK) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat("--weight-ca-file: cannot read %s: %s",
                                                      config.weight_ca_file, std::strerror(errno)));
  }
  if (config.weight_dir.empty() && !config.nvme_path.empty()) {
    config.weight_dir = config.nvme_path + ".weights";
  }
  if (!weight_disk_capacity.empty()) {
    auto size = ParseSize(weight_disk_capacity, "--weight-disk-capacity");
    if (!size.ok()) return size.status();
    config.weight_disk_capacity = *size;
  } else {
    config.weight_disk_capacity = config.nvme_capacity > 0 ? config.nvme_capacity : (64ULL << 30);
  }
  if (config.reaper_period_ms <= 0 || config.reaper_period_ms > 10'000) {
    return absl::InvalidArgumentError("--reaper-period-ms: must be between 1 and 10000");
  }
  return config;
}

}  // namespace kvtier
