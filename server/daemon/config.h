// kvtierd's configuration: flags (CLI11), optionally read from a TOML/INI file with --config.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kvtier {

struct DaemonConfig {
  std::string socket_path = "./var/kvtier.sock";
  std::string listen;  // optional HOST:PORT for TCP (admin); port 0 picks a free one
  // Mutual TLS on --listen and between peers (all three files or none; issue 8).
  std::string tls_cert, tls_key, tls_ca;  // PEM files
  std::string tls_server_name;            // name checked in peers' certificates ("" = host)
  std::vector<std::string> allow_models;  // PRINCIPAL=PATTERN,... (server/security/access_policy.h)
  uint64_t dram_capacity = 0;
  std::string arena_pages = "auto";  // auto, 4k, thp, hugetlb (server/dram/arena.h)
  std::string log_level = "info";
  std::string log_format = "text";  // text or json
  int64_t slow_request_ms = 1000;   // log calls at least this long; -1: never
  std::string node_id;
  uint32_t lease_ms = 30'000;
  uint32_t max_lease_ms = 600'000;
  uint32_t max_batch = 4096;
  int reaper_period_ms = 100;
  // NVMe tier: off unless a path is given.
  std::string nvme_path;
  uint64_t nvme_capacity = 0;
  uint32_t nvme_queue_depth = 32;
  double demote_watermark = 0.8;
  std::string nvme_admit = "reused";    // "all" or "reused"
  uint64_t nvme_fail_writes_after = 0;  // test hook: inject EIO after N writes
  // HBM tier: asked for with a capacity; present only with a CUDA device.
  uint64_t hbm_capacity = 0;
  int gpu = 0;
  // "cuda" (default: a device pool on --gpu, absent without a device) or "cpu" (memfd segments
  // standing in for device memory: the whole tier's logic without a GPU, for tests).
  std::string hbm_backend = "cuda";
  uint32_t hbm_promote_hits = 2;      // reads that make a block hot enough for HBM
  uint64_t hbm_segment = 1ULL << 30;  // largest pool segment (one cudaMalloc / memfd each)
  // Cluster: off unless --peers or --etcd is given (not both).
  std::string peers;                // static roster: id@host:port,...
  std::string etcd;                 // etcd endpoint host:port
  std::string cluster = "default";  // cluster name (etcd key prefix)
  int etcd_ttl_s = 5;
  int peer_timeout_ms = 1000;
  std::string ucx_tls;  // "" = UCX's default (or $UCX_TLS)
  std::string ucx_net_devices = "lo";
  std::string ucx_protocol = "auto";  // auto, get, am
  // Operations (issue 8): the HTTP metrics endpoint, off unless given; the group of the sockets.
  std::string metrics_listen;  // HOST:PORT for /metrics, /healthz, /readyz; port 0 picks one
  std::string socket_group;    // group given rw on the client sockets (mode 0660); "" = ours
  int64_t socket_gid = -1;     // socket_group resolved; -1 when not given
  // Weight cache (issue 6).
  uint64_t weight_chunk_size = 4ULL << 20;
  uint64_t weight_capacity = 0;  // DRAM share pinned for weight chunks; default dram/4
  uint32_t weight_origin_readers = 1;
  std::string weight_ca_file;         // PEM CAs for https origins; "" = the system's
  std::string weight_dir;             // chunks kept across restarts; default <nvme-path>.weights
  uint64_t weight_disk_capacity = 0;  // default: --nvme-capacity
};

// Default DRAM capacity: a quarter of physical memory, at most 4 GiB, at least 64 MiB.
uint64_t DefaultDramCapacity();

// Parses argv into a config and checks it. On --help/--version, returns OK with *exit_now set
// and the text in *message; on a bad flag, an INVALID_ARGUMENT error naming it.
absl::StatusOr<DaemonConfig> ParseDaemonFlags(int argc, char** argv, bool* exit_now,
                                              std::string* message);

}  // namespace kvtier
