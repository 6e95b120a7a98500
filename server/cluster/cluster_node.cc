#include "server/cluster/cluster_node.h"

#include <pthread.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_format.h"
#include "common/checksum.h"
#include "common/status_macros.h"
#include "server/cluster/segments.h"
#include "spdlog/spdlog.h"

namespace kvtier {
namespace {

int64_t NowUs() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Keys per Pin and per directory batch: well inside gRPC's 4 MiB message limit.
constexpr size_t kMaxRunKeys = 1024;
constexpr size_t kMaxUpdateKeys = 65536;
// Attempts for a directory update refused because the owner's roster differs or the owner is not
// reachable yet (every announce period): about two seconds for views to converge and peers to
// come up.
constexpr int kMaxUpdateAttempts = 200;

double Percentile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

}  // namespace

struct ClusterNode::PeerState {
  Member member;
  std::unique_ptr<PeerChannel> channel;
  absl::Mutex mu;
  std::string transport_info ABSL_GUARDED_BY(mu);
  uint64_t incarnation ABSL_GUARDED_BY(mu) = 0;  // as its last Hello said
  std::string state ABSL_GUARDED_BY(mu) = "unknown";
  std::string last_error ABSL_GUARDED_BY(mu);
  uint64_t calls ABSL_GUARDED_BY(mu) = 0;
  uint64_t errors ABSL_GUARDED_BY(mu) = 0;
  uint64_t bytes_in ABSL_GUARDED_BY(mu) = 0;
  uint64_t pulls ABSL_GUARDED_BY(mu) = 0;
  std::vector<double> latency_ms ABSL_GUARDED_BY(mu);  // ring of the last kSamples
  std::atomic<int> pulls_in_flight{0};                 // runs from this holder not finished
  size_t next_sample ABSL_GUARDED_BY(mu) = 0;
  static constexpr size_t kSamples = 256;
};

// One contiguous run of a chain pulled from one holder.
struct ClusterNode::PullRun {
  uint64_t ns = 0;
  std::vector<Key128> keys;
  std::optional<Key128> parent;
  std::shared_ptr<PeerState> holder;
  uint64_t roster_version = 0;
  PinResult pin;
  WriteGrant grant;
  std::function<void()> finished;  // counts the run down in PullMissing
  bool counted = false;            // in holder->pulls_in_flight
};

ClusterNode::ClusterNode(ClusterOptions options, BlockStore* store, ArenaPuller* puller,
                         const std::byte* arena, uint64_t arena_bytes, PeerConnector connect)
    : options_(std::move(options)),
      incarnation_((std::random_device{}() * 0x9E3779B97F4A7C15ULL) ^
                   static_cast<uint64_t>(NowUs()) ^ 1),
      store_(store),
      puller_(puller),
      arena_(arena),
      arena_bytes_(arena_bytes),
      connect_(std::move(connect)) {
  last_probe_ms_.store(NowUs() / 1000);  // the first probe one period after start
  for (int i = 0; i < kWorkers; ++i) {
    workers_.emplace_back([this] {
      pthread_setname_np(pthread_self(), "kvt-cluster");  // verifies pulled blocks
      WorkLoop();
    });
  }
  announcer_ = std::make_unique<BackgroundLoop>(absl::Milliseconds(options_.announce_period_ms),
                                                [this] { return AnnounceStep(); });
}

ClusterNode::~ClusterNode() {
  announcer_.reset();
  // Calls in flight hold PeerState (shared) and `this`: wait them out (each is bounded by its
  // deadline) before the members go.
  const int64_t give_up = NowUs() + 3'000'000LL * std::max(1, options_.peer_timeout_ms / 1000);
  while (inflight_.load() > 0 && NowUs() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  {
    absl::MutexLock lock(&work_mu_);
    stop_workers_ = true;
  }
  for (std::thread& t : workers_) t.join();
}

absl::Status ClusterNode::SetRoster(Roster roster) {
  ASSIGN_OR_RETURN(Placement placement, Placement::Build(roster));
  const bool has_self = std::any_of(roster.members.begin(), roster.members.end(),
                                    [&](const Member& m) { return m.id == options_.self_id; });
  if (!has_self) {
    return absl::InvalidArgumentError(
        absl::StrFormat("roster: this node (%s) is not one of its members", options_.self_id));
  }
  absl::flat_hash_set<std::string> alive;
  for (const Member& m : roster.members) alive.insert(m.id);
  std::vector<BlockId> moved;
  std::vector<std::string> readdressed;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, head] : heads_) {
      const uint64_t h = SegmentHash(id.ns, head);
      const std::string& now_owner = placement.Owner(h).id;
      if (!placement_ || placement_->Owner(h).id != now_owner) {
        moved.push_back(id);
      }
    }
    absl::flat_hash_map<std::string, std::shared_ptr<PeerState>> peers;
    for (const Member& m : roster.members) {
      if (m.id == options_.self_id) continue;
      auto it = peers_.find(m.id);
      if (it != peers_.end() && it->second->member == m) {
        peers.emplace(m.id, it->second);
        continue;
      }
      // A member back at a new address (or slot) was restarted: it lost its directory.
      if (it != peers_.end()) readdressed.push_back(m.id);
      auto peer = std::make_shared<PeerState>();
      peer->member = m;
      peer->channel = connect_(m);
      peers.emplace(m.id, std::move(peer));
    }
    peers_ = std::move(peers);
    roster_ = std::move(roster);
    if (!placement_) last_probe_ms_.store(0);  // first roster: say Hello to everyone at once
    placement_ = std::move(placement);
  }
  directory_.RetainHolders(alive);
  for (const std::string& id : readdressed) ReannounceOwnedBy(id);
  if (!moved.empty()) {
    absl::MutexLock lock(&queue_mu_);
    for (const BlockId& id : moved) queue_.push_back(Event{id, Key128{}, true});
  }
  spdlog::info("cluster: roster version {} with {} members; {} local blocks re-announced",
               roster_version(), alive.size(), moved.size());
  return absl::OkStatus();
}

