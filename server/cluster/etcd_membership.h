// EtcdMembership: this daemon's place in a kvtier cluster whose members register in etcd.
//
// Keys (all attached to this member's lease, so they vanish when it stops refreshing it):
//   /kvtier/<cluster>/slots/<n>   = <id>          the lowest free slot n, claimed atomically
//   /kvtier/<cluster>/nodes/<id>  = {"id","address","slot"}  (JSON)
// It refreshes the lease every ttl/3, watches /kvtier/<cluster>/nodes/ and rebuilds the Roster on
// every change (version: the etcd revision of the latest change seen; members sorted by slot;
// malformed values skipped with a warning).
//
// When etcd is down or unreachable it keeps the last roster, keeps running and says so in
// State(). When etcd is back it re-grants a lease if the old one expired, registers again (the
// same slot if still free) and watches again from a fresh read.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/cluster/etcd_client.h"
#include "server/cluster/roster.h"

namespace kvtier {

struct EtcdMembershipState {
  bool connected = false;   // the last exchange with etcd succeeded
  std::string last_error;   // why not, when !connected
  int64_t since_ms = 0;     // Unix time (ms) since `connected` has had its current value
  bool registered = false;  // our keys are in etcd under a live lease (as far as we know)
  uint32_t slot = 0;        // our slot, valid once registered (kept while disconnected)
  Roster roster;            // the last view (kept while disconnected)
};

class EtcdMembership {
 public:
  struct Options {
    std::string endpoint = "127.0.0.1:2379";         // etcd client endpoint host:port
    std::string cluster;                             // cluster name: no '/', not empty
    std::string self_id;                             // unique node id: no '/', not empty
    std::string self_address;                        // host:port of our Peer service
    int64_t ttl_s = 5;                               // lease TTL (etcd may raise it to its minimum)
    absl::Duration call_timeout = absl::Seconds(2);  // deadline of each etcd call
    // Called with every new roster (a change of members or version), one call at a time, from
    // Start (the first roster, before it returns) or an internal thread. It may call State(); it
    // must not call Stop() or destroy the membership.
    std::function<void(const Roster&)> on_change;
    // Test-only: false makes Stop() leave the lease to expire instead of revoking it, as if the
    // process had crashed.
    bool revoke_on_stop = true;
  };

  // Registers (lease, slot, node key), reads the current members and starts watching. Fails
  // (and leaves nothing behind) on bad options or when etcd cannot be reached now.
  static absl::StatusOr<std::unique_ptr<EtcdMembership>> Start(Options options);
  ~EtcdMembership();  // Stop()
  EtcdMembership(const EtcdMembership&) = delete;
  EtcdMembership& operator=(const EtcdMembership&) = delete;

  // Revokes the lease (best effort, short deadline; other members see us leave at once) and
  // stops the threads. Idempotent; call from one thread.
  void Stop();

  EtcdMembershipState State() const;
  Roster CurrentRoster() const;

  // Key layout, for tools and tests.
  static std::string NodesPrefix(const std::string& cluster);
  static std::string SlotsPrefix(const std::string& cluster);

 private:
  explicit EtcdMembership(Options options, std::unique_ptr<EtcdClient> client);

  // One round of upkeep: keep the lease alive, register again if needed, watch again if the watch
  // ended. Returns the first error (and records it in the state).
  absl::Status Upkeep();
  absl::Status KeepAlive();
  absl::Status Register();
  absl::StatusOr<uint32_t> ClaimSlot(int64_t lease);
  absl::Status Rewatch();
  void Supervise();  // the upkeep thread
  bool UpkeepDueLocked() const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  void OnWatchResponse(const EtcdWatchResponse& response);
  void OnWatchEnd(const absl::Status& status);
  // Applies one node key's new value (nullptr: deleted) to nodes_.
  void ApplyNodeLocked(const std::string& key, const std::string* value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RebuildRosterLocked(int64_t revision) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetConnectedLocked(bool connected, const absl::Status& error)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Calls on_change if the roster changed since the last call.
  void Publish() ABSL_LOCKS_EXCLUDED(mu_, publish_mu_);

  const Options options_;
  const std::string nodes_prefix_;
  const std::string slots_prefix_;
  const std::string node_key_;
  const std::unique_ptr<EtcdClient> client_;

  // Lock order: publish_mu_ before mu_. publish_mu_ serializes on_change calls.
  absl::Mutex publish_mu_;
  bool published_any_ ABSL_GUARDED_BY(publish_mu_) = false;
  Roster published_ ABSL_GUARDED_BY(publish_mu_);

  mutable absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;  // upkeep needed now (the watch ended, key lost)
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  bool ever_connected_ ABSL_GUARDED_BY(mu_) = false;
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  absl::Time since_ ABSL_GUARDED_BY(mu_);
  int64_t lease_ ABSL_GUARDED_BY(mu_) = 0;  // 0: none
  absl::Duration keepalive_interval_ ABSL_GUARDED_BY(mu_);
  bool registered_ ABSL_GUARDED_BY(mu_) = false;
  int64_t registered_revision_ ABSL_GUARDED_BY(mu_) = 0;  // revision of our node key's put
  bool has_slot_ ABSL_GUARDED_BY(mu_) = false;
  uint32_t slot_ ABSL_GUARDED_BY(mu_) = 0;  // kept across re-registrations (preferred slot)
  bool watching_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, Member> nodes_ ABSL_GUARDED_BY(mu_);  // valid node keys
  Roster roster_ ABSL_GUARDED_BY(mu_);

  // Used only by the thread that runs Start and then by the upkeep thread (and by Stop after
  // joining it).
  std::unique_ptr<EtcdWatch> watch_;
  std::thread supervisor_;
  bool stopped_ = false;  // Stop has run (Stop is called from one thread)
};

}  // namespace kvtier
