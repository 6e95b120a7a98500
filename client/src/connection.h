// Connection: one client's gRPC channel to kvtierd plus its mapping of the DRAM arena.
//
// Shared (std::shared_ptr) between the Client and the leases it hands out, so a lease that outlives
// its Client can still end itself and its spans stay mapped. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "client/src/arena_mapping.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "kvtier/client.h"
#include "kvtier/v1/kvtier.grpc.pb.h"

namespace kvtier::client_internal {

class Connection {
 public:
  // Opens the channel, asks for the arena (UNAVAILABLE with a one-line hint when no daemon
  // answers) and, with options.map_arena, maps it.
  static Status Open(const ClientOptions& options, std::shared_ptr<Connection>* out);
  ~Connection() = default;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  v1::KvTier::Stub& stub() { return *stub_; }
  // The channel itself, for the other services of the daemon (weights).
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }
  // Sets the per-call deadline (ClientOptions::timeout_ms from now). Every call goes through here:
  // a call made while the channel is not connected may reach a different (restarted) daemon, so
  // it marks the arena for re-checking.
  void Prepare(grpc::ClientContext* context);
  // Translates a failed call; UNAVAILABLE gets the "no kvtierd answering" hint.
  Status CallStatus(const grpc::Status& status) const;

  const std::string& socket_path() const { return socket_path_; }
  uint32_t lease_ms() const { return options_.lease_ms; }

  // The arena mapping to use for the next data call. When the daemon that handed it out has exited
  // or the channel reconnected since (a restarted daemon has a new arena), asks the daemon again
  // and remaps if the generation changed. FAILED_PRECONDITION when the client was opened without
  // map_arena. No thread watches the channel: a client must stay safe to use across fork().
  Status Arena(std::shared_ptr<const ArenaMapping>* out);

  // The daemon's HBM tier as of the last arena check.
  HbmTierInfo Hbm();

  // Commits every key of a write lease.
  Status CommitLease(uint64_t lease_id);
  // Ends a lease (a write lease not committed is aborted).
  Status ReleaseLease(uint64_t lease_id);

 private:
  Connection(const ClientOptions& options, std::string socket_path);

  Status FetchArenaInfo(v1::ArenaInfoResponse* info);
  Status MapArena(const v1::ArenaInfoResponse& info, std::shared_ptr<const ArenaMapping>* out);
  std::string UnavailableMessage(const grpc::Status& status) const;

  const ClientOptions options_;
  const std::string socket_path_;  // as resolved (for messages)
  std::string target_;             // "unix:/absolute/path"
  std::string arena_socket_path_;  // absolute
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::KvTier::Stub> stub_;

  absl::Mutex mu_;
  std::shared_ptr<const ArenaMapping> arena_ ABSL_GUARDED_BY(mu_);
  HbmTierInfo hbm_ ABSL_GUARDED_BY(mu_);
  void SetHbm(const v1::ArenaInfoResponse& info) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::atomic<bool> arena_suspect_{false};
};

}  // namespace kvtier::client_internal
