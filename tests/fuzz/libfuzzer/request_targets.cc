// The per-method fuzz targets (see service_harness.h): parse, call, check the answer.
#include <chrono>
#include <set>

#include "absl/strings/str_format.h"
#include "common/block_key.h"
#include "tests/fuzz/libfuzzer/service_harness.h"

namespace kvtier::fuzz {
namespace {

void Deadline(grpc::ClientContext* ctx) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
}

// Keys in a request: how many, when the field is a whole number of keys.
size_t KeyCount(const std::string& keys) { return keys.size() / 16; }

template <typename Message>
bool Parse(const uint8_t* data, size_t size, Message* m) {
  return m->ParseFromArray(data, static_cast<int>(size));
}

// An arena offset answered for a block: inside the arena and page-aligned.
void CheckOffset(const char* method, uint64_t offset, uint64_t block_bytes) {
  if (offset % 4096 != 0 || offset >= kArenaBytes || block_bytes > kArenaBytes - offset) {
    Fail(method, absl::StrFormat("offset %d of a %d-byte block is outside the %d-byte arena",
                                 offset, block_bytes, kArenaBytes));
  }
}

// A lease id of the request through the harness's aliases.
template <typename Ids>
void AliasLeases(Ids* ids) {
  for (auto& id : *ids) id = Harness::Get().Lease(id);
}

}  // namespace

int FuzzFieldless(const uint8_t* data, size_t size) {
  // The requests without fields: the first byte picks one, the rest is its (unknown) fields.
  if (size == 0) return -1;
  Harness& h = Harness::Get();
  grpc::ClientContext ctx;
  Deadline(&ctx);
  const uint8_t* body = data + 1;
  const size_t n = size - 1;
  switch (data[0] % 4) {
    case 0: {
      v1::ArenaInfoRequest req;
      v1::ArenaInfoResponse resp;
      if (!Parse(body, n, &req)) return -1;
      if (!h.CheckStatus(h.kvtier().GetArenaInfo(&ctx, req, &resp), "GetArenaInfo")) {
        Fail("GetArenaInfo", "failed");
      }
      break;
    }
    case 1: {
      v1::ListNamespacesRequest req;
      v1::ListNamespacesResponse resp;
      if (!Parse(body, n, &req)) return -1;
      if (!h.CheckStatus(h.kvtier().ListNamespaces(&ctx, req, &resp), "ListNamespaces") ||
          resp.namespaces_size() < 1) {
        Fail("ListNamespaces", "failed or without the baseline namespace");
      }
      break;
    }
    case 2: {
      v1::StatsRequest req;
      v1::StatsResponse resp;
      if (!Parse(body, n, &req)) return -1;
      if (!h.CheckStatus(h.kvtier().Stats(&ctx, req, &resp), "Stats") || resp.tiers_size() < 1) {
        Fail("Stats", "failed or without tiers");
      }
      for (const v1::TierStats& t : resp.tiers()) {
        if (t.used_bytes() > t.capacity_bytes()) Fail("Stats", t.name() + " above its capacity");
      }
      break;
    }
    default: {
      v1::ClusterStatusRequest req;
      v1::ClusterStatusResponse resp;
      if (!Parse(body, n, &req)) return -1;
      if (!h.CheckStatus(h.kvtier().ClusterStatus(&ctx, req, &resp), "ClusterStatus") ||
          resp.members_size() != 3) {
        Fail("ClusterStatus", "failed or not three members");
      }
    }
  }
  h.Reset();
  return 0;
}

int FuzzRegisterNamespace(const uint8_t* data, size_t size) {
  v1::RegisterNamespaceRequest req;
  if (!Parse(data, size, &req)) return -1;
  Harness& h = Harness::Get();
  v1::RegisterNamespaceResponse first;
  {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    if (!h.CheckStatus(h.kvtier().RegisterNamespace(&ctx, req, &first), "RegisterNamespace")) {
      return 0;
    }
  }
  if (first.namespace_id() == 0 || first.block_bytes() == 0 ||
      first.block_bytes() > kMaxBlockBytes) {
    Fail("RegisterNamespace",
         absl::StrFormat("id %d with %d-byte blocks", first.namespace_id(), first.block_bytes()));
  }
  // The same layout again: the same namespace, not a new one.
  v1::RegisterNamespaceResponse again;
  grpc::ClientContext ctx;
  Deadline(&ctx);
  if (!h.CheckStatus(h.kvtier().RegisterNamespace(&ctx, req, &again), "RegisterNamespace") ||
      again.namespace_id() != first.namespace_id() || again.created() ||
      again.block_bytes() != first.block_bytes()) {
    Fail("RegisterNamespace", "registering the same layout twice gave another answer");
  }
  h.Reset();
  return 0;
}

