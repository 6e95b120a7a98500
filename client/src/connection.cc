#include "client/src/connection.h"

#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <system_error>

#include "client/src/wire.h"
#include "common/tls_files.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace kvtier::client_internal {
namespace {

std::string Absolute(const std::string& path) {
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(path, ec);
  if (ec) return path;
  return abs.lexically_normal().string();
}

// `connect_timeout_ms`: the longest one connection attempt may take, up to the daemon's first
// HTTP/2 SETTINGS frame (gRPC takes it from the "min reconnect backoff"). It does not space the
// attempts (the initial and max backoff do), so it is the call deadline: on a busy host a TLS
// handshake, or a daemon accepting unix connections itself (--allow-models), can take more than
// 100 ms.
std::shared_ptr<grpc::Channel> MakeChannel(
    const std::string& target, std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr,
    const std::string& tls_server_name = "", int connect_timeout_ms = 100) {
  grpc::ChannelArguments args;
  if (credentials != nullptr && !tls_server_name.empty()) {
    args.SetSslTargetNameOverride(tls_server_name);
  }
  args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
  // ListBlocks may answer up to 100k entries: lift the 4 MiB receive cap.
  args.SetMaxReceiveMessageSize(-1);
  // A local daemon that restarts should be reachable again within a second, not after gRPC's
  // default backoff of up to two minutes.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, connect_timeout_ms);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  // Our own channel and connection: leases and the arena check follow this connection's state.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(
      target, credentials ? credentials : grpc::InsecureChannelCredentials(), args);
}

// A TCP connection (ClientOptions::address), with mutual TLS when the tls_* files are given.
Status OpenTcp(const ClientOptions& options, std::shared_ptr<grpc::Channel>* channel) {
  if (options.map_arena) {
    return Status(Status::Code::kInvalidArgument,
                  "address: a TCP connection carries control calls only; set map_arena = false "
                  "(the arena is shared over the unix socket)");
  }
  const TlsFiles files{options.tls_cert, options.tls_key, options.tls_ca};
  if (files.empty()) {
    if (!options.tls_server_name.empty()) {
      return Status(Status::Code::kInvalidArgument,
                    "--tls-server-name: needs --tls-cert, --tls-key and --tls-ca");
    }
    *channel = MakeChannel(options.address, nullptr, "", options.timeout_ms);
    return Status();
  }
  absl::StatusOr<TlsPem> pem = LoadTlsFiles(files);
  if (!pem.ok()) {
    return Status(Status::Code::kInvalidArgument, std::string(pem.status().message()));
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = pem->ca;
  ssl.pem_private_key = pem->key;
  ssl.pem_cert_chain = pem->cert;
  *channel = MakeChannel(options.address, grpc::SslCredentials(ssl), options.tls_server_name,
                         options.timeout_ms);
  return Status();
}

}  // namespace

Connection::Connection(const ClientOptions& options, std::string socket_path)
    : options_(options), socket_path_(std::move(socket_path)) {}

Status Connection::Open(const ClientOptions& options, std::shared_ptr<Connection>* out) {
  if (options.timeout_ms <= 0) {
    return Status(Status::Code::kInvalidArgument,
                  "timeout_ms must be positive, got " + std::to_string(options.timeout_ms));
  }
  if (!options.address.empty()) {
    std::shared_ptr<Connection> conn(new Connection(options, options.address));
    conn->target_ = options.address;
    if (Status s = OpenTcp(options, &conn->channel_); !s.ok()) return s;
    conn->stub_ = v1::KvTier::NewStub(conn->channel_);
    v1::ArenaInfoResponse info;
    if (Status s = conn->FetchArenaInfo(&info); !s.ok()) return s;
    *out = std::move(conn);
    return Status();
  }
  std::shared_ptr<Connection> conn(new Connection(options, ResolveSocketPath(options.socket_path)));
  const std::string abs = Absolute(conn->socket_path_);
  if (abs.size() >= sizeof(sockaddr_un::sun_path)) {
    return Status(Status::Code::kInvalidArgument,
                  "socket path is too long for a unix socket (" + std::to_string(abs.size()) +
                      " bytes, at most " + std::to_string(sizeof(sockaddr_un::sun_path) - 1) +
                      "): " + conn->socket_path_);
  }
  conn->target_ = "unix:" + abs;
  conn->channel_ = MakeChannel(conn->target_, nullptr, "", options.timeout_ms);
  conn->stub_ = v1::KvTier::NewStub(conn->channel_);

  v1::ArenaInfoResponse info;
  if (Status s = conn->FetchArenaInfo(&info); !s.ok()) return s;
  {
    absl::MutexLock lock(&conn->mu_);
    conn->SetHbm(info);
  }
  if (options.map_arena) {
    std::string fd_path = info.fd_socket_path().empty() ? abs + ".arena" : info.fd_socket_path();
    conn->arena_socket_path_ = Absolute(fd_path);
    std::shared_ptr<const ArenaMapping> arena;
    if (Status s = conn->MapArena(info, &arena); !s.ok()) return s;
    absl::MutexLock lock(&conn->mu_);
    conn->arena_ = std::move(arena);
    conn->arena_suspect_.store(false);  // the channel was just checked against this arena
  }
  *out = std::move(conn);
  return Status();
}