uint64_t ClusterNode::roster_version() {
  absl::MutexLock lock(&mu_);
  return roster_.version;
}

absl::Status ClusterNode::CheckRosterVersion(uint64_t roster_version) {
  if (roster_version == 0) {
    return absl::InvalidArgumentError("header.roster_version: missing (0)");
  }
  const uint64_t ours = this->roster_version();
  if (roster_version != ours) {
    stale_rejects_.fetch_add(1, std::memory_order_relaxed);
    return absl::FailedPreconditionError(absl::StrFormat(
        "header.roster_version: %d differs from this node's %d (the two views of the membership "
        "disagree; retry once they converge)",
        roster_version, ours));
  }
  return absl::OkStatus();
}

bool ClusterNode::IsPeer(const std::string& id) {
  absl::MutexLock lock(&mu_);
  return peers_.contains(id);
}

std::shared_ptr<ClusterNode::PeerState> ClusterNode::Peer(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = peers_.find(id);
  return it == peers_.end() ? nullptr : it->second;
}

void ClusterNode::Record(PeerState& peer, const absl::Status& status, int64_t started_us) {
  const double ms = static_cast<double>(NowUs() - started_us) / 1000.0;
  absl::MutexLock lock(&peer.mu);
  ++peer.calls;
  if (status.ok()) {
    peer.state = "alive";
    if (peer.latency_ms.size() < PeerState::kSamples) {
      peer.latency_ms.push_back(ms);
    } else {
      peer.latency_ms[peer.next_sample++ % PeerState::kSamples] = ms;
    }
  } else {
    ++peer.errors;
    peer.last_error = std::string(status.message());
    // A refusal for a different roster still proves the peer is up.
    peer.state = absl::IsFailedPrecondition(status) ? "alive" : "unreachable";
  }
}

// ---------------------------------------------------------------------------------------------
// Announcements: the store's gains and losses, batched per directory owner.

void ClusterNode::OnBlockReady(const BlockId& id, const Key128& parent) {
  absl::MutexLock lock(&queue_mu_);
  queue_.push_back(Event{id, parent, true});
}

void ClusterNode::OnBlockGone(const BlockId& id) {
  absl::MutexLock lock(&queue_mu_);
  queue_.push_back(Event{id, Key128{}, false});
}

std::vector<Member> ClusterNode::PlacementOrder(uint64_t hash, size_t n) {
  absl::MutexLock lock(&mu_);
  std::vector<Member> out;
  if (!placement_) return out;
  for (uint32_t i : placement_->TopR(hash, n)) out.push_back(placement_->members()[i]);
  return out;
}

size_t ClusterNode::FlushAnnouncements() {
  size_t total = 0;
  for (int i = 0; i < 100; ++i) {
    {
      absl::MutexLock lock(&queue_mu_);
      if (queue_.empty()) break;
    }
    AnnounceStep();
    ++total;
  }
  return total;
}

