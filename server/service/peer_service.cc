#include "server/service/peer_service.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_format.h"
#include "common/block_key.h"
#include "common/status_macros.h"
#include "server/service/proto_convert.h"

namespace kvtier {
namespace {

grpc::ServerUnaryReactor* Done(grpc::CallbackServerContext* ctx, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpc(status));
  return reactor;
}

absl::Status FromGrpc(const grpc::Status& s) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

absl::StatusOr<std::vector<KeyBatch>> DecodeBatches(
    const google::protobuf::RepeatedPtrField<v1::KeyBatch>& batches, const char* field,
    uint32_t max_keys) {
  std::vector<KeyBatch> out;
  size_t total = 0;
  for (int i = 0; i < batches.size(); ++i) {
    const std::string name = absl::StrFormat("%s[%d].keys", field, i);
    ASSIGN_OR_RETURN(std::vector<Key128> keys, DecodeKeys(batches[i].keys(), name));
    total += keys.size();
    if (total > max_keys) {
      return absl::InvalidArgumentError(
          absl::StrFormat("%s: more than %d keys in one update", field, max_keys));
    }
    out.push_back(KeyBatch{batches[i].namespace_id(), std::move(keys)});
  }
  return out;
}

}  // namespace

absl::Status PeerService::CheckHeader(const v1::PeerHeader& header, bool has_header) {
  if (!has_header) return absl::InvalidArgumentError("header: missing");
  if (header.from_id().empty()) return absl::InvalidArgumentError("header.from_id: empty");
  return cluster_->CheckRosterVersion(header.roster_version());
}