void Connection::Prepare(grpc::ClientContext* context) {
  if (channel_->GetState(/*try_to_connect=*/false) != GRPC_CHANNEL_READY) {
    arena_suspect_.store(true, std::memory_order_relaxed);
  }
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::milliseconds(options_.timeout_ms));
  if (!options_.request_id.empty()) context->AddMetadata("x-request-id", options_.request_id);
}

std::string Connection::UnavailableMessage(const grpc::Status& status) const {
  if (!options_.address.empty()) {
    const bool tls = !options_.tls_ca.empty();
    return "no kvtierd answering on " + options_.address +
           (tls ? " over mutual TLS (is it running with --listen and --tls-*? is this client's "
                  "certificate signed by its --tls-ca, and its certificate by --tls-ca here?)"
                : " (is it running with --listen? does it require TLS: --tls-cert, --tls-key, "
                  "--tls-ca?)") +
           ": " + status.error_message();
  }
  struct stat st {};
  if (::stat(socket_path_.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return socket_path_ + " is not a unix socket";
    if (::access(socket_path_.c_str(), R_OK | W_OK) != 0) {
      return "permission denied on " + socket_path_;
    }
  }
  // gRPC's own words too: a daemon that runs but refused or dropped the connection says why there.
  return "no kvtierd answering on " + socket_path_ +
         " (is it running? start one with scripts/serve): " + status.error_message();
}

Status Connection::CallStatus(const grpc::Status& status) const {
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    return Status(Status::Code::kUnavailable, UnavailableMessage(status));
  }
  if (status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
    return Status(Status::Code::kDeadlineExceeded, "kvtierd on " + socket_path_ +
                                                       " did not answer within " +
                                                       std::to_string(options_.timeout_ms) + " ms");
  }
  return FromGrpc(status);
}

Status Connection::FetchArenaInfo(v1::ArenaInfoResponse* info) {
  grpc::ClientContext context;
  Prepare(&context);
  return CallStatus(stub_->GetArenaInfo(&context, v1::ArenaInfoRequest(), info));
}

Status Connection::MapArena(const v1::ArenaInfoResponse& info,
                            std::shared_ptr<const ArenaMapping>* out) {
  std::unique_ptr<ArenaMapping> mapping;
  Status s = ArenaMapping::Create(arena_socket_path_, info.generation(), info.arena_bytes(),
                                  options_.prefault, options_.timeout_ms, &mapping);
  if (!s.ok()) {
    return Status(s.code(),
                  "cannot map the arena of kvtierd on " + socket_path_ + ": " + s.message());
  }
  *out = std::move(mapping);
  return Status();
}

Status Connection::Arena(std::shared_ptr<const ArenaMapping>* out) {
  if (!options_.map_arena) {
    return Status(Status::Code::kFailedPrecondition,
                  "this client did not map the arena (ClientOptions::map_arena is false)");
  }
  // One thread at a time re-checks; the others wait for its answer rather than ask again.
  absl::MutexLock lock(&mu_);
  if (!arena_suspect_.load() && channel_->GetState(false) == GRPC_CHANNEL_READY &&
      arena_->OwnerAlive()) {
    *out = arena_;
    return Status();
  }
  v1::ArenaInfoResponse info;
  if (Status s = FetchArenaInfo(&info); !s.ok()) return s;
  // Checked against the daemon that answers now. (A reconnect after this marks it again.)
  arena_suspect_.store(false);
  SetHbm(info);
  // A new daemon has a new generation; one that reused its predecessor's is caught by the old
  // owner being gone. Either way map its arena; leases of the old one keep the old mapping alive.
  if (info.generation() != arena_->generation() || info.arena_bytes() != arena_->size() ||
      !arena_->OwnerAlive()) {
    std::shared_ptr<const ArenaMapping> fresh;
    if (Status s = MapArena(info, &fresh); !s.ok()) {
      arena_suspect_.store(true);
      return s;
    }
    arena_ = std::move(fresh);
  }
  *out = arena_;
  return Status();
}

void Connection::SetHbm(const v1::ArenaInfoResponse& info) {
  hbm_ = HbmTierInfo{};
  hbm_.generation = info.generation();
  if (info.hbm_socket_path().empty()) return;
  hbm_.present = true;
  hbm_.socket_path = info.hbm_socket_path();
  hbm_.backend = info.hbm_backend();
  hbm_.device = info.hbm_device();
  hbm_.segments = info.hbm_segments();
  hbm_.segment_bytes = info.hbm_segment_bytes();
}

HbmTierInfo Connection::Hbm() {
  absl::MutexLock lock(&mu_);
  return hbm_;
}

Status Connection::CommitLease(uint64_t lease_id) {
  v1::CommitRequest request;
  request.set_lease_id(lease_id);
  v1::CommitResponse response;
  grpc::ClientContext context;
  Prepare(&context);
  return CallStatus(stub_->Commit(&context, request, &response));
}

Status Connection::ReleaseLease(uint64_t lease_id) {
  v1::ReleaseRequest request;
  request.add_lease_ids(lease_id);
  v1::ReleaseResponse response;
  grpc::ClientContext context;
  Prepare(&context);
  return CallStatus(stub_->Release(&context, request, &response));
}

}  // namespace kvtier::client_internal
