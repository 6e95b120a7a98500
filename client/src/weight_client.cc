// WeightClient over the daemon's Weights service; reads copy out of the mapped arena (Read) or
// lend it in place (ReadSpans).
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "client/src/connection.h"
#include "client/src/wire.h"
#include "kvtier/v1/weights.grpc.pb.h"
#include "kvtier/weights.h"

namespace kvtier {
namespace {

using client_internal::ArenaMapping;
using client_internal::Connection;

// Chunks one Read call asks for (the daemon allows more; smaller calls pipeline better).
constexpr uint64_t kChunksPerCall = 16;

void FromProto(const v1::FileIdentity& p, uint64_t file_id, uint64_t chunks, WeightFile* out) {
  out->file_id = file_id;
  out->uri = p.uri();
  out->size = p.size();
  out->version = p.version();
  out->chunk_size = p.chunk_size();
  out->chunks = chunks;
}

class WeightClientImpl final : public WeightClient {
 public:
  WeightClientImpl(std::shared_ptr<Connection> conn, int read_timeout_ms)
      : conn_(std::move(conn)),
        stub_(v1::Weights::NewStub(conn_->channel())),
        read_timeout_ms_(read_timeout_ms) {}

  Status OpenFile(const std::string& uri, WeightFile* out) override {
    v1::OpenFileRequest req;
    req.set_uri(uri);
    v1::OpenFileResponse resp;
    grpc::ClientContext ctx;
    Prepare(&ctx);
    Status s = Call(stub_->OpenFile(&ctx, req, &resp));
    if (s.ok()) FromProto(resp.identity(), resp.file_id(), resp.chunks(), out);
    return s;
  }

  Status Read(const WeightFile& file, uint64_t offset, uint64_t length, void* dst,
              WeightReadStats* stats) override {
    auto* out = static_cast<std::byte*>(dst);
    return ReadSpans(
        file, offset, length,
        [out, offset](uint64_t at, const void* data, uint64_t n) {
          std::memcpy(out + (at - offset), data, n);
          return Status();
        },
        stats);
  }

  Status ReadSpans(const WeightFile& file, uint64_t offset, uint64_t length, const SpanFn& use,
                   WeightReadStats* stats) override {
    if (file.chunk_size == 0) {
      return Status(Status::Code::kInvalidArgument, "file: not opened (chunk_size 0)");
    }
    std::shared_ptr<const ArenaMapping> arena;
    if (Status s = conn_->Arena(&arena); !s.ok()) return s;
    const uint64_t step = kChunksPerCall * file.chunk_size;
    uint64_t done = 0;
    while (done < length) {
      const uint64_t at = offset + done;
      // Up to the chunk boundary kChunksPerCall chunks on.
      const uint64_t end =
          std::min(offset + length, (at / file.chunk_size) * file.chunk_size + step);
      v1::ReadRequest req;
      req.set_file_id(file.file_id);
      req.set_offset(at);
      req.set_length(end - at);
      req.set_lease_ms(conn_->lease_ms());
      v1::ReadResponse resp;
      grpc::ClientContext ctx;
      Prepare(&ctx);
      if (Status s = Call(stub_->Read(&ctx, req, &resp)); !s.ok()) return s;
      uint64_t pos = done;
      Status used;
      for (const v1::ChunkSpan& span : resp.spans()) {
        if (!arena->Contains(span.arena_offset() + span.skip(), span.length()) ||
            pos + span.length() > length) {
          used = Status(Status::Code::kInternal, "the daemon answered a span outside the arena");
          break;
        }
        used = use(offset + pos, arena->base() + span.arena_offset() + span.skip(), span.length());
        if (!used.ok()) break;
        pos += span.length();
      }
      (void)conn_->ReleaseLease(resp.lease_id());
      if (!used.ok()) return used;
      if (pos != done + (end - at)) {
        return Status(Status::Code::kInternal, "the daemon answered fewer bytes than asked for");
      }
      if (stats != nullptr) {
        stats->origin_bytes += resp.origin_bytes();
        stats->peer_bytes += resp.peer_bytes();
        stats->local_bytes += resp.local_bytes();
      }
      done = pos;
    }
    return Status();
  }

  Status Prefetch(const std::string& uri, WeightFile* out) override {
    v1::PrefetchFileRequest req;
    req.set_uri(uri);
    v1::PrefetchFileResponse resp;
    grpc::ClientContext ctx;
    Prepare(&ctx);
    Status s = Call(stub_->Prefetch(&ctx, req, &resp));
    if (s.ok() && out != nullptr) {
      out->file_id = resp.file_id();
      out->uri = uri;
      out->chunks = resp.chunks();
    }
    return s;
  }

  Status Pin(const std::string& uri, bool unpin) override {
    v1::PinFileRequest req;
    req.set_uri(uri);
    req.set_unpin(unpin);
    v1::PinFileResponse resp;
    grpc::ClientContext ctx;
    Prepare(&ctx);
    return Call(stub_->Pin(&ctx, req, &resp));
  }

  Status ListFiles(WeightListing* out) override {
    v1::ListFilesResponse resp;
    grpc::ClientContext ctx;
    conn_->Prepare(&ctx);
    if (Status s = Call(stub_->ListFiles(&ctx, v1::ListFilesRequest(), &resp)); !s.ok()) return s;
    *out = WeightListing();
    out->chunk_size = resp.chunk_size();
    out->capacity_bytes = resp.capacity_bytes();
    out->pinned_bytes = resp.pinned_bytes();
    for (const v1::WeightFile& f : resp.files()) {
      WeightFileInfo info;
      FromProto(f.identity(), f.file_id(), f.chunks(), &info.file);
      info.dram_chunks = f.dram_chunks();
      info.nvme_chunks = f.nvme_chunks();
      info.pinned = f.pinned();
      info.holders = std::map<std::string, uint64_t>(f.holders().begin(), f.holders().end());
      info.holders_unknown = f.holders_unknown();
      info.origin_bytes = f.origin_bytes();
      info.peer_bytes = f.peer_bytes();
      out->files.push_back(std::move(info));
    }
    return Status();
  }

  const std::string& socket_path() const override { return conn_->socket_path(); }

 private:
  // Weight calls may wait on a slow origin: their own, longer deadline.
  void Prepare(grpc::ClientContext* ctx) {
    conn_->Prepare(ctx);
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(read_timeout_ms_));
  }
  Status Call(const grpc::Status& s) {
    if (s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      return Status(Status::Code::kDeadlineExceeded, "kvtierd on " + conn_->socket_path() +
                                                         " did not answer within " +
                                                         std::to_string(read_timeout_ms_) + " ms");
    }
    return conn_->CallStatus(s);
  }

  std::shared_ptr<Connection> conn_;
  std::unique_ptr<v1::Weights::Stub> stub_;
  const int read_timeout_ms_;
};

}  // namespace

Status WeightClient::Connect(const ClientOptions& options, std::unique_ptr<WeightClient>* out,
                             int read_timeout_ms) {
  std::shared_ptr<Connection> conn;
  if (Status s = Connection::Open(options, &conn); !s.ok()) return s;
  *out = std::make_unique<WeightClientImpl>(std::move(conn), read_timeout_ms);
  return Status();
}

}  // namespace kvtier
