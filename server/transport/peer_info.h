// The blob a daemon publishes so that peers can pull from its DRAM arena: its UCX worker address,
// the packed remote key of its arena and the arena's geometry, in an envelope of our own (magic,
// version, lengths, XXH3-64 checksum) so that garbage is rejected before UCX ever parses it.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kvtier::transport {

struct PeerInfo {
  uint64_t instance_id = 0;    // random per transport instance
  uint64_t host_id = 0;        // same value on the same host (kernel boot id): shared memory works
  uint64_t pid_namespace = 0;  // inode of /proc/self/ns/pid: `pid` means the same process there
  uint32_t pid = 0;            // the serving process, to notice its death on this host
  uint64_t arena_base = 0;     // virtual address of the arena in its process (RMA target address)
  uint64_t arena_bytes = 0;
  std::string worker_address;  // ucp_worker_get_address()
  std::string rkey;            // ucp_rkey_pack() of the arena
};

// Limits on the variable parts; a real worker address or rkey is a few hundred bytes.
inline constexpr size_t kMaxPeerInfoField = 64 * 1024;

// Serializes `info` (fields must be non-empty and within kMaxPeerInfoField).
std::string EncodePeerInfo(const PeerInfo& info);

// Parses a blob from EncodePeerInfo. INVALID_ARGUMENT (saying what is wrong) for anything else:
// wrong size, magic, version or lengths, checksum mismatch, an empty field or a zero-size arena.
absl::StatusOr<PeerInfo> DecodePeerInfo(std::string_view blob);

// A stable id of this host's running kernel (hash of /proc/sys/kernel/random/boot_id; of the
// host name when that cannot be read).
uint64_t LocalHostId();
// Inode of this process's pid namespace (0 when unknown).
uint64_t LocalPidNamespace();

}  // namespace kvtier::transport
