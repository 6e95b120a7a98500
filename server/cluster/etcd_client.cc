#include "server/cluster/etcd_client.h"

#include <grpcpp/grpcpp.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "etcd/etcd_rpc.grpc.pb.h"

namespace kvtier {

struct EtcdStubs {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch;
};

namespace {

// gRPC and absl share their status codes one to one.
absl::Status FromGrpc(const grpc::Status& status, const char* what) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      absl::StrCat("etcd ", what, ": ", status.error_message()));
}

EtcdKeyValue FromProto(const mvccpb::KeyValue& kv) {
  EtcdKeyValue out;
  out.key = kv.key();
  out.value = kv.value();
  out.create_revision = kv.create_revision();
  out.mod_revision = kv.mod_revision();
  out.lease = kv.lease();
  return out;
}

EtcdRange FromProto(const etcdserverpb::RangeResponse& response) {
  EtcdRange range;
  range.revision = response.header().revision();
  range.kvs.reserve(static_cast<size_t>(response.kvs_size()));
  for (const mvccpb::KeyValue& kv : response.kvs()) range.kvs.push_back(FromProto(kv));
  return range;
}

}  // namespace

// ---- EtcdWatch ----

EtcdWatch::EtcdWatch() : context_(std::make_unique<grpc::ClientContext>()) {}

EtcdWatch::~EtcdWatch() { Stop(); }

void EtcdWatch::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  // Safe before the call has started too: gRPC then cancels it as it starts.
  context_->TryCancel();
  if (thread_.joinable()) thread_.join();
}

bool EtcdWatch::Done() const {
  absl::MutexLock lock(&mu_);
  return done_;
}

void EtcdWatch::Run(const std::shared_ptr<EtcdStubs>& stubs, std::string key, std::string range_end,
                    int64_t start_revision, const OnResponse& on_response, const OnEnd& on_end) {
  auto stream = stubs->watch->Watch(context_.get());
  etcdserverpb::WatchRequest request;
  auto* create = request.mutable_create_request();
  create->set_key(std::move(key));
  create->set_range_end(std::move(range_end));
  create->set_start_revision(start_revision);

  absl::Status ended;   // why we stopped reading, when etcd did not say so in the final status
  bool cancel = false;  // we stop reading an open stream (else it has ended on its own)
  if (stream->Write(request)) {
    etcdserverpb::WatchResponse response;
    while (stream->Read(&response)) {
      if (response.compact_revision() != 0) {
        ended = absl::OutOfRangeError(absl::StrCat("etcd watch: revision ", start_revision,
                                                   " compacted (now ", response.compact_revision(),
                                                   ")"));
        cancel = true;
        break;
      }
      if (response.canceled()) {
        ended = absl::AbortedError(
            absl::StrCat("etcd watch canceled by the server: ", response.cancel_reason()));
        cancel = true;
        break;
      }
      EtcdWatchResponse out;
      out.header_revision = response.header().revision();
      out.created = response.created();
      out.events.reserve(static_cast<size_t>(response.events_size()));
      for (const mvccpb::Event& event : response.events()) {
        EtcdEvent e;
        e.type = event.type() == mvccpb::Event::DELETE ? EtcdEvent::Type::kDelete
                                                       : EtcdEvent::Type::kPut;
        e.kv = FromProto(event.kv());
        out.events.push_back(std::move(e));
      }
      {
        absl::MutexLock lock(&mu_);
        cancel = stopping_;
      }
      if (cancel) break;
      on_response(out);
    }
  }
  // Finish waits for the stream to close; cancel it first when we stopped reading ourselves.
  if (cancel) context_->TryCancel();
  const grpc::Status status = stream->Finish();
  if (ended.ok()) {
    ended = status.ok() ? absl::UnavailableError("etcd watch: stream closed by the server")
                        : FromGrpc(status, "watch");
  }
  bool stopping;
  {
    absl::MutexLock lock(&mu_);
    done_ = true;
    stopping = stopping_;
  }
  if (!stopping) on_end(ended);
}

// ---- EtcdClient ----