bool ClusterNode::AnnounceStep() {
  std::vector<Event> events;
  std::deque<Pending> retries;
  {
    absl::MutexLock lock(&queue_mu_);
    events.swap(queue_);
    retries.swap(retry_);
  }
  if (events.empty() && retries.empty()) {
    ProbeMembers();
    return false;
  }
  // owner id -> (ns -> keys) for gains and for losses.
  struct Batch {
    absl::flat_hash_map<uint64_t, std::vector<Key128>> gained, lost;
  };
  absl::flat_hash_map<std::string, Batch> batches;
  uint64_t version = 0;
  {
    absl::MutexLock lock(&mu_);
    if (!placement_) {
      // No roster yet: keep everything for later.
      absl::MutexLock qlock(&queue_mu_);
      queue_.insert(queue_.begin(), events.begin(), events.end());
      for (Pending& p : retries) retry_.push_back(std::move(p));
      return false;
    }
    version = roster_.version;
    for (const Event& ev : events) {
      Key128 head;
      if (ev.gained) {
        auto it = heads_.find(ev.id);
        if (it != heads_.end()) {
          head = it->second;  // already known: a re-announcement
        } else if (ev.parent.IsZero() || StartsSegment(ev.id.key)) {
          head = ev.id.key;
        } else if (auto p = heads_.find(BlockId{ev.id.ns, ev.parent}); p != heads_.end()) {
          head = p->second;
        } else {
          head = ev.id.key;  // parent unknown here: readers will likely miss it (one miss)
        }
        heads_[ev.id] = head;
      } else {
        auto it = heads_.find(ev.id);
        if (it == heads_.end()) continue;
        head = it->second;
        heads_.erase(it);
      }
      const std::string& owner = placement_->Owner(SegmentHash(ev.id.ns, head)).id;
      Batch& b = batches[owner];
      (ev.gained ? b.gained : b.lost)[ev.id.ns].push_back(ev.id.key);
    }
  }
  auto to_batches = [](absl::flat_hash_map<uint64_t, std::vector<Key128>>& by_ns) {
    std::vector<KeyBatch> out;
    for (auto& [ns, keys] : by_ns) {
      for (size_t i = 0; i < keys.size(); i += kMaxUpdateKeys) {
        const size_t end = std::min(keys.size(), i + kMaxUpdateKeys);
        out.push_back(KeyBatch{ns, std::vector<Key128>(keys.begin() + i, keys.begin() + end)});
      }
    }
    return out;
  };
  for (auto& [owner, b] : batches) {
    retries.push_back(Pending{owner, to_batches(b.gained), to_batches(b.lost), 0});
  }
  for (Pending& p : retries) {
    if (p.owner == options_.self_id) {
      ApplyDirectoryUpdate(options_.self_id, p.gained, p.lost);
      continue;
    }
    std::shared_ptr<PeerState> peer = Peer(p.owner);
    if (!peer) continue;  // left the roster: its directory is gone with it
    const int64_t started = NowUs();
    auto pending = std::make_shared<Pending>(std::move(p));
    inflight_.fetch_add(1);
    peer->channel->UpdateDirectory(
        version, pending->gained, pending->lost,
        [this, peer, pending, started](absl::StatusOr<uint32_t> applied) {
          Record(*peer, applied.status(), started);
          // Refused for a lagging roster, or the peer not reachable yet (starting, restarting):
          // try again for a while; a peer gone for good drops out of the roster meanwhile.
          const absl::Status& st = applied.status();
          const bool transient = absl::IsFailedPrecondition(st) || absl::IsUnavailable(st) ||
                                 absl::IsDeadlineExceeded(st);
          if (transient && ++pending->attempts < kMaxUpdateAttempts) {
            absl::MutexLock lock(&queue_mu_);
            retry_.push_back(std::move(*pending));
          } else if (!applied.ok()) {
            spdlog::debug("cluster: directory update to {} lost: {}", pending->owner,
                          applied.status().ToString());
          }
          inflight_.fetch_sub(1);
        });
  }
  return !events.empty();
}

uint32_t ClusterNode::ApplyDirectoryUpdate(const std::string& from,
                                           const std::vector<KeyBatch>& gained,
                                           const std::vector<KeyBatch>& lost) {
  uint32_t n = 0;
  for (const KeyBatch& b : gained) {
    for (const Key128& k : b.keys) directory_.Add(BlockId{b.ns, k}, from);
    n += b.keys.size();
  }
  for (const KeyBatch& b : lost) {
    for (const Key128& k : b.keys) directory_.Remove(BlockId{b.ns, k}, from);
    n += b.keys.size();
  }
  return n;
}

std::vector<std::vector<std::string>> ClusterNode::LookupDirectory(
    uint64_t ns, const std::vector<Key128>& keys) {
  std::vector<std::vector<std::string>> out;
  out.reserve(keys.size());
  for (const Key128& k : keys) out.push_back(directory_.Holders(BlockId{ns, k}));
  return out;
}

