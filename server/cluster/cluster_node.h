// ClusterNode: this daemon's part in a pool of daemons. It
//   - keeps the roster (from static --peers or etcd) and the placement built from it;
//   - is the directory of the segments placement gives it (Directory);
//   - announces what the local store gained and lost to those segments' directories (batched,
//     asynchronous, retried while a peer's roster lags ours);
//   - answers pool-wide lookups (local prefix first, then the directories of the rest, in
//     parallel) and pulls remote blocks into local DRAM slots (pin on the holder over the Peer
//     service, move bytes with the ArenaPuller, verify checksums, commit locally).
// A dead or slow peer, a stale directory entry or a checksum mismatch is a miss, never an error
// the engine has to handle.
//
// Thread-safe. Lock order: mu_ -> queue_mu_; Directory and BlockStore locks are taken with
// neither held (except BlockListener calls, which come with store locks held and take only
// queue_mu_).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/background_loop.h"
#include "server/cluster/directory.h"
#include "server/cluster/peer_channel.h"
#include "server/cluster/placement.h"
#include "server/cluster/roster.h"
#include "server/store/block_store.h"
#include "server/transport/arena_puller.h"

namespace kvtier {

struct ClusterOptions {
  std::string self_id;
  int peer_timeout_ms = 1000;      // deadline of every peer call and pull
  uint32_t pin_lease_ms = 10'000;  // how long a holder keeps blocks pinned for a pull
  int announce_period_ms = 10;     // batching window of directory updates
  int hello_period_ms = 1000;      // liveness probes (rosters of at most kProbeAll members)
};

struct MemberView {
  Member member;
  std::string state;  // "self" "alive" "unreachable" "unknown"
  uint64_t calls = 0, errors = 0, bytes_in = 0, pulls = 0;
  double latency_ms_p50 = 0, latency_ms_p99 = 0;
  std::string last_error;
};

struct ClusterView {
  uint64_t roster_version = 0;
  std::vector<MemberView> members;
  uint64_t directory_entries = 0;
  uint64_t stale_roster_rejects = 0;
  uint64_t remote_hit_keys = 0, remote_pulls = 0, remote_pull_bytes = 0, remote_pull_failures = 0;
};

class ClusterNode : public BlockListener {
 public:
  // Rosters of at most this many members are probed with Hello every hello_period_ms; larger
  // ones contact members only when needed.
  static constexpr size_t kProbeAll = 256;

  // `store`, `puller` and the arena outlive this. Call SetRoster before serving peers.
  ClusterNode(ClusterOptions options, BlockStore* store, ArenaPuller* puller,
              const std::byte* arena, uint64_t arena_bytes, PeerConnector connect);
  ~ClusterNode() override;
  ClusterNode(const ClusterNode&) = delete;
  ClusterNode& operator=(const ClusterNode&) = delete;

  // A new view of the members (must include this node). Rebuilds placement, drops channels of
  // members that left, forgets their directory entries, and re-announces local blocks whose
  // directory moved. A roster that cannot be placed (duplicate slots) is refused.
  absl::Status SetRoster(Roster roster);
  uint64_t roster_version();

  // --- what the client service calls ---
  // Extends `local` (the local lookup of `keys`, a chain from its start) with blocks other
  // daemons hold; `done` gets the pool-wide answer (remote blocks as TierId::kRemote).
  void Lookup(uint64_t ns, std::vector<Key128> keys, LookupAnswer local,
              std::function<void(LookupAnswer)> done);
  // Pulls keys[from..] that other daemons hold into local DRAM, as far as it can along the chain;
  // `done` runs when every pull has finished or failed. `keys` is a chain from its start, or any
  // part of a chain this node looked up before (see HeadsOf).
  void PullMissing(uint64_t ns, std::vector<Key128> keys, size_t from, std::function<void()> done);
  // Pulls `keys` (none with a parent) from the member `holder` directly, without asking their
  // directories (the caller knows it holds them: the weight cache after an owner fetched a
  // chunk). `done` runs when the pull has finished or failed; a failure is a miss.
  void PullFrom(uint64_t ns, std::vector<Key128> keys, const std::string& holder,
                std::function<void()> done);

