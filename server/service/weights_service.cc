#include "server/service/weights_service.h"

#include <grpcpp/grpcpp.h>

#include <chrono>

#include "absl/strings/str_format.h"
#include "server/service/proto_convert.h"

namespace kvtier {
namespace {

grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* ctx, const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  reactor->Finish(ToGrpc(status));
  return reactor;
}

absl::Status CheckUri(const std::string& uri, const char* field) {
  if (uri.empty()) return absl::InvalidArgumentError(absl::StrFormat("%s: empty", field));
  if (uri.size() > 8192) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: longer than 8192 bytes", field));
  }
  if (uri.find('\0') != std::string::npos || uri.find('\n') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: contains a NUL or newline character", field));
  }
  return absl::OkStatus();
}

// For local clients UNAVAILABLE means "no daemon answers" (the CLI exits 2 on it); an origin or
// peer that does not answer is told apart as ABORTED, with the cause in the message.
grpc::Status ClientStatus(const absl::Status& s) {
  if (s.code() == absl::StatusCode::kUnavailable ||
      s.code() == absl::StatusCode::kDeadlineExceeded) {
    return ToGrpc(absl::AbortedError(s.message()));
  }
  return ToGrpc(s);
}

class GrpcWeightPeerChannel final : public WeightPeerChannel {
 public:
  GrpcWeightPeerChannel(std::string self_id, const std::string& address)
      : self_id_(std::move(self_id)),
        stub_(v1::WeightPeer::NewStub(
            grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))) {}

  absl::StatusOr<std::string> FetchChunk(const FileIdentity& file, uint64_t index,
                                         int timeout_ms) override {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
    v1::FetchChunkRequest req;
    req.set_from_id(self_id_);
    ToProto(file, req.mutable_identity());
    req.set_index(index);
    v1::FetchChunkResponse resp;
    grpc::Status s = stub_->FetchChunk(&ctx, req, &resp);
    if (!s.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
    }
    return resp.source();
  }

 private:
  const std::string self_id_;
  std::unique_ptr<v1::WeightPeer::Stub> stub_;
};

}  // namespace

void ToProto(const FileIdentity& f, v1::FileIdentity* p) {
  p->set_uri(f.uri);
  p->set_size(f.size);
  p->set_version(f.version);
  p->set_chunk_size(f.chunk_size);
}

FileIdentity FromProto(const v1::FileIdentity& p) {
  FileIdentity f;
  f.uri = p.uri();
  f.size = p.size();
  f.version = p.version();
  f.chunk_size = p.chunk_size();
  return f;
}

grpc::ServerUnaryReactor* WeightsService::OpenFile(grpc::CallbackServerContext* ctx,
                                                   const v1::OpenFileRequest* req,
                                                   v1::OpenFileResponse* resp) {
  if (absl::Status s = CheckUri(req->uri(), "uri"); !s.ok()) return Finish(ctx, s);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  cache_->OpenAsync(req->uri(), [reactor, resp](absl::StatusOr<FileIdentity> f) {
    if (f.ok()) {
      resp->set_file_id(f->FileId());
      ToProto(*f, resp->mutable_identity());
      resp->set_chunks(f->chunks());
    }
    reactor->Finish(ClientStatus(f.status()));
  });
  return reactor;
}

grpc::ServerUnaryReactor* WeightsService::Read(grpc::CallbackServerContext* ctx,
                                               const v1::ReadRequest* req, v1::ReadResponse* resp) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  cache_->Read(req->file_id(), req->offset(), req->length(), req->lease_ms(),
               [reactor, resp](absl::StatusOr<ReadAnswer> a) {
                 if (a.ok()) {
                   resp->set_lease_id(a->lease_id);
                   for (const ReadSpan& s : a->spans) {
                     v1::ChunkSpan* p = resp->add_spans();
                     p->set_arena_offset(s.arena_offset);
                     p->set_skip(s.skip);
                     p->set_length(s.length);
                   }
                   resp->set_origin_bytes(a->origin_bytes);
                   resp->set_peer_bytes(a->peer_bytes);
                   resp->set_local_bytes(a->local_bytes);
                 }
                 reactor->Finish(ClientStatus(a.status()));
               });
  return reactor;
}

grpc::ServerUnaryReactor* WeightsService::Prefetch(grpc::CallbackServerContext* ctx,
                                                   const v1::PrefetchFileRequest* req,
                                                   v1::PrefetchFileResponse* resp) {
  if (absl::Status s = CheckUri(req->uri(), "uri"); !s.ok()) return Finish(ctx, s);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  cache_->Prefetch(req->uri(), [reactor, resp](absl::StatusOr<FileIdentity> f) {
    if (f.ok()) {
      resp->set_file_id(f->FileId());
      resp->set_chunks(f->chunks());
    }
    reactor->Finish(ClientStatus(f.status()));
  });
  return reactor;
}

grpc::ServerUnaryReactor* WeightsService::Pin(grpc::CallbackServerContext* ctx,
                                              const v1::PinFileRequest* req,
                                              v1::PinFileResponse* resp) {
  if (absl::Status s = CheckUri(req->uri(), "uri"); !s.ok()) return Finish(ctx, s);
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  cache_->Pin(req->uri(), req->unpin(), [reactor, resp](absl::StatusOr<FileIdentity> f) {
    if (f.ok()) resp->set_file_id(f->FileId());
    reactor->Finish(ClientStatus(f.status()));
  });
  return reactor;
}

grpc::ServerUnaryReactor* WeightsService::ListFiles(grpc::CallbackServerContext* ctx,
                                                    const v1::ListFilesRequest*,
                                                    v1::ListFilesResponse* resp) {
  for (const WeightFileView& v : cache_->List()) {
    v1::WeightFile* f = resp->add_files();
    ToProto(v.identity, f->mutable_identity());
    f->set_file_id(v.file_id);
    f->set_chunks(v.chunks);
    f->set_dram_chunks(v.dram_chunks);
    f->set_nvme_chunks(v.nvme_chunks);
    f->set_pinned(v.pinned);
    for (const auto& [holder, n] : v.holders) (*f->mutable_holders())[holder] = n;
    f->set_holders_unknown(v.holders_unknown);
    f->set_origin_bytes(v.origin_bytes);
    f->set_peer_bytes(v.peer_bytes);
  }
  const WeightCounters c = cache_->Counters();
  resp->set_chunk_size(cache_->options().chunk_size);
  resp->set_capacity_bytes(c.capacity);
  resp->set_pinned_bytes(c.pinned_bytes);
  return Finish(ctx, absl::OkStatus());
}

grpc::ServerUnaryReactor* WeightPeerService::FetchChunk(grpc::CallbackServerContext* ctx,
                                                        const v1::FetchChunkRequest* req,
                                                        v1::FetchChunkResponse* resp) {
  if (!req->has_identity()) return Finish(ctx, absl::InvalidArgumentError("identity: missing"));
  if (absl::Status s = CheckUri(req->identity().uri(), "identity.uri"); !s.ok()) {
    return Finish(ctx, s);
  }
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  cache_->FetchForPeer(FromProto(req->identity()), req->index(),
                       [reactor, resp](absl::StatusOr<ChunkSource> source) {
                         if (source.ok()) resp->set_source(ChunkSourceName(*source));
                         reactor->Finish(ToGrpc(source.status()));
                       });
  return reactor;
}

WeightPeerConnector GrpcWeightPeerConnector(std::string self_id) {
  return [self_id](const Member& m) -> std::unique_ptr<WeightPeerChannel> {
    return std::make_unique<GrpcWeightPeerChannel>(self_id, m.address);
  };
}

}  // namespace kvtier