void ClusterNode::LookupRootHolders(
    uint64_t ns, std::vector<Key128> keys,
    std::function<void(std::vector<std::vector<std::string>>, size_t)> done) {
  std::vector<Key128> heads = keys;  // each chunk is its own segment head
  AskDirectories(ns, std::move(keys), heads, /*need_peers=*/false, std::move(done));
}

// Asks each key's directory (the owner of its segment head: this node's own directory, or a peer's
// by LookupDirectory, all peers at once, each call within the channel's deadline) who holds it.
// `done` gets one list per key, with this node and non-members dropped, and how many keys'
// directories did not answer (their lists are empty). With `need_peers` and no other member, it
// answers at once with empty lists.
void ClusterNode::AskDirectories(uint64_t ns, std::vector<Key128> keys,
                                 const std::vector<Key128>& heads, bool need_peers,
                                 std::function<void(HolderLists, size_t)> done) {
  // owner -> indices of the keys it is the directory of
  absl::flat_hash_map<std::string, std::vector<size_t>> groups;
  uint64_t version = 0;
  {
    absl::MutexLock lock(&mu_);
    if (!placement_ || (need_peers && roster_.members.size() < 2)) {
      done(HolderLists(keys.size()), 0);
      return;
    }
    version = roster_.version;
    for (size_t i = 0; i < keys.size(); ++i) {
      groups[placement_->Owner(SegmentHash(ns, heads[i])).id].push_back(i);
    }
  }
  struct State {
    absl::Mutex mu;
    HolderLists lists;
    size_t remaining = 0;
    size_t failed = 0;
  };
  auto state = std::make_shared<State>();
  state->lists.resize(keys.size());
  state->remaining = groups.size() + 1;  // +1: the loop below, so `done` runs once, after it
  auto finish = [this, state, done = std::move(done)](size_t failed) {
    HolderLists lists;
    size_t failures = 0;
    {
      absl::MutexLock lock(&state->mu);
      state->failed += failed;
      if (--state->remaining > 0) return;
      lists = std::move(state->lists);
      failures = state->failed;
    }
    {
      // Holders that are this node (a stale entry: the local lookup missed) or not members any
      // more are dropped; peers_ holds exactly the other members.
      absl::MutexLock lock(&mu_);
      for (auto& l : lists) {
        size_t kept = 0;
        for (size_t i = 0; i < l.size(); ++i) {
          if (!peers_.contains(l[i])) continue;
          if (kept != i) l[kept] = std::move(l[i]);
          ++kept;
        }
        l.resize(kept);
      }
    }
    done(std::move(lists), failures);
  };
  for (auto& [owner, idx] : groups) {
    if (owner == options_.self_id) {
      {
        absl::MutexLock lock(&state->mu);
        for (size_t i : idx) state->lists[i] = directory_.Holders(BlockId{ns, keys[i]});
      }
      finish(0);
      continue;
    }
    std::shared_ptr<PeerState> peer = Peer(owner);
    if (!peer) {
      finish(idx.size());
      continue;
    }
    std::vector<Key128> asked;
    asked.reserve(idx.size());
    for (size_t i : idx) asked.push_back(keys[i]);
    const int64_t started = NowUs();
    inflight_.fetch_add(1);
    // Bounded by the channel's per-call deadline (peer_timeout_ms): a dead directory answers
    // DEADLINE_EXCEEDED or UNAVAILABLE, never nothing.
    peer->channel->LookupDirectory(
        version, ns, std::move(asked),
        [this, peer, state, idx = std::move(idx), finish,
         started](absl::StatusOr<std::vector<std::vector<std::string>>> holders) {
          Record(*peer, holders.status(), started);
          const bool ok = holders.ok() && holders->size() == idx.size();
          if (ok) {
            absl::MutexLock lock(&state->mu);
            for (size_t j = 0; j < idx.size(); ++j) state->lists[idx[j]] = std::move((*holders)[j]);
          }
          finish(ok ? 0 : idx.size());
          inflight_.fetch_sub(1);
        });
  }
  finish(0);
}

void ClusterNode::ProbeMembers() {
  const int64_t now_ms = NowUs() / 1000;
  if (now_ms - last_probe_ms_.load() < options_.hello_period_ms) return;
  ProbeMembersNow();
}

bool ClusterNode::UpdateIncarnation(PeerState& peer, uint64_t incarnation, bool first_counts) {
  if (incarnation == 0) return false;
  absl::MutexLock lock(&peer.mu);
  const bool changed = peer.incarnation == 0 ? first_counts : incarnation != peer.incarnation;
  peer.incarnation = incarnation;
  return changed;
}

void ClusterNode::TakeHello(PeerState& peer, const PeerHello& hello) {
  {
    absl::MutexLock lock(&peer.mu);
    peer.transport_info = hello.transport_info;
  }
  if (UpdateIncarnation(peer, hello.incarnation, /*first_counts=*/false)) {
    spdlog::info("cluster: {} restarted; re-announcing the blocks it is the directory of",
                 peer.member.id);
    ReannounceOwnedBy(peer.member.id);
  }
}