int FuzzLookupPrefix(const uint8_t* data, size_t size) {
  v1::LookupRequest req;
  if (!Parse(data, size, &req)) return -1;
  Harness& h = Harness::Get();
  v1::LookupResponse resp;
  grpc::ClientContext ctx;
  Deadline(&ctx);
  if (h.CheckStatus(h.kvtier().LookupPrefix(&ctx, req, &resp), "LookupPrefix")) {
    if (resp.prefix_blocks() > KeyCount(req.keys()) ||
        resp.tiers_size() != static_cast<int>(resp.prefix_blocks())) {
      Fail("LookupPrefix",
           absl::StrFormat("prefix %d with %d tiers for %d keys", resp.prefix_blocks(),
                           resp.tiers_size(), KeyCount(req.keys())));
    }
    for (int t : resp.tiers()) {
      if (t == v1::TIER_NONE || !v1::Tier_IsValid(t))
        Fail("LookupPrefix", "a present key without a tier");
    }
  }
  h.Reset();
  return 0;
}

int FuzzAllocate(const uint8_t* data, size_t size) {
  v1::AllocateRequest req;
  if (!Parse(data, size, &req)) return -1;
  Harness& h = Harness::Get();
  v1::AllocateResponse resp;
  grpc::ClientContext ctx;
  Deadline(&ctx);
  if (h.CheckStatus(h.kvtier().Allocate(&ctx, req, &resp), "Allocate")) {
    if (resp.offsets_size() != static_cast<int>(KeyCount(req.keys()))) {
      Fail("Allocate",
           absl::StrFormat("%d offsets for %d keys", resp.offsets_size(), KeyCount(req.keys())));
    }
    std::set<uint64_t> slots;
    for (uint64_t offset : resp.offsets()) {
      if (offset == kExistsOffset) continue;
      CheckOffset("Allocate", offset, resp.block_bytes());
      if (!slots.insert(offset).second) Fail("Allocate", "two keys got the same slot");
    }
    if (!slots.empty() && resp.lease_id() == 0) Fail("Allocate", "slots without a lease");
  }
  h.Reset();
  return 0;
}

int FuzzCommit(const uint8_t* data, size_t size) {
  v1::CommitRequest req;
  if (!Parse(data, size, &req)) return -1;
  Harness& h = Harness::Get();
  req.set_lease_id(h.Lease(req.lease_id()));
  v1::CommitResponse resp;
  grpc::ClientContext ctx;
  Deadline(&ctx);
  if (h.CheckStatus(h.kvtier().Commit(&ctx, req, &resp), "Commit") && resp.committed() > 8) {
    Fail("Commit", absl::StrFormat("%d committed; no lease holds more than 8", resp.committed()));
  }
  h.Reset();
  return 0;
}

int FuzzAcquire(const uint8_t* data, size_t size) {
  v1::AcquireRequest req;
  if (!Parse(data, size, &req)) return -1;
  Harness& h = Harness::Get();
  v1::AcquireResponse resp;
  grpc::ClientContext ctx;
  Deadline(&ctx);
  if (h.CheckStatus(h.kvtier().Acquire(&ctx, req, &resp), "Acquire")) {
    if (resp.offsets_size() > static_cast<int>(KeyCount(req.keys())) ||
        (resp.lease_id() == 0) != (resp.offsets_size() == 0)) {
      Fail("Acquire", absl::StrFormat("%d offsets under lease %d for %d keys", resp.offsets_size(),
                                      resp.lease_id(), KeyCount(req.keys())));
    }
    for (uint64_t offset : resp.offsets()) CheckOffset("Acquire", offset, resp.block_bytes());
  }
  h.Reset();
  return 0;
}

int FuzzPrefetch(const uint8_t* data, size_t size) {
  v1::PrefetchRequest req;
  if (!Parse(data, size, &req)) return -1;
  Harness& h = Harness::Get();
  v1::PrefetchResponse resp;
  grpc::ClientContext ctx;
  Deadline(&ctx);
  if (h.CheckStatus(h.kvtier().Prefetch(&ctx, req, &resp), "Prefetch") &&
      resp.present() > KeyCount(req.keys())) {
    Fail("Prefetch", "more present than asked for");
  }
  h.Reset();
  return 0;
}

int FuzzRelease(const uint8_t* data, size_t size) {
  v1::ReleaseRequest req;
  if (!Parse(data, size, &req)) return -1;
  Harness& h = Harness::Get();
  AliasLeases(req.mutable_lease_ids());
  v1::ReleaseResponse resp;
  grpc::ClientContext ctx;
  Deadline(&ctx);
  if (h.CheckStatus(h.kvtier().Release(&ctx, req, &resp), "Release") &&
      resp.released() > static_cast<uint32_t>(req.lease_ids_size())) {
    Fail("Release", "more released than named");
  }
  h.Reset();
  return 0;
}

int FuzzDrop(const uint8_t* data, size_t size) {
  v1::DropRequest req;
  if (!Parse(data, size, &req)) return -1;
  Harness& h = Harness::Get();
  v1::DropResponse resp;
  grpc::ClientContext ctx;
  Deadline(&ctx);
  if (h.CheckStatus(h.kvtier().Drop(&ctx, req, &resp), "Drop") && !req.all() &&
      resp.dropped() + resp.busy() + resp.missing() != KeyCount(req.keys())) {
    Fail("Drop", absl::StrFormat("%d dropped + %d busy + %d missing for %d keys", resp.dropped(),
                                 resp.busy(), resp.missing(), KeyCount(req.keys())));
  }
  h.Reset();
  return 0;
}