absl::StatusOr<std::unique_ptr<EtcdClient>> EtcdClient::Create(const std::string& endpoint,
                                                               absl::Duration call_timeout) {
  if (endpoint.empty()) return absl::InvalidArgumentError("etcd endpoint is empty");
  if (call_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("etcd call timeout must be positive");
  }
  grpc::ChannelArguments args;
  // Reconnect quickly once etcd is back (gRPC's default backoff grows to two minutes).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_DNS_MIN_TIME_BETWEEN_RESOLUTIONS_MS, 500);
  // Notice a silently dead etcd under a long-lived watch. etcd refuses pings more often than
  // every 5 s (--grpc-keepalive-min-time) and pings without an open stream.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 5000);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);

  auto client = std::unique_ptr<EtcdClient>(new EtcdClient());
  client->endpoint_ = endpoint;
  client->call_timeout_ = call_timeout;
  auto stubs = std::make_shared<EtcdStubs>();
  stubs->channel = grpc::CreateCustomChannel(endpoint, grpc::InsecureChannelCredentials(), args);
  stubs->kv = etcdserverpb::KV::NewStub(stubs->channel);
  stubs->lease = etcdserverpb::Lease::NewStub(stubs->channel);
  stubs->watch = etcdserverpb::Watch::NewStub(stubs->channel);
  client->stubs_ = std::move(stubs);
  return client;
}

EtcdClient::~EtcdClient() = default;

std::unique_ptr<grpc::ClientContext> EtcdClient::NewContext(absl::Duration timeout) const {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return context;
}

