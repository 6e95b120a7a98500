#include "server/cluster/etcd_membership.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"

namespace kvtier {
namespace {

// Slots are dense from 0, so this only bounds a scan that would otherwise never end.
constexpr uint32_t kMaxSlots = 1u << 16;
// While etcd is unreachable, how often upkeep tries again (at most the keep-alive interval).
constexpr absl::Duration kRetryInterval = absl::Milliseconds(500);
constexpr absl::Duration kRevokeTimeout = absl::Seconds(1);

bool ValidName(const std::string& name) {
  return !name.empty() && name.find('/') == std::string::npos;
}

std::string NodeJson(const Member& member) {
  nlohmann::json j = {{"id", member.id}, {"address", member.address}, {"slot", member.slot}};
  // Replace invalid UTF-8 rather than throw: the value is ours to write, never to crash on.
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// A node value as written by NodeJson, for the node `id` its key names; nullopt (and `why`) when
// it is not one.
std::optional<Member> ParseNode(const std::string& id, const std::string& value, std::string* why) {
  const nlohmann::json j = nlohmann::json::parse(value, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    *why = "not a JSON object";
    return std::nullopt;
  }
  const auto id_it = j.find("id");
  const auto address_it = j.find("address");
  const auto slot_it = j.find("slot");
  if (id_it == j.end() || !id_it->is_string() || address_it == j.end() ||
      !address_it->is_string() || slot_it == j.end() || !slot_it->is_number_unsigned()) {
    *why = "needs string \"id\", string \"address\" and unsigned \"slot\"";
    return std::nullopt;
  }
  Member member;
  member.id = id_it->get<std::string>();
  member.address = address_it->get<std::string>();
  const uint64_t slot = slot_it->get<uint64_t>();
  if (member.id != id) {
    *why = absl::StrCat("id \"", member.id, "\" does not match its key");
    return std::nullopt;
  }
  if (member.address.empty()) {
    *why = "empty address";
    return std::nullopt;
  }
  if (slot >= kMaxSlots) {
    *why = absl::StrCat("slot ", slot, " out of range");
    return std::nullopt;
  }
  member.slot = static_cast<uint32_t>(slot);
  return member;
}

}  // namespace

std::string EtcdMembership::NodesPrefix(const std::string& cluster) {
  return absl::StrCat("/kvtier/", cluster, "/nodes/");
}

std::string EtcdMembership::SlotsPrefix(const std::string& cluster) {
  return absl::StrCat("/kvtier/", cluster, "/slots/");
}

EtcdMembership::EtcdMembership(Options options, std::unique_ptr<EtcdClient> client)
    : options_(std::move(options)),
      nodes_prefix_(NodesPrefix(options_.cluster)),
      slots_prefix_(SlotsPrefix(options_.cluster)),
      node_key_(nodes_prefix_ + options_.self_id),
      client_(std::move(client)),
      since_(absl::Now()),
      keepalive_interval_(absl::Seconds(options_.ttl_s) / 3) {}

absl::StatusOr<std::unique_ptr<EtcdMembership>> EtcdMembership::Start(Options options) {
  if (!ValidName(options.cluster)) {
    return absl::InvalidArgumentError("etcd membership: cluster name must be non-empty, no '/'");
  }
  if (!ValidName(options.self_id)) {
    return absl::InvalidArgumentError("etcd membership: node id must be non-empty, no '/'");
  }
  if (options.self_address.empty()) {
    return absl::InvalidArgumentError("etcd membership: node address is empty");
  }
  if (options.ttl_s <= 0) {
    return absl::InvalidArgumentError("etcd membership: lease TTL must be positive");
  }
  ASSIGN_OR_RETURN(std::unique_ptr<EtcdClient> client,
                   EtcdClient::Create(options.endpoint, options.call_timeout));
  auto membership =
      std::unique_ptr<EtcdMembership>(new EtcdMembership(std::move(options), std::move(client)));
  absl::Status status = membership->Register();
  if (status.ok()) status = membership->Rewatch();
  if (!status.ok()) {
    membership->Stop();  // revokes a lease granted on the way
    return status;
  }
  {
    absl::MutexLock lock(&membership->mu_);
    membership->SetConnectedLocked(true, absl::OkStatus());
  }
  membership->supervisor_ = std::thread(&EtcdMembership::Supervise, membership.get());
  return membership;
}

EtcdMembership::~EtcdMembership() { Stop(); }

void EtcdMembership::Stop() {
  if (stopped_) return;
  stopped_ = true;
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (supervisor_.joinable()) supervisor_.join();
  if (watch_ != nullptr) {
    watch_->Stop();
    watch_.reset();
  }
  int64_t lease;
  {
    absl::MutexLock lock(&mu_);
    lease = lease_;
    lease_ = 0;
    registered_ = false;
  }
  if (lease != 0 && options_.revoke_on_stop) {
    absl::Status revoked = client_->Revoke(lease, std::min(options_.call_timeout, kRevokeTimeout));
    if (!revoked.ok()) {
      spdlog::info("etcd membership: could not revoke lease {:x} ({}); it expires in {} s", lease,
                   std::string(revoked.message()), options_.ttl_s);
    }
  }
}

EtcdMembershipState EtcdMembership::State() const {
  absl::MutexLock lock(&mu_);
  EtcdMembershipState state;
  state.connected = connected_;
  state.last_error = last_error_;
  state.since_ms = absl::ToUnixMillis(since_);
  state.registered = registered_;
  state.slot = slot_;
  state.roster = roster_;
  return state;
}

Roster EtcdMembership::CurrentRoster() const {
  absl::MutexLock lock(&mu_);
  return roster_;
}

bool EtcdMembership::UpkeepDueLocked() const { return stop_ || wake_; }

void EtcdMembership::Supervise() {
  absl::Duration wait;
  {
    absl::MutexLock lock(&mu_);
    wait = keepalive_interval_;
  }
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(this, &EtcdMembership::UpkeepDueLocked), wait);
      if (stop_) return;
      wake_ = false;
    }
    const absl::Status status = Upkeep();
    absl::MutexLock lock(&mu_);
    SetConnectedLocked(status.ok(), status);
    wait = status.ok() ? keepalive_interval_ : std::min(keepalive_interval_, kRetryInterval);
  }
}

