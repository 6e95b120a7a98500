#include "server/service/kvtier_service.h"

#include <chrono>

#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "common/block_key.h"
#include "server/service/proto_convert.h"

namespace kvtier {
namespace {

// Finishes the call with `status` and returns the reactor, as every handler ends.
grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpc(status));
  return reactor;
}

// Runs `body` (returning absl::Status) and finishes the call with its result.
template <typename Body>
grpc::ServerUnaryReactor* Handle(grpc::CallbackServerContext* ctx, Body&& body) {
  return Done(ctx, body());
}

// Finishes a call and records its duration since `start` (the handler's entry) in `histogram`.
// Copyable, so the asynchronous paths (cluster lookups, NVMe reads) carry it to their end.
class TimedFinish {
 public:
  TimedFinish(grpc::ServerUnaryReactor* reactor, LatencyHistogram* histogram)
      : reactor_(reactor), histogram_(histogram), start_(std::chrono::steady_clock::now()) {}
  void operator()(const grpc::Status& status) const {
    histogram_->Observe(absl::FromChrono(std::chrono::steady_clock::now() - start_));
    reactor_->Finish(status);
  }

 private:
  grpc::ServerUnaryReactor* reactor_;
  LatencyHistogram* histogram_;
  std::chrono::steady_clock::time_point start_;
};

#define KVTIER_ASSIGN_OR_RETURN_STATUS(lhs, expr) \
  auto lhs##_or = (expr);                         \
  if (!lhs##_or.ok()) return lhs##_or.status();   \
  auto& lhs = *lhs##_or

}  // namespace

absl::Status KvTierService::CheckNamespace(const grpc::ServerContextBase& ctx, uint64_t ns,
                                           std::string_view field) {
  if (policy_ == nullptr || !policy_->restricted()) return absl::OkStatus();
  absl::StatusOr<std::string> model = store_->NamespaceModel(ns);
  if (!model.ok()) return absl::OkStatus();  // not registered: the call itself says so
  return policy_->Check(identify_(ctx), *model, field, absl::StrFormat("namespace %016x", ns));
}

