// The weight cache's gRPC services (weights.proto): Weights for the local clients and the CLI,
// WeightPeer for the other daemons of the cluster. Decodes and checks requests (errors name the
// field), then hands them to the WeightCache, whose workers finish the calls.
#pragma once

#include <string>

#include "kvtier/v1/weights.grpc.pb.h"
#include "server/weights/weight_cache.h"

namespace kvtier {

class WeightsService final : public v1::Weights::CallbackService {
 public:
  explicit WeightsService(WeightCache* cache) : cache_(cache) {}

  grpc::ServerUnaryReactor* OpenFile(grpc::CallbackServerContext* ctx,
                                     const v1::OpenFileRequest* req,
                                     v1::OpenFileResponse* resp) override;
  grpc::ServerUnaryReactor* Read(grpc::CallbackServerContext* ctx, const v1::ReadRequest* req,
                                 v1::ReadResponse* resp) override;
  grpc::ServerUnaryReactor* Prefetch(grpc::CallbackServerContext* ctx,
                                     const v1::PrefetchFileRequest* req,
                                     v1::PrefetchFileResponse* resp) override;
  grpc::ServerUnaryReactor* Pin(grpc::CallbackServerContext* ctx, const v1::PinFileRequest* req,
                                v1::PinFileResponse* resp) override;
  grpc::ServerUnaryReactor* ListFiles(grpc::CallbackServerContext* ctx,
                                      const v1::ListFilesRequest* req,
                                      v1::ListFilesResponse* resp) override;

 private:
  WeightCache* cache_;
};

class WeightPeerService final : public v1::WeightPeer::CallbackService {
 public:
  explicit WeightPeerService(WeightCache* cache) : cache_(cache) {}
  grpc::ServerUnaryReactor* FetchChunk(grpc::CallbackServerContext* ctx,
                                       const v1::FetchChunkRequest* req,
                                       v1::FetchChunkResponse* resp) override;

 private:
  WeightCache* cache_;
};

// WeightPeerChannels over gRPC (insecure; loopback or a trusted cluster network).
WeightPeerConnector GrpcWeightPeerConnector(std::string self_id);

void ToProto(const FileIdentity& f, v1::FileIdentity* p);
FileIdentity FromProto(const v1::FileIdentity& p);

}  // namespace kvtier