grpc::ServerUnaryReactor* PeerService::Hello(grpc::CallbackServerContext* ctx,
                                             const v1::HelloRequest* req, v1::HelloResponse* resp) {
  if (req->has_header() && !req->header().from_id().empty()) {
    cluster_->NoteIncarnation(req->header().from_id(), req->incarnation());
  }
  // Answered whatever the caller's roster: it is how a peer learns ours.
  resp->set_node_id(cluster_->self_id());
  resp->set_roster_version(cluster_->roster_version());
  resp->set_transport_info(cluster_->transport_info());
  resp->set_incarnation(cluster_->incarnation());
  return Done(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* PeerService::UpdateDirectory(grpc::CallbackServerContext* ctx,
                                                       const v1::UpdateDirectoryRequest* req,
                                                       v1::UpdateDirectoryResponse* resp) {
  return Done(ctx, [&]() -> absl::Status {
    RETURN_IF_ERROR(CheckHeader(req->header(), req->has_header()));
    // Only members may say what they hold: a directory never lists a daemon it cannot reach.
    if (!cluster_->IsPeer(req->header().from_id())) {
      return absl::FailedPreconditionError(
          absl::StrFormat("header.from_id: '%s' is not another member of this node's roster",
                          req->header().from_id()));
    }
    // Directory updates are batched by the sender; allow a generous multiple of a client batch.
    const uint32_t max_keys = std::max<uint32_t>(65536, max_batch_keys_) * 2;
    ASSIGN_OR_RETURN(std::vector<KeyBatch> gained,
                     DecodeBatches(req->gained(), "gained", max_keys));
    ASSIGN_OR_RETURN(std::vector<KeyBatch> lost, DecodeBatches(req->lost(), "lost", max_keys));
    resp->set_applied(cluster_->ApplyDirectoryUpdate(req->header().from_id(), gained, lost));
    return absl::OkStatus();
  }());
}

grpc::ServerUnaryReactor* PeerService::LookupDirectory(grpc::CallbackServerContext* ctx,
                                                       const v1::LookupDirectoryRequest* req,
                                                       v1::LookupDirectoryResponse* resp) {
  return Done(ctx, [&]() -> absl::Status {
    RETURN_IF_ERROR(CheckHeader(req->header(), req->has_header()));
    ASSIGN_OR_RETURN(std::vector<Key128> keys, DecodeKeys(req->keys(), "keys"));
    if (keys.size() > max_batch_keys_) {
      return absl::InvalidArgumentError(
          absl::StrFormat("keys: %d keys, at most %d per call", keys.size(), max_batch_keys_));
    }
    for (std::vector<std::string>& holders : cluster_->LookupDirectory(req->namespace_id(), keys)) {
      auto* h = resp->add_holders();
      for (std::string& id : holders) h->add_node_ids(std::move(id));
    }
    return absl::OkStatus();
  }());
}

grpc::ServerUnaryReactor* PeerService::Pin(grpc::CallbackServerContext* ctx,
                                           const v1::PinRequest* req, v1::PinResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::Status checked = CheckHeader(req->header(), req->has_header());
  absl::StatusOr<std::vector<Key128>> keys = DecodeKeys(req->keys(), "keys");
  if (checked.ok() && !keys.ok()) checked = keys.status();
  if (!checked.ok()) {
    reactor->Finish(ToGrpc(checked));
    return reactor;
  }
  cluster_->Pin(req->namespace_id(), std::move(*keys), req->lease_ms(),
                [reactor, resp](absl::StatusOr<PinResult> pin) {
                  if (pin.ok()) {
                    resp->set_lease_id(pin->lease_id);
                    resp->mutable_offsets()->Assign(pin->offsets.begin(), pin->offsets.end());
                    resp->mutable_checksums()->Assign(pin->checksums.begin(), pin->checksums.end());
                    resp->set_block_bytes(pin->block_bytes);
                  }
                  reactor->Finish(ToGrpc(pin.status()));
                });
  return reactor;
}

grpc::ServerUnaryReactor* PeerService::Unpin(grpc::CallbackServerContext* ctx,
                                             const v1::UnpinRequest* req, v1::UnpinResponse* resp) {
  return Done(ctx, [&]() -> absl::Status {
    RETURN_IF_ERROR(CheckHeader(req->header(), req->has_header()));
    std::vector<uint64_t> ids(req->lease_ids().begin(), req->lease_ids().end());
    ASSIGN_OR_RETURN(uint32_t n, cluster_->Unpin(ids));
    resp->set_released(n);
    return absl::OkStatus();
  }());
}

// ---------------------------------------------------------------------------------------------
// The calling side.

namespace {

class GrpcPeerChannel final : public PeerChannel {
 public:
  GrpcPeerChannel(std::string self_id, const Member& member, int timeout_ms,
                  const std::shared_ptr<grpc::ChannelCredentials>& credentials,
                  const std::string& tls_server_name)
      : self_id_(std::move(self_id)), timeout_ms_(timeout_ms) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
    // A restarted peer is reached again within a second, not after gRPC's default backoff
    // (up to two minutes).
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    args.SetInt(GRPC_ARG_DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS, 500);
    if (credentials) {
      if (!tls_server_name.empty()) args.SetSslTargetNameOverride(tls_server_name);
      // gRPC bounds one connection attempt by the "min reconnect backoff" (100 ms above): a TLS
      // handshake with a busy peer can take longer, so it gets the call deadline instead.
      args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, timeout_ms);
    }
    stub_ = v1::Peer::NewStub(grpc::CreateCustomChannel(
        member.address, credentials ? credentials : grpc::InsecureChannelCredentials(), args));
  }

  void Hello(uint64_t roster_version, uint64_t incarnation, Done<PeerHello> done) override {
    auto call = Start<v1::HelloRequest, v1::HelloResponse>(roster_version);
    call->req.set_incarnation(incarnation);
    stub_->async()->Hello(&call->ctx, &call->req, &call->resp,
                          [call, done = std::move(done)](grpc::Status s) {
                            if (!s.ok()) return done(FromGrpc(s));
                            PeerHello h;
                            h.node_id = call->resp.node_id();
                            h.roster_version = call->resp.roster_version();
                            h.transport_info = call->resp.transport_info();
                            h.incarnation = call->resp.incarnation();
                            done(std::move(h));
                          });
  }

  void UpdateDirectory(uint64_t roster_version, std::vector<KeyBatch> gained,
                       std::vector<KeyBatch> lost, Done<uint32_t> done) override {
    auto call = Start<v1::UpdateDirectoryRequest, v1::UpdateDirectoryResponse>(roster_version);
    auto fill = [](const std::vector<KeyBatch>& from, auto* to) {
      for (const KeyBatch& b : from) {
        v1::KeyBatch* out = to->Add();
        out->set_namespace_id(b.ns);
        out->set_keys(EncodeKeys(b.keys.data(), b.keys.size()));
      }
    };
    fill(gained, call->req.mutable_gained());
    fill(lost, call->req.mutable_lost());
    stub_->async()->UpdateDirectory(&call->ctx, &call->req, &call->resp,
                                    [call, done = std::move(done)](grpc::Status s) {
                                      if (!s.ok()) return done(FromGrpc(s));
                                      done(call->resp.applied());
                                    });
  }

  void LookupDirectory(uint64_t roster_version, uint64_t ns, std::vector<Key128> keys,
                       Done<std::vector<std::vector<std::string>>> done) override {
    auto call = Start<v1::LookupDirectoryRequest, v1::LookupDirectoryResponse>(roster_version);
    call->req.set_namespace_id(ns);
    call->req.set_keys(EncodeKeys(keys.data(), keys.size()));
    stub_->async()->LookupDirectory(&call->ctx, &call->req, &call->resp,
                                    [call, done = std::move(done)](grpc::Status s) {
                                      if (!s.ok()) return done(FromGrpc(s));
                                      std::vector<std::vector<std::string>> out;
                                      out.reserve(call->resp.holders_size());
                                      for (const v1::Holders& h : call->resp.holders()) {
                                        out.emplace_back(h.node_ids().begin(), h.node_ids().end());
                                      }
                                      done(std::move(out));
                                    });
  }

  void Pin(uint64_t roster_version, uint64_t ns, std::vector<Key128> keys, uint32_t lease_ms,
           Done<PinResult> done) override {
    auto call = Start<v1::PinRequest, v1::PinResponse>(roster_version);
    call->req.set_namespace_id(ns);
    call->req.set_keys(EncodeKeys(keys.data(), keys.size()));
    call->req.set_lease_ms(lease_ms);
    stub_->async()->Pin(
        &call->ctx, &call->req, &call->resp, [call, done = std::move(done)](grpc::Status s) {
          if (!s.ok()) return done(FromGrpc(s));
          PinResult r;
          r.lease_id = call->resp.lease_id();
          r.offsets.assign(call->resp.offsets().begin(), call->resp.offsets().end());
          r.checksums.assign(call->resp.checksums().begin(), call->resp.checksums().end());
          r.block_bytes = call->resp.block_bytes();
          done(std::move(r));
        });
  }

  void Unpin(uint64_t roster_version, std::vector<uint64_t> lease_ids,
             Done<uint32_t> done) override {
    auto call = Start<v1::UnpinRequest, v1::UnpinResponse>(roster_version);
    call->req.mutable_lease_ids()->Assign(lease_ids.begin(), lease_ids.end());
    stub_->async()->Unpin(&call->ctx, &call->req, &call->resp,
                          [call, done = std::move(done)](grpc::Status s) {
                            if (!s.ok()) return done(FromGrpc(s));
                            done(call->resp.released());
                          });
  }

 private:
  template <typename Req, typename Resp>
  struct Call {
    grpc::ClientContext ctx;
    Req req;
    Resp resp;
  };

  template <typename Req, typename Resp>
  std::shared_ptr<Call<Req, Resp>> Start(uint64_t roster_version) {
    auto call = std::make_shared<Call<Req, Resp>>();
    call->ctx.set_deadline(std::chrono::system_clock::now() +
                           std::chrono::milliseconds(timeout_ms_));
    call->req.mutable_header()->set_roster_version(roster_version);
    call->req.mutable_header()->set_from_id(self_id_);
    return call;
  }

  std::string self_id_;
  int timeout_ms_;
  std::unique_ptr<v1::Peer::Stub> stub_;
};

}  // namespace

PeerConnector GrpcPeerConnector(std::string self_id, int timeout_ms,
                                std::shared_ptr<grpc::ChannelCredentials> credentials,
                                std::string tls_server_name) {
  return [self_id = std::move(self_id), timeout_ms, credentials = std::move(credentials),
          tls_server_name = std::move(tls_server_name)](const Member& m) {
    return std::make_unique<GrpcPeerChannel>(self_id, m, timeout_ms, credentials, tls_server_name);
  };
}

}  // namespace kvtier