absl::Status KvTierService::CheckLeases(const grpc::ServerContextBase& ctx,
                                        std::span<const uint64_t> lease_ids,
                                        std::string_view field) {
  if (policy_ == nullptr || !policy_->restricted()) return absl::OkStatus();
  for (uint64_t id : lease_ids) {
    if (std::optional<uint64_t> ns = store_->LeaseNamespace(id)) {
      if (auto s = CheckNamespace(ctx, *ns, field); !s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* KvTierService::GetArenaInfo(grpc::CallbackServerContext* ctx,
                                                      const v1::ArenaInfoRequest*,
                                                      v1::ArenaInfoResponse* resp) {
  resp->set_fd_socket_path(info_.fd_socket_path);
  resp->set_arena_bytes(info_.arena_bytes);
  resp->set_generation(info_.arena_generation);
  resp->set_node_id(info_.node_id);
  resp->set_version(info_.version);
  if (!info_.hbm.socket_path.empty()) {
    resp->set_hbm_socket_path(info_.hbm.socket_path);
    resp->set_hbm_backend(info_.hbm.backend);
    resp->set_hbm_device(info_.hbm.device);
    resp->set_hbm_segments(info_.hbm.segments);
    resp->set_hbm_segment_bytes(info_.hbm.segment_bytes);
  }
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* KvTierService::RegisterNamespace(grpc::CallbackServerContext* ctx,
                                                           const v1::RegisterNamespaceRequest* req,
                                                           v1::RegisterNamespaceResponse* resp) {
  return Handle(ctx, [&]() -> absl::Status {
    if (!req->has_layout()) return absl::InvalidArgumentError("layout: missing");
    if (policy_ != nullptr && policy_->restricted()) {
      if (auto s = policy_->Check(identify_(*ctx), req->layout().model_id(), "layout.model_id",
                                  "a namespace");
          !s.ok()) {
        return s;
      }
    }
    bool created = false;
    KVTIER_ASSIGN_OR_RETURN_STATUS(record,
                                   store_->RegisterNamespace(FromProto(req->layout()), &created));
    resp->set_namespace_id(record->id);
    resp->set_block_bytes(record->block_bytes);
    resp->set_created(created);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* KvTierService::ListNamespaces(grpc::CallbackServerContext* ctx,
                                                        const v1::ListNamespacesRequest*,
                                                        v1::ListNamespacesResponse* resp) {
  const bool restricted = policy_ != nullptr && policy_->restricted();
  const Caller caller = restricted ? identify_(*ctx) : Caller{};
  for (const NamespaceSnapshot& ns : store_->ListNamespaces()) {
    if (restricted && !policy_->Allows(caller, ns.layout.model_id)) continue;
    v1::NamespaceInfo* info = resp->add_namespaces();
    info->set_namespace_id(ns.id);
    ToProto(ns.layout, info->mutable_layout());
    info->set_block_bytes(ns.block_bytes);
    info->set_blocks(ns.blocks);
    info->set_bytes(ns.blocks * ns.block_bytes);
  }
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* KvTierService::LookupPrefix(grpc::CallbackServerContext* ctx,
                                                      const v1::LookupRequest* req,
                                                      v1::LookupResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const TimedFinish finish(reactor, &lookup_latency_);
  if (auto s = CheckNamespace(*ctx, req->namespace_id()); !s.ok()) {
    finish(ToGrpc(s));
    return reactor;
  }
  auto keys = DecodeKeys(req->keys(), "keys");
  absl::StatusOr<LookupAnswer> local =
      keys.ok() ? store_->Lookup(req->namespace_id(), *keys) : keys.status();
  if (!local.ok()) {
    finish(ToGrpc(local.status()));
    return reactor;
  }
  auto answer = [finish, resp](LookupAnswer a) {
    resp->set_prefix_blocks(a.prefix_blocks);
    for (TierId t : a.tiers) resp->add_tiers(ToProto(t));
    finish(grpc::Status::OK);
  };
  if (cluster_ == nullptr || local->prefix_blocks == keys->size()) {
    answer(std::move(*local));
  } else {
    // The rest of the chain may be held elsewhere in the pool: ask its directories.
    cluster_->Lookup(req->namespace_id(), std::move(*keys), std::move(*local), answer);
  }
  return reactor;
}

grpc::ServerUnaryReactor* KvTierService::Allocate(grpc::CallbackServerContext* ctx,
                                                  const v1::AllocateRequest* req,
                                                  v1::AllocateResponse* resp) {
  return Handle(ctx, [&]() -> absl::Status {
    if (auto s = CheckNamespace(*ctx, req->namespace_id()); !s.ok()) return s;
    KVTIER_ASSIGN_OR_RETURN_STATUS(keys, DecodeKeys(req->keys(), "keys"));
    std::optional<Key128> parent;
    if (!req->parent_key().empty()) {
      KVTIER_ASSIGN_OR_RETURN_STATUS(p, DecodeKeys(req->parent_key(), "parent_key"));
      if (p.size() != 1) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "parent_key: %d bytes, expected one 16-byte key", req->parent_key().size()));
      }
      parent = p[0];
    }
    KVTIER_ASSIGN_OR_RETURN_STATUS(
        grant, store_->Allocate(req->namespace_id(), keys, parent, req->lease_ms()));
    resp->set_lease_id(grant.lease_id);
    resp->mutable_offsets()->Assign(grant.offsets.begin(), grant.offsets.end());
    resp->set_block_bytes(grant.block_bytes);
    resp->set_lease_ms(grant.lease_ms);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* KvTierService::Commit(grpc::CallbackServerContext* ctx,
                                                const v1::CommitRequest* req,
                                                v1::CommitResponse* resp) {
  return Handle(ctx, [&]() -> absl::Status {
    const uint64_t lease_id = req->lease_id();
    if (auto s = CheckLeases(*ctx, {&lease_id, 1}, "lease_id"); !s.ok()) return s;
    KVTIER_ASSIGN_OR_RETURN_STATUS(keys, DecodeKeys(req->keys(), "keys"));
    std::vector<uint64_t> checksums(req->checksums().begin(), req->checksums().end());
    KVTIER_ASSIGN_OR_RETURN_STATUS(n, store_->Commit(req->lease_id(), keys, checksums));
    resp->set_committed(n);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* KvTierService::Acquire(grpc::CallbackServerContext* ctx,
                                                 const v1::AcquireRequest* req,
                                                 v1::AcquireResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  const TimedFinish finish(reactor, &acquire_latency_);
  if (auto s = CheckNamespace(*ctx, req->namespace_id()); !s.ok()) {
    finish(ToGrpc(s));
    return reactor;
  }
  auto keys = DecodeKeys(req->keys(), "keys");
  if (!keys.ok()) {
    finish(ToGrpc(keys.status()));
    return reactor;
  }
  // Blocks on NVMe are read into DRAM first: the call finishes when they are there.
  auto acquire = [store = store_, finish, resp, ns = req->namespace_id(),
                  lease_ms = req->lease_ms(),
                  accept_hbm = req->accept_hbm()](const std::vector<Key128>& keys) {
    store->AcquireAsync(
        ns, keys, lease_ms,
        [finish, resp](absl::StatusOr<ReadGrant> grant) {
          if (grant.ok()) {
            resp->set_lease_id(grant->lease_id);
            resp->mutable_offsets()->Assign(grant->offsets.begin(), grant->offsets.end());
            resp->set_block_bytes(grant->block_bytes);
            resp->set_lease_ms(grant->lease_ms);
            for (const HbmRef& h : grant->hbm) {
              resp->add_hbm_segments(h.segment);
              resp->add_hbm_offsets(h.offset);
            }
          }
          finish(ToGrpc(grant.status()));
        },
        accept_hbm);
  };
  absl::StatusOr<LookupAnswer> local =
      cluster_ == nullptr ? LookupAnswer{} : store_->Peek(req->namespace_id(), *keys);
  if (cluster_ == nullptr || !local.ok() || local->prefix_blocks == keys->size()) {
    acquire(*keys);
    return reactor;
  }
  // Blocks past the local prefix that other daemons hold are pulled into local DRAM first.
  auto shared_keys = std::make_shared<std::vector<Key128>>(std::move(*keys));
  cluster_->PullMissing(req->namespace_id(), *shared_keys, local->prefix_blocks,
                        [acquire, shared_keys] { acquire(*shared_keys); });
  return reactor;
}

grpc::ServerUnaryReactor* KvTierService::Prefetch(grpc::CallbackServerContext* ctx,
                                                  const v1::PrefetchRequest* req,
                                                  v1::PrefetchResponse* resp) {
  return Handle(ctx, [&]() -> absl::Status {
    if (auto s = CheckNamespace(*ctx, req->namespace_id()); !s.ok()) return s;
    KVTIER_ASSIGN_OR_RETURN_STATUS(keys, DecodeKeys(req->keys(), "keys"));
    KVTIER_ASSIGN_OR_RETURN_STATUS(present, store_->Prefetch(req->namespace_id(), keys));
    resp->set_present(present);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* KvTierService::Release(grpc::CallbackServerContext* ctx,
                                                 const v1::ReleaseRequest* req,
                                                 v1::ReleaseResponse* resp) {
  return Handle(ctx, [&]() -> absl::Status {
    std::vector<uint64_t> ids(req->lease_ids().begin(), req->lease_ids().end());
    if (auto s = CheckLeases(*ctx, ids, "lease_ids"); !s.ok()) return s;
    KVTIER_ASSIGN_OR_RETURN_STATUS(n, store_->Release(ids));
    resp->set_released(n);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* KvTierService::Drop(grpc::CallbackServerContext* ctx,
                                              const v1::DropRequest* req, v1::DropResponse* resp) {
  return Handle(ctx, [&]() -> absl::Status {
    if (auto s = CheckNamespace(*ctx, req->namespace_id()); !s.ok()) return s;
    KVTIER_ASSIGN_OR_RETURN_STATUS(keys, DecodeKeys(req->keys(), "keys"));
    KVTIER_ASSIGN_OR_RETURN_STATUS(counts, store_->Drop(req->namespace_id(), keys, req->all()));
    resp->set_dropped(counts.dropped);
    resp->set_busy(counts.busy);
    resp->set_missing(counts.missing);
    return absl::OkStatus();
  });
}

grpc::ServerUnaryReactor* KvTierService::Stats(grpc::CallbackServerContext* ctx,
                                               const v1::StatsRequest*, v1::StatsResponse* resp) {
  StoreStats s = store_->Stats();
  resp->set_node_id(info_.node_id);
  resp->set_version(info_.version);
  resp->set_uptime_ms(static_cast<uint64_t>(store_->NowMs() - info_.started_ms));
  resp->set_arena_pages(info_.arena_pages);
  for (const TierCounters& t : s.tiers) {
    v1::TierStats* tier = resp->add_tiers();
    ToProto(t, tier);
    if (rates_ != nullptr) {
      TierRates r = rates_->Rates(t.name);
      tier->set_read_bytes_per_s(r.read_bytes_per_s);
      tier->set_write_bytes_per_s(r.write_bytes_per_s);
    }
  }
  for (const TierCounters& t : info_.extra_tiers) ToProto(t, resp->add_tiers());
  resp->set_namespaces(s.namespaces);
  resp->set_leases(s.leases);
  resp->set_lookups(s.lookups);
  resp->set_lookup_keys(s.lookup_keys);
  resp->set_lookup_hit_keys(s.lookup_hit_keys);
  resp->set_rejected_writes(s.rejected_writes);
  if (cluster_ != nullptr) {
    ClusterView v = cluster_->View();
    resp->set_remote_hit_keys(v.remote_hit_keys);
    resp->set_remote_pulls(v.remote_pulls);
    resp->set_remote_pull_bytes(v.remote_pull_bytes);
    resp->set_remote_pull_failures(v.remote_pull_failures);
  }
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* KvTierService::ClusterStatus(grpc::CallbackServerContext* ctx,
                                                       const v1::ClusterStatusRequest*,
                                                       v1::ClusterStatusResponse* resp) {
  resp->set_self_id(info_.node_id);
  if (cluster_ == nullptr) {
    resp->set_enabled(false);
    resp->set_membership("none");
    resp->set_membership_status("single node (no --peers or --etcd)");
    return Done(ctx, absl::OkStatus());
  }
  resp->set_enabled(true);
  if (membership_) {
    MembershipStatus m = membership_();
    resp->set_membership(m.kind);
    resp->set_membership_status(m.status);
  }
  ClusterView v = cluster_->View();
  resp->set_roster_version(v.roster_version);
  resp->set_transport(cluster_->transport_mode());
  resp->set_directory_entries(v.directory_entries);
  resp->set_stale_roster_rejects(v.stale_roster_rejects);
  for (const MemberView& m : v.members) {
    v1::ClusterMember* out = resp->add_members();
    out->set_id(m.member.id);
    out->set_address(m.member.address);
    out->set_slot(m.member.slot);
    out->set_state(m.state);
    out->set_bytes_in(m.bytes_in);
    out->set_pulls(m.pulls);
    out->set_calls(m.calls);
    out->set_errors(m.errors);
    out->set_latency_ms_p50(m.latency_ms_p50);
    out->set_latency_ms_p99(m.latency_ms_p99);
    out->set_last_error(m.last_error);
  }
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* KvTierService::ListBlocks(grpc::CallbackServerContext* ctx,
                                                    const v1::ListBlocksRequest* req,
                                                    v1::ListBlocksResponse* resp) {
  return Handle(ctx, [&]() -> absl::Status {
    // 20000 blocks of ~70 bytes stay well inside gRPC's default 4 MiB message limit.
    constexpr uint32_t kDefaultLimit = 1000, kMaxLimit = 20000;
    uint32_t limit = req->limit() == 0 ? kDefaultLimit : req->limit();
    if (limit > kMaxLimit) {
      return absl::InvalidArgumentError(
          absl::StrFormat("limit: %d is over the maximum of %d", limit, kMaxLimit));
    }
    bool truncated = false;
    if (!v1::Tier_IsValid(req->tier())) {
      return absl::InvalidArgumentError(absl::StrFormat("tier: %d is not a tier", req->tier()));
    }
    const TierId tier = static_cast<TierId>(static_cast<int>(req->tier()));
    if (req->namespace_id() != 0) {
      if (auto s = CheckNamespace(*ctx, req->namespace_id()); !s.ok()) return s;
    } else if (policy_ != nullptr && !policy_->AllowsEverything(identify_(*ctx))) {
      return absl::PermissionDeniedError(absl::StrFormat(
          "namespace_id: listing every namespace's blocks needs every model allowed; %s may use "
          "some models only (--allow-models): name a namespace",
          DescribeCaller(identify_(*ctx))));
    }
    for (const BlockSnapshot& b :
         store_->ListBlocks(req->namespace_id(), limit, &truncated, tier)) {
      v1::BlockInfo* info = resp->add_blocks();
      info->set_namespace_id(b.id.ns);
      std::string key;
      AppendKey(b.id.key, &key);
      info->set_key(std::move(key));
      info->set_tier(ToProto(b.tier));
      info->set_bytes(b.bytes);
      info->set_state(BlockStateName(b.state));
      info->set_readers(b.readers);
      info->set_hits(b.hits);
      info->set_age_ms(b.age_ms);
    }
    resp->set_truncated(truncated);
    return absl::OkStatus();
  });
}

}  // namespace kvtier