absl::Status EtcdMembership::Upkeep() {
  RETURN_IF_ERROR(KeepAlive());
  bool registered;
  bool watching;
  {
    absl::MutexLock lock(&mu_);
    registered = registered_;
    watching = watching_;
  }
  if (!registered) RETURN_IF_ERROR(Register());
  if (!watching) RETURN_IF_ERROR(Rewatch());
  return absl::OkStatus();
}

absl::Status EtcdMembership::KeepAlive() {
  int64_t lease;
  {
    absl::MutexLock lock(&mu_);
    lease = lease_;
  }
  if (lease == 0) return absl::OkStatus();
  absl::StatusOr<int64_t> ttl = client_->KeepAliveOnce(lease);
  if (ttl.ok()) return absl::OkStatus();
  if (!absl::IsNotFound(ttl.status())) return ttl.status();
  // Expired (etcd was out of reach longer than the TTL) or revoked: our keys are gone with it.
  spdlog::warn("etcd membership: lease {:x} of {} has expired; registering again", lease,
               options_.self_id);
  absl::MutexLock lock(&mu_);
  if (lease_ == lease) {
    lease_ = 0;
    registered_ = false;
  }
  return absl::OkStatus();
}

absl::Status EtcdMembership::Register() {
  int64_t lease;
  {
    absl::MutexLock lock(&mu_);
    lease = lease_;
  }
  if (lease == 0) {
    int64_t granted_ttl_s = 0;
    ASSIGN_OR_RETURN(lease, client_->Grant(options_.ttl_s, &granted_ttl_s));
    absl::MutexLock lock(&mu_);
    lease_ = lease;
    keepalive_interval_ = std::max(absl::Seconds(std::max(granted_ttl_s, options_.ttl_s)) / 3,
                                   absl::Milliseconds(100));
  }
  ASSIGN_OR_RETURN(const uint32_t slot, ClaimSlot(lease));
  const Member self{options_.self_id, options_.self_address, slot};
  ASSIGN_OR_RETURN(const int64_t revision, client_->Put(node_key_, NodeJson(self), lease));
  {
    absl::MutexLock lock(&mu_);
    registered_ = true;
    registered_revision_ = revision;
    has_slot_ = true;
    slot_ = slot;
  }
  spdlog::info("etcd membership: {} registered in cluster {} as slot {} (lease {:x}, revision {})",
               options_.self_id, options_.cluster, slot, lease, revision);
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> EtcdMembership::ClaimSlot(int64_t lease) {
  ASSIGN_OR_RETURN(const EtcdRange slots, client_->GetPrefix(slots_prefix_));
  std::optional<uint32_t> preferred;
  {
    absl::MutexLock lock(&mu_);
    if (has_slot_) preferred = slot_;
  }
  std::set<uint32_t> taken;
  std::optional<uint32_t> ours;  // a slot that already names us (an earlier lease of ours)
  for (const EtcdKeyValue& kv : slots.kvs) {
    uint32_t n;
    if (!absl::SimpleAtoi(kv.key.substr(slots_prefix_.size()), &n)) continue;
    taken.insert(n);
    if (kv.value == options_.self_id && (!ours.has_value() || n == preferred)) ours = n;
  }
  const auto slot_key = [&](uint32_t n) { return absl::StrCat(slots_prefix_, n); };
  if (ours.has_value()) {
    // Move it onto the current lease (a put replaces the key's lease).
    RETURN_IF_ERROR(client_->Put(slot_key(*ours), options_.self_id, lease).status());
    return *ours;
  }
  std::vector<uint32_t> candidates;
  if (preferred.has_value() && !taken.contains(*preferred)) candidates.push_back(*preferred);
  for (uint32_t n = 0; n < kMaxSlots && candidates.size() < 64; ++n) {
    if (!taken.contains(n) && n != preferred) candidates.push_back(n);
  }
  for (const uint32_t n : candidates) {
    std::string holder;
    ASSIGN_OR_RETURN(const bool created,
                     client_->CreateIfAbsent(slot_key(n), options_.self_id, lease, &holder));
    if (created) return n;
    if (holder == options_.self_id) {
      RETURN_IF_ERROR(client_->Put(slot_key(n), options_.self_id, lease).status());
      return n;
    }
    // Another member claimed it since we listed the slots: try the next.
  }
  return absl::ResourceExhaustedError(absl::StrCat("etcd membership: no free slot for ",
                                                   options_.self_id, " in cluster ",
                                                   options_.cluster, " (contended); will retry"));
}

absl::Status EtcdMembership::Rewatch() {
  if (watch_ != nullptr) {
    watch_->Stop();
    watch_.reset();
  }
  ASSIGN_OR_RETURN(const EtcdRange nodes, client_->GetPrefix(nodes_prefix_));
  {
    absl::MutexLock lock(&mu_);
    nodes_.clear();
    for (const EtcdKeyValue& kv : nodes.kvs) ApplyNodeLocked(kv.key, &kv.value);
    RebuildRosterLocked(nodes.revision);
    watching_ = true;
  }
  Publish();
  // From just after the read: no change is missed or seen twice.
  watch_ = client_->Watch(
      nodes_prefix_, nodes.revision + 1,
      [this](const EtcdWatchResponse& response) { OnWatchResponse(response); },
      [this](const absl::Status& status) { OnWatchEnd(status); });
  return absl::OkStatus();
}

void EtcdMembership::OnWatchResponse(const EtcdWatchResponse& response) {
  if (response.events.empty()) return;
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return;
    int64_t revision = 0;  // of the latest change applied; 0: none
    for (const EtcdEvent& event : response.events) {
      if (!absl::StartsWith(event.kv.key, nodes_prefix_)) continue;
      const bool put = event.type == EtcdEvent::Type::kPut;
      ApplyNodeLocked(event.kv.key, put ? &event.kv.value : nullptr);
      revision = std::max(revision, event.kv.mod_revision);
      if (!put && event.kv.key == node_key_ && registered_ &&
          event.kv.mod_revision > registered_revision_) {
        spdlog::warn("etcd membership: the node key of {} was deleted; registering again",
                     options_.self_id);
        registered_ = false;
        wake_ = true;
      }
    }
    if (revision == 0) return;
    RebuildRosterLocked(revision);
  }
  Publish();
}