void ClusterNode::NoteIncarnation(const std::string& member, uint64_t incarnation) {
  std::shared_ptr<PeerState> peer = Peer(member);
  // A daemon's first Hellos go out right after it starts: its directory is empty, so whatever
  // it is the directory of is announced to it (nothing, in a cluster that starts together).
  if (peer && UpdateIncarnation(*peer, incarnation, /*first_counts=*/true)) {
    ReannounceOwnedBy(member);
  }
}

void ClusterNode::ReannounceOwnedBy(const std::string& owner) {
  std::vector<BlockId> ids;
  {
    absl::MutexLock lock(&mu_);
    if (!placement_) return;
    for (const auto& [id, head] : heads_) {
      if (placement_->Owner(SegmentHash(id.ns, head)).id == owner) ids.push_back(id);
    }
  }
  absl::MutexLock lock(&queue_mu_);
  for (const BlockId& id : ids) queue_.push_back(Event{id, Key128{}, true});
}

void ClusterNode::ProbeMembersNow() {
  last_probe_ms_.store(NowUs() / 1000);
  std::vector<std::shared_ptr<PeerState>> peers;
  uint64_t version = 0;
  {
    absl::MutexLock lock(&mu_);
    if (roster_.members.size() > kProbeAll) return;
    version = roster_.version;
    for (auto& [id, peer] : peers_) peers.push_back(peer);
  }
  for (auto& peer : peers) {
    const int64_t started = NowUs();
    inflight_.fetch_add(1);
    peer->channel->Hello(version, incarnation_,
                         [this, peer, started](absl::StatusOr<PeerHello> hello) {
                           Record(*peer, hello.status(), started);
                           if (hello.ok()) TakeHello(*peer, *hello);
                           inflight_.fetch_sub(1);
                         });
  }
}

// ---------------------------------------------------------------------------------------------
// Lookups and pulls.

void ClusterNode::ResolveHolders(uint64_t ns, const std::vector<Key128>& keys, size_t from,
                                 std::function<void(HolderLists)> done) {
  const std::vector<Key128> all_heads = HeadsOf(ns, keys);
  std::vector<Key128> asked(keys.begin() + static_cast<std::ptrdiff_t>(from), keys.end());
  std::vector<Key128> heads(all_heads.begin() + static_cast<std::ptrdiff_t>(from), all_heads.end());
  AskDirectories(ns, std::move(asked), heads, /*need_peers=*/true,
                 [done = std::move(done)](HolderLists lists, size_t) {
                   // Cut at the first key nobody holds: a pull serves a prefix.
                   size_t n = 0;
                   while (n < lists.size() && !lists[n].empty()) ++n;
                   lists.resize(n);
                   done(std::move(lists));
                 });
}

std::vector<Key128> ClusterNode::HeadsOf(uint64_t ns, const std::vector<Key128>& keys) {
  std::vector<Key128> heads(keys.size());
  absl::MutexLock lock(&hints_mu_);
  for (size_t i = 0; i < keys.size(); ++i) {
    if (auto it = head_hints_.find(BlockId{ns, keys[i]}); it != head_hints_.end()) {
      heads[i] = it->second;
    } else {
      heads[i] = (i == 0 || StartsSegment(keys[i])) ? keys[i] : heads[i - 1];
    }
  }
  return heads;
}

void ClusterNode::RememberHeads(uint64_t ns, const std::vector<Key128>& chain) {
  const std::vector<Key128> heads = SegmentHeads(chain);
  absl::MutexLock lock(&hints_mu_);
  if (head_hints_.size() + chain.size() > kMaxHeadHints) head_hints_.clear();
  for (size_t i = 0; i < chain.size(); ++i) head_hints_[BlockId{ns, chain[i]}] = heads[i];
}

void ClusterNode::Lookup(uint64_t ns, std::vector<Key128> keys, LookupAnswer local,
                         std::function<void(LookupAnswer)> done) {
  // A lookup names a chain from its start, so its segment heads are certain: remember them for
  // the Acquire calls that follow, which may ask for any part of the chain.
  RememberHeads(ns, keys);
  const size_t from = local.prefix_blocks;
  if (from >= keys.size()) {
    done(std::move(local));
    return;
  }
  ResolveHolders(ns, keys, from,
                 [this, local = std::move(local), done = std::move(done)](HolderLists lists) {
                   LookupAnswer answer = local;
                   answer.prefix_blocks += lists.size();
                   answer.tiers.insert(answer.tiers.end(), lists.size(), TierId::kRemote);
                   remote_hit_keys_.fetch_add(lists.size(), std::memory_order_relaxed);
                   done(std::move(answer));
                 });
}

