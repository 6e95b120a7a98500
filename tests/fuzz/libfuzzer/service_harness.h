// The world every request fuzzer runs in: one BlockStore with a 16 MiB arena, a ClusterNode in a
// three-member static roster whose two other members are unreachable, and the real KvTierService
// and PeerService behind an in-process gRPC server. A fuzz input is the serialized request of
// one method; the harness parses it (protobuf), sends it through gRPC to our handlers (which
// decode keys, check every field and call the store or the cluster), and checks the answer:
//   - a failed call has a message, and its code is one our handlers give (never INTERNAL,
//     UNKNOWN, UNAVAILABLE, DEADLINE_EXCEEDED);
//   - a successful answer is consistent with its request (one offset per key, offsets inside the
//     arena and page-aligned, prefixes no longer than the keys asked for, ...);
//   - after the input, once every lease is past its deadline, the store's books balance: no
//     lease is left, every block is ready and unread, and the DRAM tier's used bytes are exactly
//     the slots of its blocks.
// A violated check prints what was wrong and aborts, which libFuzzer reports as a crash.
//
// State between inputs: Reset() ends every lease, drops every block and puts the baseline back:
// blocks {i, 7} for i < 24 in the baseline namespace (so lookups, acquires and pins find some),
// one open write lease over keys {100 + i, 7}, i < 8, and one read lease over the first 8
// baseline blocks. Lease ids grow from input to input, so a lease id below kLeaseAliases in a
// fuzzed request stands for one of those (0: the write lease, 1: the read lease); any other id is
// sent as it is.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "common/namespace_layout.h"
#include "kvtier/v1/kvtier.grpc.pb.h"
#include "kvtier/v1/peer.grpc.pb.h"
#include "server/cluster/cluster_node.h"
#include "server/service/kvtier_service.h"
#include "server/service/peer_service.h"
#include "server/store/block_store.h"

namespace kvtier::fuzz {

inline constexpr uint64_t kBlockBytes = 4096;
inline constexpr uint64_t kArenaBytes = 16ULL << 20;
inline constexpr uint32_t kMaxBatch = 256;
inline constexpr uint64_t kRosterVersion = 77;
inline constexpr uint64_t kBaselineBlocks = 24;
inline constexpr uint64_t kLeaseAliases = 2;

// The baseline namespace: opaque 4 KiB blocks.
NamespaceLayout BaselineLayout();

class Harness {
 public:
  // The process-wide harness, made on first use.
  static Harness& Get();

  uint64_t ns() const { return ns_; }
  v1::KvTier::Stub& kvtier() { return *kvtier_; }
  v1::Peer::Stub& peer() { return *peer_; }
  // A lease id from a fuzzed request: an alias below kLeaseAliases becomes the real id.
  uint64_t Lease(uint64_t id) const;

  // Checks a call's status (see above); returns s.ok().
  bool CheckStatus(const grpc::Status& s, const char* method);
  // Ends the input: checks the books and puts the baseline back.
  void Reset();

 private:
  Harness();
  void Baseline();

  std::atomic<int64_t> now_ms_{1'000'000};
  std::vector<std::byte> arena_;
  std::unique_ptr<BlockStore> store_;
  std::unique_ptr<ArenaPuller> puller_;
  std::unique_ptr<ClusterNode> cluster_;
  std::unique_ptr<KvTierService> kvtier_service_;
  std::unique_ptr<PeerService> peer_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::KvTier::Stub> kvtier_;
  std::unique_ptr<v1::Peer::Stub> peer_;
  uint64_t ns_ = 0;
  uint64_t leases_[kLeaseAliases] = {};
};

// Fails the input: prints `what` and aborts.
[[noreturn]] void Fail(const char* method, const std::string& what);

// One fuzz target per request message: parses `data` as that message and runs it through the
// service. Returns -1 when the bytes are not a message of that type (libFuzzer then keeps them
// out of the corpus), else 0.
// GetArenaInfo, ListNamespaces, Stats, ClusterStatus: the first byte picks one.
int FuzzFieldless(const uint8_t* data, size_t size);
int FuzzRegisterNamespace(const uint8_t* data, size_t size);
int FuzzLookupPrefix(const uint8_t* data, size_t size);
int FuzzAllocate(const uint8_t* data, size_t size);
int FuzzCommit(const uint8_t* data, size_t size);
int FuzzAcquire(const uint8_t* data, size_t size);
int FuzzPrefetch(const uint8_t* data, size_t size);
int FuzzRelease(const uint8_t* data, size_t size);
int FuzzDrop(const uint8_t* data, size_t size);
int FuzzListBlocks(const uint8_t* data, size_t size);
int FuzzHello(const uint8_t* data, size_t size);
int FuzzUpdateDirectory(const uint8_t* data, size_t size);
int FuzzLookupDirectory(const uint8_t* data, size_t size);
int FuzzPin(const uint8_t* data, size_t size);
int FuzzUnpin(const uint8_t* data, size_t size);

}  // namespace kvtier::fuzz