int FuzzListBlocks(const uint8_t* data, size_t size) {
  v1::ListBlocksRequest req;
  if (!Parse(data, size, &req)) return -1;
  Harness& h = Harness::Get();
  v1::ListBlocksResponse resp;
  grpc::ClientContext ctx;
  Deadline(&ctx);
  const uint32_t limit = req.limit() == 0 ? 1000 : req.limit();
  if (h.CheckStatus(h.kvtier().ListBlocks(&ctx, req, &resp), "ListBlocks") &&
      static_cast<uint32_t>(resp.blocks_size()) > limit) {
    Fail("ListBlocks", "more blocks than the limit");
  }
  h.Reset();
  return 0;
}

int FuzzHello(const uint8_t* data, size_t size) {
  v1::HelloRequest req;
  if (!Parse(data, size, &req)) return -1;
  Harness& h = Harness::Get();
  v1::HelloResponse resp;
  grpc::ClientContext ctx;
  Deadline(&ctx);
  // Answered whatever the caller's roster.
  if (!h.CheckStatus(h.peer().Hello(&ctx, req, &resp), "Hello") || resp.node_id() != "self" ||
      resp.roster_version() != kRosterVersion) {
    Fail("Hello", "not answered with this node's id and roster");
  }
  h.Reset();
  return 0;
}

int FuzzUpdateDirectory(const uint8_t* data, size_t size) {
  v1::UpdateDirectoryRequest req;
  if (!Parse(data, size, &req)) return -1;
  Harness& h = Harness::Get();
  v1::UpdateDirectoryResponse resp;
  grpc::ClientContext ctx;
  Deadline(&ctx);
  if (h.CheckStatus(h.peer().UpdateDirectory(&ctx, req, &resp), "UpdateDirectory")) {
    size_t keys = 0;
    for (const auto& b : req.gained()) keys += KeyCount(b.keys());
    for (const auto& b : req.lost()) keys += KeyCount(b.keys());
    if (resp.applied() > keys) Fail("UpdateDirectory", "more applied than sent");
    // Take back what was gained, so the directory does not grow from input to input.
    v1::UpdateDirectoryRequest undo;
    *undo.mutable_header() = req.header();
    *undo.mutable_lost() = req.gained();
    grpc::ClientContext undo_ctx;
    Deadline(&undo_ctx);
    if (!h.CheckStatus(h.peer().UpdateDirectory(&undo_ctx, undo, &resp), "UpdateDirectory")) {
      Fail("UpdateDirectory", "taking back an accepted update was refused");
    }
  }
  h.Reset();
  return 0;
}

int FuzzLookupDirectory(const uint8_t* data, size_t size) {
  v1::LookupDirectoryRequest req;
  if (!Parse(data, size, &req)) return -1;
  Harness& h = Harness::Get();
  v1::LookupDirectoryResponse resp;
  grpc::ClientContext ctx;
  Deadline(&ctx);
  if (h.CheckStatus(h.peer().LookupDirectory(&ctx, req, &resp), "LookupDirectory") &&
      resp.holders_size() != static_cast<int>(KeyCount(req.keys()))) {
    Fail("LookupDirectory", "not one holder list per key");
  }
  h.Reset();
  return 0;
}

int FuzzPin(const uint8_t* data, size_t size) {
  v1::PinRequest req;
  if (!Parse(data, size, &req)) return -1;
  Harness& h = Harness::Get();
  v1::PinResponse resp;
  grpc::ClientContext ctx;
  Deadline(&ctx);
  if (h.CheckStatus(h.peer().Pin(&ctx, req, &resp), "Pin")) {
    if (resp.offsets_size() != resp.checksums_size() ||
        resp.offsets_size() > static_cast<int>(KeyCount(req.keys())) ||
        (resp.lease_id() == 0) != (resp.offsets_size() == 0)) {
      Fail("Pin", absl::StrFormat("%d offsets, %d checksums under lease %d for %d keys",
                                  resp.offsets_size(), resp.checksums_size(), resp.lease_id(),
                                  KeyCount(req.keys())));
    }
    for (uint64_t offset : resp.offsets()) CheckOffset("Pin", offset, resp.block_bytes());
  }
  h.Reset();
  return 0;
}

int FuzzUnpin(const uint8_t* data, size_t size) {
  v1::UnpinRequest req;
  if (!Parse(data, size, &req)) return -1;
  Harness& h = Harness::Get();
  AliasLeases(req.mutable_lease_ids());
  v1::UnpinResponse resp;
  grpc::ClientContext ctx;
  Deadline(&ctx);
  if (h.CheckStatus(h.peer().Unpin(&ctx, req, &resp), "Unpin") &&
      resp.released() > static_cast<uint32_t>(req.lease_ids_size())) {
    Fail("Unpin", "more released than named");
  }
  h.Reset();
  return 0;
}

}  // namespace kvtier::fuzz