void EtcdMembership::OnWatchEnd(const absl::Status& status) {
  absl::MutexLock lock(&mu_);
  if (stop_) return;
  watching_ = false;
  wake_ = true;
  SetConnectedLocked(false, status);
}

void EtcdMembership::ApplyNodeLocked(const std::string& key, const std::string* value) {
  if (value == nullptr) {
    nodes_.erase(key);
    return;
  }
  std::string why;
  std::optional<Member> member = ParseNode(key.substr(nodes_prefix_.size()), *value, &why);
  if (!member.has_value()) {
    spdlog::warn("etcd membership: skipping malformed node {}: {}", key, why);
    nodes_.erase(key);
    return;
  }
  nodes_[key] = std::move(*member);
}

void EtcdMembership::RebuildRosterLocked(int64_t revision) {
  Roster roster;
  roster.version = static_cast<uint64_t>(std::max<int64_t>(revision, 0));
  roster.members.reserve(nodes_.size());
  for (const auto& [key, member] : nodes_) roster.members.push_back(member);
  std::sort(roster.members.begin(), roster.members.end(), [](const Member& a, const Member& b) {
    return a.slot != b.slot ? a.slot < b.slot : a.id < b.id;
  });
  for (size_t i = 1; i < roster.members.size(); ++i) {
    if (roster.members[i].slot == roster.members[i - 1].slot) {
      spdlog::warn("etcd membership: {} and {} both claim slot {}", roster.members[i - 1].id,
                   roster.members[i].id, roster.members[i].slot);
    }
  }
  roster_ = std::move(roster);
}

void EtcdMembership::SetConnectedLocked(bool connected, const absl::Status& error) {
  if (connected != connected_) {
    since_ = absl::Now();
    if (!connected) {
      spdlog::warn(
          "etcd membership: etcd {} unreachable ({}); keeping the last view ({} members, version "
          "{})",
          options_.endpoint, std::string(error.message()), roster_.members.size(), roster_.version);
    } else if (ever_connected_) {
      spdlog::info("etcd membership: etcd {} reachable again", options_.endpoint);
    }
  }
  if (connected) ever_connected_ = true;
  connected_ = connected;
  last_error_ = connected ? "" : std::string(error.message());
}

void EtcdMembership::Publish() {
  absl::MutexLock publish_lock(&publish_mu_);
  Roster roster;
  {
    absl::MutexLock lock(&mu_);
    roster = roster_;
  }
  if (published_any_ && published_.version == roster.version &&
      published_.members == roster.members) {
    return;
  }
  published_any_ = true;
  published_ = roster;
  if (options_.on_change) options_.on_change(roster);
}

}  // namespace kvtier