std::string EtcdClient::PrefixEnd(const std::string& prefix) {
  std::string end = prefix;
  // Increment the last byte that is not 0xff, dropping the 0xff bytes after it.
  while (!end.empty()) {
    unsigned char last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key (etcd's convention)
}

absl::StatusOr<int64_t> EtcdClient::Grant(int64_t ttl_s, int64_t* granted_ttl_s) {
  if (ttl_s <= 0) return absl::InvalidArgumentError("lease TTL must be positive");
  etcdserverpb::LeaseGrantRequest request;
  request.set_ttl(ttl_s);
  etcdserverpb::LeaseGrantResponse response;
  auto context = NewContext(call_timeout_);
  grpc::Status status = stubs_->lease->LeaseGrant(context.get(), request, &response);
  if (!status.ok()) return FromGrpc(status, "lease grant");
  if (!response.error().empty()) {
    return absl::InternalError(absl::StrCat("etcd lease grant: ", response.error()));
  }
  if (granted_ttl_s != nullptr) *granted_ttl_s = response.ttl();
  return response.id();
}

absl::Status EtcdClient::Revoke(int64_t lease) { return Revoke(lease, call_timeout_); }

absl::Status EtcdClient::Revoke(int64_t lease, absl::Duration timeout) {
  etcdserverpb::LeaseRevokeRequest request;
  request.set_id(lease);
  etcdserverpb::LeaseRevokeResponse response;
  auto context = NewContext(timeout);
  return FromGrpc(stubs_->lease->LeaseRevoke(context.get(), request, &response), "lease revoke");
}

absl::StatusOr<int64_t> EtcdClient::KeepAliveOnce(int64_t lease) {
  auto context = NewContext(call_timeout_);
  auto stream = stubs_->lease->LeaseKeepAlive(context.get());
  etcdserverpb::LeaseKeepAliveRequest request;
  request.set_id(lease);
  etcdserverpb::LeaseKeepAliveResponse response;
  const bool answered = stream->Write(request) && stream->Read(&response);
  // One exchange is all we want: end the stream rather than wait for etcd to close it.
  context->TryCancel();
  const grpc::Status status = stream->Finish();
  if (!answered) {
    return status.ok() ? absl::UnavailableError("etcd lease keep-alive: no answer")
                       : FromGrpc(status, "lease keep-alive");
  }
  if (response.ttl() <= 0) {
    return absl::NotFoundError(absl::StrCat("etcd lease ", lease, " has expired"));
  }
  return response.ttl();
}

absl::StatusOr<int64_t> EtcdClient::Put(const std::string& key, const std::string& value,
                                        int64_t lease) {
  etcdserverpb::PutRequest request;
  request.set_key(key);
  request.set_value(value);
  request.set_lease(lease);
  etcdserverpb::PutResponse response;
  auto context = NewContext(call_timeout_);
  grpc::Status status = stubs_->kv->Put(context.get(), request, &response);
  if (!status.ok()) return FromGrpc(status, "put");
  return response.header().revision();
}

absl::StatusOr<EtcdRange> EtcdClient::Get(const std::string& key) {
  etcdserverpb::RangeRequest request;
  request.set_key(key);
  etcdserverpb::RangeResponse response;
  auto context = NewContext(call_timeout_);
  grpc::Status status = stubs_->kv->Range(context.get(), request, &response);
  if (!status.ok()) return FromGrpc(status, "get");
  return FromProto(response);
}

absl::StatusOr<EtcdRange> EtcdClient::GetPrefix(const std::string& prefix) {
  if (prefix.empty()) return absl::InvalidArgumentError("etcd prefix is empty");
  etcdserverpb::RangeRequest request;
  request.set_key(prefix);
  request.set_range_end(PrefixEnd(prefix));
  etcdserverpb::RangeResponse response;
  auto context = NewContext(call_timeout_);
  grpc::Status status = stubs_->kv->Range(context.get(), request, &response);
  if (!status.ok()) return FromGrpc(status, "get prefix");
  return FromProto(response);
}

absl::StatusOr<int64_t> EtcdClient::Delete(const std::string& key) {
  etcdserverpb::DeleteRangeRequest request;
  request.set_key(key);
  etcdserverpb::DeleteRangeResponse response;
  auto context = NewContext(call_timeout_);
  grpc::Status status = stubs_->kv->DeleteRange(context.get(), request, &response);
  if (!status.ok()) return FromGrpc(status, "delete");
  return response.deleted();
}

absl::StatusOr<int64_t> EtcdClient::DeletePrefix(const std::string& prefix) {
  if (prefix.empty()) return absl::InvalidArgumentError("etcd prefix is empty");
  etcdserverpb::DeleteRangeRequest request;
  request.set_key(prefix);
  request.set_range_end(PrefixEnd(prefix));
  etcdserverpb::DeleteRangeResponse response;
  auto context = NewContext(call_timeout_);
  grpc::Status status = stubs_->kv->DeleteRange(context.get(), request, &response);
  if (!status.ok()) return FromGrpc(status, "delete prefix");
  return response.deleted();
}

absl::StatusOr<bool> EtcdClient::CreateIfAbsent(const std::string& key, const std::string& value,
                                                int64_t lease, std::string* existing) {
  etcdserverpb::TxnRequest request;
  etcdserverpb::Compare* absent = request.add_compare();
  absent->set_key(key);
  absent->set_target(etcdserverpb::Compare::CREATE);
  absent->set_result(etcdserverpb::Compare::EQUAL);
  absent->set_create_revision(0);
  etcdserverpb::PutRequest* put = request.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(value);
  put->set_lease(lease);
  request.add_failure()->mutable_request_range()->set_key(key);
  etcdserverpb::TxnResponse response;
  auto context = NewContext(call_timeout_);
  grpc::Status status = stubs_->kv->Txn(context.get(), request, &response);
  if (!status.ok()) return FromGrpc(status, "txn");
  if (response.succeeded()) return true;
  if (existing != nullptr) {
    existing->clear();
    if (response.responses_size() > 0 && response.responses(0).has_response_range() &&
        response.responses(0).response_range().kvs_size() > 0) {
      *existing = response.responses(0).response_range().kvs(0).value();
    }
  }
  return false;
}

std::unique_ptr<EtcdWatch> EtcdClient::Watch(const std::string& prefix, int64_t start_revision,
                                             EtcdWatch::OnResponse on_response,
                                             EtcdWatch::OnEnd on_end) {
  auto watch = std::unique_ptr<EtcdWatch>(new EtcdWatch());
  watch->thread_ = std::thread(&EtcdWatch::Run, watch.get(), stubs_, prefix, PrefixEnd(prefix),
                               start_revision, std::move(on_response), std::move(on_end));
  return watch;
}

}  // namespace kvtier