void ClusterNode::PullMissing(uint64_t ns, std::vector<Key128> keys, size_t from,
                              std::function<void()> done) {
  if (from >= keys.size()) {
    done();
    return;
  }
  auto chain = std::make_shared<std::vector<Key128>>(std::move(keys));
  ResolveHolders(ns, *chain, from, [this, ns, chain, from, done](HolderLists lists) {
    if (lists.empty()) {
      done();
      return;
    }
    // Runs of consecutive keys from one holder, keeping the previous holder while it has them.
    std::vector<std::shared_ptr<PullRun>> runs;
    uint64_t version = roster_version();
    std::string current;
    for (size_t j = 0; j < lists.size(); ++j) {
      const std::vector<std::string>& l = lists[j];
      if (current.empty() || std::find(l.begin(), l.end(), current) == l.end() ||
          runs.back()->keys.size() >= kMaxRunKeys) {
        if (current.empty() || std::find(l.begin(), l.end(), current) == l.end()) {
          current = ChooseHolder(l);
        }
        auto run = std::make_shared<PullRun>();
        run->ns = ns;
        const size_t i = from + j;
        if (i > 0) run->parent = (*chain)[i - 1];
        run->holder = Peer(current);
        run->roster_version = version;
        runs.push_back(std::move(run));
      }
      runs.back()->keys.push_back((*chain)[from + j]);
    }
    auto remaining = std::make_shared<std::atomic<size_t>>(runs.size());
    for (auto& run : runs) {
      run->finished = [remaining, done] {
        if (remaining->fetch_sub(1) == 1) done();
      };
      StartRun(run);
    }
  });
}

void ClusterNode::PullFrom(uint64_t ns, std::vector<Key128> keys, const std::string& holder,
                           std::function<void()> done) {
  std::shared_ptr<PeerState> peer = holder == options_.self_id ? nullptr : Peer(holder);
  if (!peer || keys.empty()) {
    done();
    return;
  }
  auto run = std::make_shared<PullRun>();
  run->ns = ns;
  run->keys = std::move(keys);
  run->holder = std::move(peer);
  run->roster_version = roster_version();
  run->finished = std::move(done);
  StartRun(run);
}

// Two random choices among the holders, the one with fewer pulls from here in flight: reads of a
// popular chain spread over the daemons that have copies instead of all landing on its producer.
std::string ClusterNode::ChooseHolder(const std::vector<std::string>& holders) {
  if (holders.size() == 1) return holders[0];
  uint64_t r;
  {
    absl::MutexLock lock(&rng_mu_);
    r = rng_();
  }
  const std::string& a = holders[r % holders.size()];
  const std::string& b = holders[(r / holders.size()) % holders.size()];
  std::shared_ptr<PeerState> pa = Peer(a), pb = Peer(b);
  if (!pa || !pb) return pa ? a : b;
  return pb->pulls_in_flight.load() < pa->pulls_in_flight.load() ? b : a;
}

void ClusterNode::FinishRun(const std::shared_ptr<PullRun>& run, absl::Status status) {
  if (run->holder && run->counted) run->holder->pulls_in_flight.fetch_sub(1);
  if (!status.ok()) {
    remote_pull_failures_.fetch_add(run->keys.size(), std::memory_order_relaxed);
    spdlog::debug("cluster: pull of {} blocks from {} failed: {}", run->keys.size(),
                  run->holder ? run->holder->member.id : "?", status.ToString());
  }
  if (run->pin.lease_id != 0 && run->holder) {
    inflight_.fetch_add(1);
    run->holder->channel->Unpin(run->roster_version, {run->pin.lease_id},
                                [this](absl::StatusOr<uint32_t>) { inflight_.fetch_sub(1); });
  }
  if (run->grant.lease_id != 0) {
    // Frees the slots of blocks that were not committed (failed pulls); committed ones stay.
    const uint64_t lease = run->grant.lease_id;
    (void)store_->Release(std::span<const uint64_t>(&lease, 1));
  }
  run->finished();
}

