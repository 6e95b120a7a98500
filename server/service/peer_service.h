// The peer gRPC service (kvtier.v1.Peer, callback API): what other daemons of the cluster call.
// Decodes and checks each request (a roster version that differs from ours is refused, see
// peer.proto), then hands it to the ClusterNode.
#pragma once

#include <grpcpp/security/credentials.h>

#include <memory>
#include <string>

#include "kvtier/v1/peer.grpc.pb.h"
#include "server/cluster/cluster_node.h"

namespace kvtier {

class PeerService final : public v1::Peer::CallbackService {
 public:
  PeerService(ClusterNode* cluster, uint32_t max_batch_keys)
      : cluster_(cluster), max_batch_keys_(max_batch_keys) {}

  grpc::ServerUnaryReactor* Hello(grpc::CallbackServerContext* ctx, const v1::HelloRequest* req,
                                  v1::HelloResponse* resp) override;
  grpc::ServerUnaryReactor* UpdateDirectory(grpc::CallbackServerContext* ctx,
                                            const v1::UpdateDirectoryRequest* req,
                                            v1::UpdateDirectoryResponse* resp) override;
  grpc::ServerUnaryReactor* LookupDirectory(grpc::CallbackServerContext* ctx,
                                            const v1::LookupDirectoryRequest* req,
                                            v1::LookupDirectoryResponse* resp) override;
  grpc::ServerUnaryReactor* Pin(grpc::CallbackServerContext* ctx, const v1::PinRequest* req,
                                v1::PinResponse* resp) override;
  grpc::ServerUnaryReactor* Unpin(grpc::CallbackServerContext* ctx, const v1::UnpinRequest* req,
                                  v1::UnpinResponse* resp) override;

 private:
  absl::Status CheckHeader(const v1::PeerHeader& header, bool has_header);

  ClusterNode* cluster_;
  uint32_t max_batch_keys_;
};

// A PeerConnector over gRPC, with every call bounded by `timeout_ms`. Channels use `credentials`
// (mutual TLS: MutualTlsChannelCredentials), or are insecure when it is null (loopback or a
// trusted cluster network). `tls_server_name`, when not empty, is the name checked in the peers'
// certificates instead of the host of their address.
PeerConnector GrpcPeerConnector(std::string self_id, int timeout_ms,
                                std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr,
                                std::string tls_server_name = "");

}  // namespace kvtier
