// The client gRPC service (kvtier.v1.KvTier, callback API): decodes and checks each request,
// calls the BlockStore, encodes the answer. Every handler is short and never blocks on IO, so it
// runs on gRPC's callback threads directly.
#pragma once

#include <functional>
#include <span>
#include <string>

#include "kvtier/v1/kvtier.grpc.pb.h"
#include "server/cluster/cluster_node.h"
#include "server/metrics/latency_histogram.h"
#include "server/security/access_policy.h"
#include "server/service/rate_sampler.h"
#include "server/store/block_store.h"

namespace kvtier {

struct ServiceInfo {
  std::string node_id;
  std::string version;
  std::string fd_socket_path;
  uint64_t arena_bytes = 0;
  uint64_t arena_generation = 0;
  int64_t started_ms = 0;  // on the store's clock
  // Tiers the store does not keep but Stats lists (the HBM tier asked for and absent, and why).
  std::vector<TierCounters> extra_tiers;
  // The HBM tier's segment hand-out socket (empty: no HBM tier) and what clients need to know.
  struct Hbm {
    std::string socket_path;
    std::string backend;
    int device = -1;
    uint32_t segments = 0;
    uint64_t segment_bytes = 0;
  } hbm;
  std::string arena_pages;  // Arena::pages_detail(), for Stats
};

// How membership is doing, for `kvtier cluster`.
struct MembershipStatus {
  std::string kind;    // "static" or "etcd <endpoint>"
  std::string status;  // "ok" or why not
};

class KvTierService final : public v1::KvTier::CallbackService {
 public:
  // `rates` (optional) supplies the per-tier rates of Stats.
  KvTierService(BlockStore* store, ServiceInfo info, RateSampler* rates = nullptr)
      : store_(store), info_(std::move(info)), rates_(rates) {}

  // Joins the pool: lookups and acquires reach blocks other daemons hold. Call before serving.
  void AttachCluster(ClusterNode* cluster, std::function<MembershipStatus()> membership) {
    cluster_ = cluster;
    membership_ = std::move(membership);
  }

  // Namespace restrictions (--allow-models): every call naming a namespace or a lease is checked
  // against `policy` for the caller `identify` names; ListNamespaces lists the allowed ones only.
  // Call before serving; `policy` outlives the service.
  void AttachAccessPolicy(const AccessPolicy* policy,
                          std::function<Caller(const grpc::ServerContextBase&)> identify) {
    policy_ = policy;
    identify_ = std::move(identify);
  }

  // Durations of LookupPrefix and Acquire calls, from the handler's entry to its Finish.
  const LatencyHistogram& lookup_latency() const { return lookup_latency_; }
  const LatencyHistogram& acquire_latency() const { return acquire_latency_; }

  grpc::ServerUnaryReactor* GetArenaInfo(grpc::CallbackServerContext* ctx,
                                         const v1::ArenaInfoRequest* req,
                                         v1::ArenaInfoResponse* resp) override;
  grpc::ServerUnaryReactor* RegisterNamespace(grpc::CallbackServerContext* ctx,
                                              const v1::RegisterNamespaceRequest* req,
                                              v1::RegisterNamespaceResponse* resp) override;
  grpc::ServerUnaryReactor* ListNamespaces(grpc::CallbackServerContext* ctx,
                                           const v1::ListNamespacesRequest* req,
                                           v1::ListNamespacesResponse* resp) override;
  grpc::ServerUnaryReactor* LookupPrefix(grpc::CallbackServerContext* ctx,
                                         const v1::LookupRequest* req,
                                         v1::LookupResponse* resp) override;
  grpc::ServerUnaryReactor* Allocate(grpc::CallbackServerContext* ctx,
                                     const v1::AllocateRequest* req,
                                     v1::AllocateResponse* resp) override;
  grpc::ServerUnaryReactor* Commit(grpc::CallbackServerContext* ctx, const v1::CommitRequest* req,
                                   v1::CommitResponse* resp) override;
  grpc::ServerUnaryReactor* Acquire(grpc::CallbackServerContext* ctx, const v1::AcquireRequest* req,
                                    v1::AcquireResponse* resp) override;
  grpc::ServerUnaryReactor* Prefetch(grpc::CallbackServerContext* ctx,
                                     const v1::PrefetchRequest* req,
                                     v1::PrefetchResponse* resp) override;
  grpc::ServerUnaryReactor* Release(grpc::CallbackServerContext* ctx, const v1::ReleaseRequest* req,
                                    v1::ReleaseResponse* resp) override;
  grpc::ServerUnaryReactor* Drop(grpc::CallbackServerContext* ctx, const v1::DropRequest* req,
                                 v1::DropResponse* resp) override;
  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* ctx, const v1::StatsRequest* req,
                                  v1::StatsResponse* resp) override;
  grpc::ServerUnaryReactor* ListBlocks(grpc::CallbackServerContext* ctx,
                                       const v1::ListBlocksRequest* req,
                                       v1::ListBlocksResponse* resp) override;
  grpc::ServerUnaryReactor* ClusterStatus(grpc::CallbackServerContext* ctx,
                                          const v1::ClusterStatusRequest* req,
                                          v1::ClusterStatusResponse* resp) override;

 private:
  // OK when namespaces are not restricted, when the caller may use `ns`'s model, or when `ns` is
  // not registered (the call then fails on that); PERMISSION_DENIED naming `field` otherwise.
  absl::Status CheckNamespace(const grpc::ServerContextBase& ctx, uint64_t ns,
                              std::string_view field = "namespace_id");
  // The same for the namespaces of open leases.
  absl::Status CheckLeases(const grpc::ServerContextBase& ctx, std::span<const uint64_t> lease_ids,
                           std::string_view field);

  BlockStore* store_;
  ServiceInfo info_;
  RateSampler* rates_;
  ClusterNode* cluster_ = nullptr;  // null: a single node
  std::function<MembershipStatus()> membership_;
  LatencyHistogram lookup_latency_;
  LatencyHistogram acquire_latency_;
  const AccessPolicy* policy_ = nullptr;  // null: unrestricted
  std::function<Caller(const grpc::ServerContextBase&)> identify_;
};

}  // namespace kvtier
