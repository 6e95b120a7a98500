#include "server/transport/peer_info.h"

#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kvtier::transport {
namespace {

constexpr uint32_t kMagic = 0x5554564b;  // "KVTU" read little-endian
constexpr uint16_t kVersion = 1;

// Fixed-size head of the blob; the worker address and the rkey follow it, then the checksum of
// everything before the checksum. Host byte order: peers run on the same architecture (UCX's own
// worker address and rkey formats assume as much).
struct Head {
  uint32_t magic;
  uint16_t version;
  uint16_t reserved;
  uint64_t instance_id;
  uint64_t host_id;
  uint64_t pid_namespace;
  uint32_t pid;
  uint32_t reserved2;
  uint64_t arena_base;
  uint64_t arena_bytes;
  uint32_t address_bytes;
  uint32_t rkey_bytes;
};
static_assert(sizeof(Head) == 64, "no padding in the wire head");

constexpr size_t kChecksumBytes = sizeof(uint64_t);

}  // namespace

std::string EncodePeerInfo(const PeerInfo& info) {
  Head head{};
  head.magic = kMagic;
  head.version = kVersion;
  head.instance_id = info.instance_id;
  head.host_id = info.host_id;
  head.pid_namespace = info.pid_namespace;
  head.pid = info.pid;
  head.arena_base = info.arena_base;
  head.arena_bytes = info.arena_bytes;
  head.address_bytes = static_cast<uint32_t>(info.worker_address.size());
  head.rkey_bytes = static_cast<uint32_t>(info.rkey.size());
  std::string out;
  out.reserve(sizeof(head) + info.worker_address.size() + info.rkey.size() + kChecksumBytes);
  out.append(reinterpret_cast<const char*>(&head), sizeof(head));
  out.append(info.worker_address);
  out.append(info.rkey);
  const uint64_t sum = XXH3_64bits(out.data(), out.size());
  out.append(reinterpret_cast<const char*>(&sum), sizeof(sum));
  return out;
}

absl::StatusOr<PeerInfo> DecodePeerInfo(std::string_view blob) {
  if (blob.size() < sizeof(Head) + kChecksumBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("peer info: ", blob.size(), " bytes, too short to be one"));
  }
  Head head;
  std::memcpy(&head, blob.data(), sizeof(head));
  if (head.magic != kMagic) return absl::InvalidArgumentError("peer info: bad magic");
  if (head.version != kVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("peer info: version ", head.version, ", this build reads ", kVersion));
  }
  if (head.address_bytes == 0 || head.address_bytes > kMaxPeerInfoField || head.rkey_bytes == 0 ||
      head.rkey_bytes > kMaxPeerInfoField) {
    return absl::InvalidArgumentError(absl::StrCat("peer info: bad field lengths (address ",
                                                   head.address_bytes, ", rkey ", head.rkey_bytes,
                                                   ")"));
  }
  const size_t body = sizeof(Head) + head.address_bytes + head.rkey_bytes;
  if (blob.size() != body + kChecksumBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "peer info: ", blob.size(), " bytes where its lengths say ", body + kChecksumBytes));
  }
  uint64_t sum;
  std::memcpy(&sum, blob.data() + body, sizeof(sum));
  if (sum != XXH3_64bits(blob.data(), body)) {
    return absl::InvalidArgumentError("peer info: checksum mismatch");
  }
  if (head.arena_bytes == 0) return absl::InvalidArgumentError("peer info: empty arena");
  PeerInfo info;
  info.instance_id = head.instance_id;
  info.host_id = head.host_id;
  info.pid_namespace = head.pid_namespace;
  info.pid = head.pid;
  info.arena_base = head.arena_base;
  info.arena_bytes = head.arena_bytes;
  info.worker_address.assign(blob.data() + sizeof(Head), head.address_bytes);
  info.rkey.assign(blob.data() + sizeof(Head) + head.address_bytes, head.rkey_bytes);
  return info;
}

uint64_t LocalHostId() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (id.empty()) {
    char name[256] = {};
    gethostname(name, sizeof(name) - 1);
    id = name;
  }
  return XXH3_64bits(id.data(), id.size());
}

uint64_t LocalPidNamespace() {
  struct stat st;
  return stat("/proc/self/ns/pid", &st) == 0 ? static_cast<uint64_t>(st.st_ino) : 0;
}

}  // namespace kvtier::transport