void ClusterNode::StartRun(std::shared_ptr<PullRun> run) {
  if (!run->holder) {
    FinishRun(run, absl::UnavailableError("holder left the roster"));
    return;
  }
  if (!run->counted) {
    run->counted = true;
    run->holder->pulls_in_flight.fetch_add(1);
  }
  std::string info;
  {
    absl::MutexLock lock(&run->holder->mu);
    info = run->holder->transport_info;
  }
  if (info.empty()) {
    // First contact: learn how to reach its arena, then go on.
    const int64_t started = NowUs();
    inflight_.fetch_add(1);
    run->holder->channel->Hello(
        run->roster_version, incarnation_, [this, run, started](absl::StatusOr<PeerHello> hello) {
          Record(*run->holder, hello.status(), started);
          if (!hello.ok() || hello->transport_info.empty()) {
            FinishRun(
                run, hello.ok() ? absl::UnavailableError("peer has no transport") : hello.status());
          } else {
            TakeHello(*run->holder, *hello);
            StartRun(run);
          }
          inflight_.fetch_sub(1);
        });
    return;
  }
  const int64_t started = NowUs();
  inflight_.fetch_add(1);
  run->holder->channel->Pin(
      run->roster_version, run->ns, run->keys, options_.pin_lease_ms,
      [this, run, info, started](absl::StatusOr<PinResult> pin) {
        Record(*run->holder, pin.status(), started);
        if (!pin.ok()) {
          FinishRun(run, pin.status());
          inflight_.fetch_sub(1);
          return;
        }
        run->pin = std::move(*pin);
        const size_t k = run->pin.offsets.size();
        if (k == 0 || run->pin.checksums.size() != k) {
          FinishRun(run, absl::NotFoundError("the holder no longer has the blocks"));
          inflight_.fetch_sub(1);
          return;
        }
        absl::StatusOr<WriteGrant> grant =
            store_->Allocate(run->ns, std::span<const Key128>(run->keys.data(), k), run->parent,
                             options_.pin_lease_ms);
        if (!grant.ok()) {
          FinishRun(run, grant.status());
          inflight_.fetch_sub(1);
          return;
        }
        run->grant = std::move(*grant);
        if (run->grant.block_bytes != run->pin.block_bytes) {
          FinishRun(run, absl::FailedPreconditionError(
                             absl::StrFormat("block size differs: holder %d, here %d",
                                             run->pin.block_bytes, run->grant.block_bytes)));
          inflight_.fetch_sub(1);
          return;
        }
        PullChunks(run, info, k);
        inflight_.fetch_sub(1);
      });
}

// The run's blocks move in chunks of about kChunkBytes, all posted at once: UCX keeps the wire
// busy while the workers verify and commit the chunks that have landed.
void ClusterNode::PullChunks(const std::shared_ptr<PullRun>& run, const std::string& info,
                             size_t k) {
  constexpr uint64_t kChunkBytes = 8ULL << 20;
  const uint64_t bytes = run->grant.block_bytes;
  const size_t per_chunk = std::max<uint64_t>(1, kChunkBytes / std::max<uint64_t>(1, bytes));
  std::vector<std::pair<size_t, size_t>> chunks;  // [begin, end) of key indexes with bytes to move
  for (size_t j = 0; j < k; j += per_chunk) chunks.emplace_back(j, std::min(k, j + per_chunk));
  auto remaining = std::make_shared<std::atomic<size_t>>(chunks.size());
  auto failure = std::make_shared<absl::Mutex>();
  auto first_error = std::make_shared<absl::Status>();
  const int64_t started = NowUs();
  for (const auto& [begin, end] : chunks) {
    std::vector<PullOp> ops;
    for (size_t j = begin; j < end; ++j) {
      if (run->grant.offsets[j] == kExistsOffset) continue;
      ops.push_back(PullOp{run->pin.offsets[j], run->grant.offsets[j], bytes});
    }
    auto chunk_done = [this, run, remaining, failure, first_error, started, begin = begin,
                       end = end](absl::Status status) {
      if (!status.ok()) {
        Record(*run->holder, status, started);
        absl::MutexLock lock(failure.get());
        if (first_error->ok()) *first_error = status;
      } else {
        VerifyAndCommit(*run, begin, end);
      }
      if (remaining->fetch_sub(1) == 1) {
        absl::Status result;
        {
          absl::MutexLock lock(failure.get());
          result = *first_error;
        }
        FinishRun(run, result);
      }
      inflight_.fetch_sub(1);
    };
    inflight_.fetch_add(1);
    if (ops.empty()) {
      chunk_done(absl::OkStatus());
      continue;
    }
    puller_->Pull(
        info, std::move(ops), options_.peer_timeout_ms,
        [this, chunk_done = std::move(chunk_done)](absl::Status status) mutable {
          // Off the transport's progress thread: hashing a chunk takes a while.
          Post([chunk_done = std::move(chunk_done), status]() mutable { chunk_done(status); });
        });
  }
}