  // --- what the peer service calls (requests already decoded) ---
  // OK when `roster_version` matches ours; FAILED_PRECONDITION naming the field otherwise.
  absl::Status CheckRosterVersion(uint64_t roster_version);
  // Whether `id` is another member of the current roster (only members may update directories).
  bool IsPeer(const std::string& id);
  uint32_t ApplyDirectoryUpdate(const std::string& from, const std::vector<KeyBatch>& gained,
                                const std::vector<KeyBatch>& lost);
  std::vector<std::vector<std::string>> LookupDirectory(uint64_t ns,
                                                        const std::vector<Key128>& keys);
  // Holders of `keys` pool-wide, each key a block without a parent (its own segment head: a
  // weight chunk), by asking each key's directory: this node's own, or the owner's by
  // LookupDirectory. The peers are asked at once, each call within peer_timeout_ms, so `done`
  // runs within about one deadline however many peers are dead. `done` gets one list per key
  // (this node and non-members left out; unlike ResolveHolders, no list is cut short) and how
  // many keys' directories did not answer: those lists are empty because nothing is known.
  void LookupRootHolders(
      uint64_t ns, std::vector<Key128> keys,
      std::function<void(std::vector<std::vector<std::string>>, size_t unanswered_keys)> done);
  void Pin(uint64_t ns, std::vector<Key128> keys, uint32_t lease_ms,
           PeerChannel::Done<PinResult> done);
  absl::StatusOr<uint32_t> Unpin(const std::vector<uint64_t>& lease_ids);
  const std::string& transport_info() const { return puller_->LocalInfo(); }
  std::string transport_mode() const { return puller_->Mode(); }
  const std::string& self_id() const { return options_.self_id; }
  uint64_t incarnation() const { return incarnation_; }
  // A member said Hello with this incarnation: a new one means it restarted, so the blocks it is
  // the directory of are announced to it again. Unknown members are ignored.
  void NoteIncarnation(const std::string& member, uint64_t incarnation);

  ClusterView View();

  // The first `n` members of the placement order of `hash` (the owner first; Placement::TopR).
  // Empty before the first roster. For the weight cache's chunk owners.
  std::vector<Member> PlacementOrder(uint64_t hash, size_t n);

  // BlockListener: queue announcements (store locks are held here).
  void OnBlockReady(const BlockId& id, const Key128& parent) override;
  void OnBlockGone(const BlockId& id) override;

  // Sends queued directory updates now (the announcer does it every announce_period_ms);
  // returns how many were sent or applied. For tests.
  size_t FlushAnnouncements();
  // Says Hello to every peer now (the announcer does it every hello_period_ms). For tests.
  void ProbeMembersNow();

 private:
  struct PeerState;
  struct PullRun;
  using HolderLists = std::vector<std::vector<std::string>>;

