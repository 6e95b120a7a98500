// EtcdClient: a small synchronous client for etcd's v3 gRPC API (KV, Lease, Watch), just what
// membership needs. Every call has a deadline (the client's call timeout unless given) and
// returns absl::Status; gRPC codes map 1:1 (etcd down: UNAVAILABLE or DEADLINE_EXCEEDED).
// Thread-safe: calls may run concurrently from any thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace grpc {
class ClientContext;
}  // namespace grpc

namespace kvtier {

struct EtcdStubs;  // the channel and gRPC stubs (etcd_client.cc)

struct EtcdKeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;  // for a delete event: the revision of the delete
  int64_t lease = 0;         // attached lease id, 0 for none
};

// A read: the keys found and the store revision it was served at.
struct EtcdRange {
  int64_t revision = 0;
  std::vector<EtcdKeyValue> kvs;  // sorted by key
};

struct EtcdEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  EtcdKeyValue kv;  // for kDelete only key and mod_revision are set
};

// One response on a watch stream: the creation acknowledgement (created, no events) or a batch
// of events in revision order.
struct EtcdWatchResponse {
  int64_t header_revision = 0;
  bool created = false;
  std::vector<EtcdEvent> events;
};

// A running watch (EtcdClient::Watch): one gRPC stream read on its own thread. Stop() (also the
// destructor) cancels the stream and joins the thread; after it returns no callback runs.
class EtcdWatch {
 public:
  using OnResponse = std::function<void(const EtcdWatchResponse&)>;
  // Called once when the stream ends for any reason other than Stop(): etcd went away
  // (UNAVAILABLE), the start revision was compacted (OUT_OF_RANGE) or etcd canceled the watch.
  using OnEnd = std::function<void(const absl::Status&)>;

  ~EtcdWatch();
  EtcdWatch(const EtcdWatch&) = delete;
  EtcdWatch& operator=(const EtcdWatch&) = delete;

  void Stop();
  // True once the stream has ended (by Stop or on its own).
  bool Done() const;

 private:
  friend class EtcdClient;
  EtcdWatch();
  void Run(const std::shared_ptr<EtcdStubs>& stubs, std::string key, std::string range_end,
           int64_t start_revision, const OnResponse& on_response, const OnEnd& on_end);

  std::unique_ptr<grpc::ClientContext> context_;
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

class EtcdClient {
 public:
  // `endpoint` is host:port of an etcd client URL (plain HTTP/2, no TLS), e.g. "127.0.0.1:2379".
  // Connects lazily: an unreachable etcd is not an error here, only in the calls.
  static absl::StatusOr<std::unique_ptr<EtcdClient>> Create(
      const std::string& endpoint, absl::Duration call_timeout = absl::Seconds(2));
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  const std::string& endpoint() const { return endpoint_; }

  // Leases. Grant returns the lease id; etcd may raise `ttl_s` to its minimum (granted_ttl_s).
  [[nodiscard]] absl::StatusOr<int64_t> Grant(int64_t ttl_s, int64_t* granted_ttl_s = nullptr);
  [[nodiscard]] absl::Status Revoke(int64_t lease);
  [[nodiscard]] absl::Status Revoke(int64_t lease, absl::Duration timeout);
  // Refreshes the lease once (one short keep-alive stream) and returns its new TTL in seconds;
  // NOT_FOUND when the lease no longer exists (expired or revoked).
  [[nodiscard]] absl::StatusOr<int64_t> KeepAliveOnce(int64_t lease);

  // Writes `key` = `value` (attached to `lease` unless 0); returns the store revision.
  [[nodiscard]] absl::StatusOr<int64_t> Put(const std::string& key, const std::string& value,
                                            int64_t lease = 0);
  // One key (kvs empty when absent).
  [[nodiscard]] absl::StatusOr<EtcdRange> Get(const std::string& key);
  // Every key starting with `prefix` (prefix non-empty).
  [[nodiscard]] absl::StatusOr<EtcdRange> GetPrefix(const std::string& prefix);
  // Deletes one key; returns how many keys were deleted (0 or 1).
  [[nodiscard]] absl::StatusOr<int64_t> Delete(const std::string& key);
  [[nodiscard]] absl::StatusOr<int64_t> DeletePrefix(const std::string& prefix);
  // Atomically writes `key` only if it does not exist (one Txn: create_revision == 0). True when
  // written; false when the key already existed (then `existing`, if given, gets its value).
  [[nodiscard]] absl::StatusOr<bool> CreateIfAbsent(const std::string& key,
                                                    const std::string& value, int64_t lease = 0,
                                                    std::string* existing = nullptr);

  // Watches every key under `prefix` from `start_revision` (inclusive; 0: from now). Callbacks
  // run on the watch's own thread, one at a time; they must not Stop() their own watch.
  [[nodiscard]] std::unique_ptr<EtcdWatch> Watch(const std::string& prefix, int64_t start_revision,
                                                 EtcdWatch::OnResponse on_response,
                                                 EtcdWatch::OnEnd on_end);

  // The key just past every key starting with `prefix` (etcd's range_end for a prefix).
  static std::string PrefixEnd(const std::string& prefix);

 private:
  EtcdClient() = default;
  std::unique_ptr<grpc::ClientContext> NewContext(absl::Duration timeout) const;

  std::string endpoint_;
  absl::Duration call_timeout_;
  std::shared_ptr<EtcdStubs> stubs_;  // shared with running watches
};

}  // namespace kvtier