// Checksums on arrival: a block whose bytes differ is not committed (a miss, its slot freed with
// the run's write lease).
void ClusterNode::VerifyAndCommit(PullRun& run, size_t begin, size_t end) {
  const uint64_t bytes = run.grant.block_bytes;
  std::vector<Key128> good;
  std::vector<uint64_t> sums;
  for (size_t j = begin; j < end; ++j) {
    const uint64_t off = run.grant.offsets[j];
    if (off == kExistsOffset) continue;
    if (off + bytes > arena_bytes_ || BlockChecksum(arena_ + off, bytes) != run.pin.checksums[j]) {
      spdlog::warn("cluster: block {} from {} failed its checksum: dropped", KeyToHex(run.keys[j]),
                   run.holder->member.id);
      remote_pull_failures_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    good.push_back(run.keys[j]);
    sums.push_back(run.pin.checksums[j]);
  }
  if (good.empty()) return;
  absl::StatusOr<uint32_t> committed = store_->Commit(run.grant.lease_id, good, sums);
  if (!committed.ok()) return;
  remote_pulls_.fetch_add(good.size(), std::memory_order_relaxed);
  remote_pull_bytes_.fetch_add(good.size() * bytes, std::memory_order_relaxed);
  absl::MutexLock lock(&run.holder->mu);
  run.holder->pulls += good.size();
  run.holder->bytes_in += good.size() * bytes;
}

void ClusterNode::Post(std::function<void()> task) {
  absl::MutexLock lock(&work_mu_);
  work_.push_back(std::move(task));
}

void ClusterNode::WorkLoop() {
  for (;;) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&work_mu_);
      work_mu_.Await(absl::Condition(
          +[](ClusterNode* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->work_mu_) {
            return self->stop_workers_ || !self->work_.empty();
          },
          this));
      if (work_.empty()) return;  // stopping, and nothing left
      task = std::move(work_.front());
      work_.pop_front();
    }
    task();
  }
}

// Holder side of a pull.
void ClusterNode::Pin(uint64_t ns, std::vector<Key128> keys, uint32_t lease_ms,
                      PeerChannel::Done<PinResult> done) {
  auto keys_ptr = std::make_shared<std::vector<Key128>>(std::move(keys));
  inflight_.fetch_add(1);
  store_->AcquireAsync(
      ns, *keys_ptr, lease_ms,
      [this, ns, keys_ptr, done = std::move(done)](absl::StatusOr<ReadGrant> grant) {
        if (!grant.ok()) {
          done(grant.status());
          inflight_.fetch_sub(1);
          return;
        }
        PinResult r;
        r.lease_id = grant->lease_id;
        r.block_bytes = grant->block_bytes;
        r.offsets = grant->offsets;
        r.checksums.reserve(r.offsets.size());
        for (size_t j = 0; j < r.offsets.size(); ++j) {
          const BlockId id{ns, (*keys_ptr)[j]};
          uint64_t sum = store_->Checksum(id).value_or(0);
          if (sum == 0) {
            // Committed without a checksum: take it now, while the block is pinned.
            sum = BlockChecksum(arena_ + r.offsets[j], r.block_bytes);
            store_->SetChecksum(id, sum);
          }
          r.checksums.push_back(sum);
        }
        done(std::move(r));
        inflight_.fetch_sub(1);
      });
}

absl::StatusOr<uint32_t> ClusterNode::Unpin(const std::vector<uint64_t>& lease_ids) {
  return store_->Release(lease_ids);
}

ClusterView ClusterNode::View() {
  ClusterView v;
  std::vector<Member> members;
  absl::flat_hash_map<std::string, std::shared_ptr<PeerState>> peers;
  {
    absl::MutexLock lock(&mu_);
    v.roster_version = roster_.version;
    members = roster_.members;
    peers = peers_;
  }
  for (const Member& m : members) {
    MemberView mv;
    mv.member = m;
    if (m.id == options_.self_id) {
      mv.state = "self";
    } else if (auto it = peers.find(m.id); it != peers.end()) {
      PeerState& p = *it->second;
      absl::MutexLock lock(&p.mu);
      mv.state = p.state;
      mv.calls = p.calls;
      mv.errors = p.errors;
      mv.bytes_in = p.bytes_in;
      mv.pulls = p.pulls;
      mv.last_error = p.last_error;
      mv.latency_ms_p50 = Percentile(p.latency_ms, 0.5);
      mv.latency_ms_p99 = Percentile(p.latency_ms, 0.99);
    }
    v.members.push_back(std::move(mv));
  }
  v.directory_entries = directory_.size();
  v.stale_roster_rejects = stale_rejects_.load();
  v.remote_hit_keys = remote_hit_keys_.load();
  v.remote_pulls = remote_pulls_.load();
  v.remote_pull_bytes = remote_pull_bytes_.load();
  v.remote_pull_failures = remote_pull_failures_.load();
  return v;
}

}  // namespace kvtier