  // Holders of keys[from..] by their directories (self excluded, members of the roster only);
  // `done` gets one list per key from `from`, cut at the first key nobody holds.
  void ResolveHolders(uint64_t ns, const std::vector<Key128>& keys, size_t from,
                      std::function<void(HolderLists)> done);
  // The fan-out behind both: keys[i]'s directory is the owner of heads[i] (cluster_node.cc).
  void AskDirectories(uint64_t ns, std::vector<Key128> keys, const std::vector<Key128>& heads,
                      bool need_peers, std::function<void(HolderLists, size_t)> done);
  // Segment heads of `keys`: remembered from an earlier Lookup of their chain where known, else
  // computed taking keys[0] as the chain's start.
  std::vector<Key128> HeadsOf(uint64_t ns, const std::vector<Key128>& keys);
  void RememberHeads(uint64_t ns, const std::vector<Key128>& chain);
  std::string ChooseHolder(const std::vector<std::string>& holders);
  void StartRun(std::shared_ptr<PullRun> run);
  void PullChunks(const std::shared_ptr<PullRun>& run, const std::string& info, size_t k);
  void VerifyAndCommit(PullRun& run, size_t begin, size_t end);
  // Runs `task` on a worker thread (checksums and commits of pulled chunks).
  void Post(std::function<void()> task);
  void WorkLoop();
  void FinishRun(const std::shared_ptr<PullRun>& run, absl::Status status);
  // Channel and state of a member by id; null when it is not in the roster.
  std::shared_ptr<PeerState> Peer(const std::string& id);
  void Record(PeerState& peer, const absl::Status& status, int64_t started_us);
  void ProbeMembers();
  // A Hello answer: remembers how to reach the peer and notices a restart (new incarnation).
  void TakeHello(PeerState& peer, const PeerHello& hello);
  // Records `incarnation` for `peer`; true when it differs from a known earlier one, or when the
  // peer was never heard from and `first_counts` (a caller's Hello: it just started).
  bool UpdateIncarnation(PeerState& peer, uint64_t incarnation, bool first_counts);
  // Queues re-announcements of the local blocks whose directory is `owner` (it restarted and
  // lost what it knew).
  void ReannounceOwnedBy(const std::string& owner);
  bool AnnounceStep();

  const ClusterOptions options_;
  const uint64_t incarnation_;
  BlockStore* const store_;
  ArenaPuller* const puller_;
  const std::byte* const arena_;
  const uint64_t arena_bytes_;
  const PeerConnector connect_;
  Directory directory_;

  absl::Mutex mu_;
  Roster roster_ ABSL_GUARDED_BY(mu_);
  std::optional<Placement> placement_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, std::shared_ptr<PeerState>> peers_ ABSL_GUARDED_BY(mu_);
  // Segment head of every local block (its placement), so gains and losses reach the right
  // directory and a roster change can re-announce what moved.
  absl::flat_hash_map<BlockId, Key128> heads_ ABSL_GUARDED_BY(mu_);

  // Segment heads of keys seen in lookups (chains from their start), so that an Acquire of a
  // later part of a chain asks the right directories. Bounded: cleared when full.
  static constexpr size_t kMaxHeadHints = 1 << 20;
  absl::Mutex hints_mu_;  // leaf
  absl::flat_hash_map<BlockId, Key128> head_hints_ ABSL_GUARDED_BY(hints_mu_);

  // Announcements waiting for the next flush, in the order the store reported them.
  struct Event {
    BlockId id;
    Key128 parent;
    bool gained = true;
  };
  absl::Mutex queue_mu_;
  std::vector<Event> queue_ ABSL_GUARDED_BY(queue_mu_);
  // Batches refused because the owner's roster differed: retried a few times.
  struct Pending {
    std::string owner;
    std::vector<KeyBatch> gained, lost;
    int attempts = 0;
  };
  std::deque<Pending> retry_ ABSL_GUARDED_BY(queue_mu_);

  std::atomic<uint64_t> stale_rejects_{0}, remote_hit_keys_{0}, remote_pulls_{0},
      remote_pull_bytes_{0}, remote_pull_failures_{0};
  std::atomic<int64_t> last_probe_ms_{0};
  absl::Mutex rng_mu_;  // leaf
  std::mt19937_64 rng_ ABSL_GUARDED_BY(rng_mu_){std::random_device{}()};
  std::atomic<int64_t> inflight_{0};  // asynchronous calls whose callbacks may still use this

  static constexpr int kWorkers = 2;
  absl::Mutex work_mu_;  // leaf
  std::deque<std::function<void()>> work_ ABSL_GUARDED_BY(work_mu_);
  bool stop_workers_ ABSL_GUARDED_BY(work_mu_) = false;
  std::vector<std::thread> workers_;
  std::unique_ptr<BackgroundLoop> announcer_;  // last: stopped first
};

}  // namespace kvtier
