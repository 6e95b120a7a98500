// The reader side of UcxTransport: endpoints to peers, posting a pull's ops (RMA gets or AM read
// requests), their completions, deadlines, and dropping failed peers.
#include <signal.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "server/transport/ucx_transport_impl.h"
#include "spdlog/spdlog.h"

namespace kvtier::transport {
namespace {

// How often pulls in flight to a same-host peer without UCX failure detection check that the peer
// process still exists.
constexpr auto kLivenessPeriod = std::chrono::milliseconds(50);

}  // namespace

void UcxTransport::Impl::Start(std::unique_ptr<PullState> owned) {
  PullState* pull = owned.get();
  pull->id = next_pull_id_++;
  pull->ops_left = pull->ops.size();
  for (size_t i = 0; i < pull->slots.size(); ++i) {
    pull->slots[i].pull = pull;
    pull->slots[i].index = static_cast<uint32_t>(i);
  }
  pulls_by_id_.emplace(pull->id, std::move(owned));
  if (pull->status.ok() && !pull->ops.empty()) {
    if (absl::StatusOr<Peer*> peer = PeerFor(*pull); peer.ok()) {
      pull->peer = *peer;
      const bool get = pull->peer->use_get;
      for (OpSlot& slot : pull->slots) {
        if (!pull->status.ok()) break;  // a post failed and dropped the peer: abandon the rest
        if (get) {
          PostGet(pull, &slot);
        } else {
          PostReadRequest(pull, &slot);
        }
      }
    } else {
      pull->status = peer.status();
    }
  }
  pull->posted = true;
  MaybeFinish(pull);
}

absl::StatusOr<UcxTransport::Impl::Peer*> UcxTransport::Impl::PeerFor(const PullState& pull) {
  if (auto it = peers_.find(pull.peer_key); it != peers_.end()) return it->second.get();
  auto peer = std::make_unique<Peer>();
  peer->impl = this;
  peer->key = pull.peer_key;
  peer->remote_base = pull.info.arena_base;
  const bool same_host = pull.info.host_id == host_id_;
  switch (options_.protocol) {
    case UcxOptions::Protocol::kGet:
      peer->use_get = true;
      break;
    case UcxOptions::Protocol::kActiveMessage:
      peer->use_get = false;
      break;
    case UcxOptions::Protocol::kAuto:
      // Measured, two processes, 1 MiB ops in batches of 32: on shared memory gets beat am-rndv
      // (UCX 1.13 runs them as pipelined copies through posix: 10.4 vs 6.0 GB/s); on tcp, where
      // UCX emulates RMA, am-rndv is as fast (5.5 vs 5.4 GB/s), is not at the mercy of the tcp
      // segment size (3.9 vs 1.6 GB/s with UCX's default segments), and drops late replies.
      peer->use_get = tls_.shm && same_host;
      break;
  }
  // Peer failure detection turns a dead peer into an error at once instead of at the deadline,
  // but UCX 1.13's shared-memory AM transports (posix, sysv) cannot do it, and asking for it would
  // move a same-host peer onto tcp. There, the peer's pid (same pid namespace) tells its death.
  peer->peer_errors = !(tls_.shm_am && same_host);
  if (!peer->peer_errors && pull.info.pid_namespace == pid_namespace_ && pid_namespace_ != 0) {
    peer->pid = static_cast<pid_t>(pull.info.pid);
  }
  ucp_ep_params_t ep{};
  ep.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                  UCP_EP_PARAM_FIELD_ERR_HANDLER;
  ep.address = reinterpret_cast<const ucp_address_t*>(pull.info.worker_address.data());
  ep.err_mode = peer->peer_errors ? UCP_ERR_HANDLING_MODE_PEER : UCP_ERR_HANDLING_MODE_NONE;
  ep.err_handler.cb = &OnEpError;
  ep.err_handler.arg = peer.get();
  ucs_status_t st = ucp_ep_create(worker_, &ep, &peer->ep);
  if (st != UCS_OK) return UcxError("cannot reach the peer (ucp_ep_create)", st);
  if (peer->use_get) {
    st = ucp_ep_rkey_unpack(peer->ep, pull.info.rkey.data(), &peer->rkey);
    if (st != UCS_OK) {
      peer->rkey = nullptr;
      const absl::Status error = UcxError("peer's arena rkey (ucp_ep_rkey_unpack)", st);
      CloseEndpoint(std::move(peer), /*force=*/false);
      return error;
    }
  }
  Peer* raw = peer.get();
  peers_.emplace(raw->key, std::move(peer));
  return raw;
}

void UcxTransport::Impl::PostGet(PullState* pull, OpSlot* slot) {
  const PullOp& op = pull->ops[slot->index];
  ucp_request_param_t param{};
  param.op_attr_mask =
      UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_MEMH;
  param.cb.send = &OnGetDone;
  param.user_data = slot;
  param.memh = memh_;
  ucs_status_ptr_t r =
      ucp_get_nbx(pull->peer->ep, arena_ + op.local_offset, op.bytes,
                  pull->peer->remote_base + op.remote_offset, pull->peer->rkey, &param);
  if (r == nullptr) {
    OpFinished(slot, UCS_OK);
  } else if (UCS_PTR_IS_ERR(r)) {
    OpFinished(slot, UCS_PTR_STATUS(r));
  } else {
    ++pull->ucx_requests;
  }
}

void UcxTransport::Impl::OnGetDone(void* request, ucs_status_t status, void* user_data) {
  auto* slot = static_cast<OpSlot*>(user_data);
  --slot->pull->ucx_requests;
  slot->pull->impl->OpFinished(slot, status);
  ucp_request_free(request);
}

// Asks the peer for one op's bytes; the op then waits for the reply (OnReadReply).
void UcxTransport::Impl::PostReadRequest(PullState* pull, OpSlot* slot) {
  const PullOp& op = pull->ops[slot->index];
  SendSlot* send = send_slots_.Acquire();
  send->impl = this;
  send->request = {pull->id, slot->index, 0, op.remote_offset, op.bytes};
  ucp_request_param_t param{};
  param.op_attr_mask =
      UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
  param.cb.send = &OnRequestSent;
  param.user_data = send;
  // REPLY: the peer receives an endpoint back to us with the message.
  param.flags = UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_EAGER;
  ucs_status_ptr_t r = ucp_am_send_nbx(pull->peer->ep, kAmReadRequest, &send->request,
                                       sizeof(send->request), nullptr, 0, &param);
  if (r == nullptr || UCS_PTR_IS_ERR(r)) send_slots_.Release(send);
  if (UCS_PTR_IS_ERR(r)) OpFinished(slot, UCS_PTR_STATUS(r));
}

// The send slot, not the pull, is the user_data: a send still pending when its pull has failed
// and gone does not keep the pull alive.
void UcxTransport::Impl::OnRequestSent(void* request, ucs_status_t status, void* user_data) {
  auto* send = static_cast<SendSlot*>(user_data);
  Impl* impl = send->impl;
  if (status != UCS_OK) {
    auto it = impl->pulls_by_id_.find(send->request.pull_id);
    if (it != impl->pulls_by_id_.end() && send->request.op_index < it->second->slots.size()) {
      impl->OpFinished(&it->second->slots[send->request.op_index], status);
    }
  }
  impl->send_slots_.Release(send);
  ucp_request_free(request);
}

ucs_status_t UcxTransport::Impl::OnReadReply(void* arg, const void* header, size_t header_length,
                                             void* data, size_t length,
                                             const ucp_am_recv_param_t* param) {
  auto* impl = static_cast<Impl*>(arg);
  impl->activity_ = true;
  ReadReply reply;
  if (header_length != sizeof(reply)) {
    impl->errors_.fetch_add(1, std::memory_order_relaxed);
    return UCS_OK;  // not ours: drop it (a rendezvous sender is told we declined)
  }
  std::memcpy(&reply, header, sizeof(reply));
  return impl->ReceiveReply(reply, data, length, param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV);
}

ucs_status_t UcxTransport::Impl::ReceiveReply(const ReadReply& reply, void* data, size_t length,
                                              bool rendezvous) {
  auto it = pulls_by_id_.find(reply.pull_id);
  // A pull that failed or finished: drop the late reply, its destination is no longer ours to use.
  if (it == pulls_by_id_.end() || !it->second->status.ok()) return UCS_OK;
  PullState* pull = it->second.get();
  if (reply.op_index >= pull->ops.size() || pull->slots[reply.op_index].finished) return UCS_OK;
  OpSlot* slot = &pull->slots[reply.op_index];
  const PullOp& op = pull->ops[slot->index];
  if (reply.code != 0) {
    FailPull(pull, absl::UnavailableError(absl::StrCat(
                       "peer refused to serve [", op.remote_offset, ", +", op.bytes, "): ",
                       absl::StatusCodeToString(static_cast<absl::StatusCode>(reply.code)))));
    return UCS_OK;
  }
  if (length != op.bytes) {
    FailPull(pull, absl::UnavailableError(
                       absl::StrCat("peer replied ", length, " bytes to a read of ", op.bytes)));
    return UCS_OK;
  }
  if (!rendezvous) {  // eager: a small read, copied once
    std::memcpy(arena_ + op.local_offset, data, op.bytes);
    OpFinished(slot, UCS_OK);
    return UCS_OK;
  }
  // Rendezvous: UCX moves the bytes from the peer's arena straight into the op's destination.
  ucp_request_param_t param{};
  param.op_attr_mask =
      UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_MEMH;
  param.cb.recv_am = &OnReplyData;
  param.user_data = slot;
  param.memh = memh_;
  ucs_status_ptr_t r =
      ucp_am_recv_data_nbx(worker_, data, arena_ + op.local_offset, op.bytes, &param);
  if (r == nullptr) {
    OpFinished(slot, UCS_OK);
  } else if (UCS_PTR_IS_ERR(r)) {
    OpFinished(slot, UCS_PTR_STATUS(r));
  } else {
    ++pull->ucx_requests;
  }
  return UCS_INPROGRESS;  // UCX owns the descriptor now
}

void UcxTransport::Impl::OnReplyData(void* request, ucs_status_t status, size_t length,
                                     void* user_data) {
  auto* slot = static_cast<OpSlot*>(user_data);
  --slot->pull->ucx_requests;
  slot->pull->impl->OpFinished(slot, status);
  ucp_request_free(request);
}

void UcxTransport::Impl::OpFinished(OpSlot* slot, ucs_status_t status) {
  PullState* pull = slot->pull;
  activity_ = true;
  if (slot->finished || pull->finishing) {  // late news of a pull that is done already
    MaybeFinish(pull);
    return;
  }
  slot->finished = true;
  --pull->ops_left;
  if (status == UCS_OK) {
    bytes_in_.fetch_add(pull->ops[slot->index].bytes, std::memory_order_relaxed);
  } else {
    FailPull(pull, UcxError("pull from peer", status));
  }
  MaybeFinish(pull);
}

// Marks the pull failed and drops its peer: closing the endpoint by force is what cancels the
// requests still writing into our arena, so that `done` runs once nothing touches its slots.
void UcxTransport::Impl::FailPull(PullState* pull, absl::Status status) {
  if (pull->status.ok()) pull->status = std::move(status);
  if (pull->peer != nullptr) DropPeer(pull->peer, pull->status);
  MaybeFinish(pull);
}

void UcxTransport::Impl::MaybeFinish(PullState* pull) {
  if (pull->finishing || !pull->posted) return;
  if (pull->ucx_requests > 0 && !pull->abandoned) return;
  if (pull->ops_left > 0 && pull->status.ok()) return;
  pull->finishing = true;
  finished_.push_back(pull->id);
}

// Runs the done callbacks of finished pulls, outside UCX callbacks (done may call Pull()).
int UcxTransport::Impl::RunFinished() {
  int ran = 0;
  while (!finished_.empty()) {
    std::vector<uint64_t> ids;
    ids.swap(finished_);
    for (uint64_t id : ids) {
      auto node = pulls_by_id_.extract(id);
      if (node.empty()) continue;
      std::unique_ptr<PullState> pull = std::move(node.mapped());
      pulls_.fetch_add(1, std::memory_order_relaxed);
      if (!pull->status.ok()) errors_.fetch_add(1, std::memory_order_relaxed);
      pull->done(pull->status);
      pull->done = nullptr;
      if (pull->ucx_requests > 0) parked_.push_back(std::move(pull));  // abandoned: see DropPeer
      ++ran;
    }
  }
  return ran;
}

void UcxTransport::Impl::OnEpError(void* arg, ucp_ep_h ep, ucs_status_t status) {
  auto* peer = static_cast<Peer*>(arg);
  peer->impl->DropPeer(peer, UcxError("peer endpoint failed", status));
}

// Fails every pull on `peer` and takes it out of the cache, so the next pull connects afresh.
// With peer failure detection the endpoint is closed by force (later: this may run inside a UCX
// callback), which cancels its requests. Without it (same-host shared memory) UCX refuses a forced
// close and cannot cancel a get: the endpoint is quarantined until the worker goes, and pulls
// with requests in flight are abandoned: their done runs now, and should the stalled peer answer
// after all, the bytes land in their destination ranges late.
void UcxTransport::Impl::DropPeer(Peer* peer, const absl::Status& why) {
  if (peer->failed) return;
  peer->failed = true;
  spdlog::debug("ucx transport: dropping a peer endpoint: {}", why.ToString());
  for (auto& [id, pull] : pulls_by_id_) {
    if (pull->peer != peer) continue;
    pull->peer = nullptr;
    if (pull->status.ok()) {
      const absl::StatusCode code = why.code() == absl::StatusCode::kDeadlineExceeded
                                        ? absl::StatusCode::kUnavailable
                                        : why.code();
      pull->status = absl::Status(code, absl::StrCat("peer endpoint dropped: ", why.message()));
    }
    if (!peer->peer_errors) pull->abandoned = true;
    MaybeFinish(pull.get());
  }
  std::unique_ptr<Peer> owned;
  if (auto it = peers_.find(peer->key); it != peers_.end() && it->second.get() == peer) {
    owned = std::move(it->second);
    peers_.erase(it);
  }
  if (owned == nullptr) return;
  if (peer->peer_errors) {
    to_close_.push_back(std::move(owned));
  } else {
    quarantined_.push_back(std::move(owned));
  }
  activity_ = true;
}

void UcxTransport::Impl::CloseEndpoint(std::unique_ptr<Peer> peer, bool force) {
  if (peer->rkey != nullptr) ucp_rkey_destroy(peer->rkey);
  peer->rkey = nullptr;
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
  param.flags = force ? UCP_EP_CLOSE_FLAG_FORCE : 0;
  ucs_status_ptr_t r = ucp_ep_close_nbx(peer->ep, &param);
  if (r != nullptr && !UCS_PTR_IS_ERR(r)) closing_.emplace_back(r, std::move(peer));
  activity_ = true;
}

void UcxTransport::Impl::ReapClosedEndpoints() {
  while (!to_close_.empty()) {
    std::unique_ptr<Peer> peer = std::move(to_close_.back());
    to_close_.pop_back();
    CloseEndpoint(std::move(peer), /*force=*/true);
  }
  for (size_t i = 0; i < closing_.size();) {
    if (ucp_request_check_status(closing_[i].first) == UCS_INPROGRESS) {
      ++i;
      continue;
    }
    ucp_request_free(closing_[i].first);
    closing_[i] = std::move(closing_.back());
    closing_.pop_back();
  }
}

void UcxTransport::Impl::CheckDeadlines(Clock::time_point now) {
  std::vector<std::pair<PullState*, absl::Status>> failing;
  const bool check_liveness = now >= next_liveness_check_;
  if (check_liveness) next_liveness_check_ = now + kLivenessPeriod;
  for (auto& [id, pull] : pulls_by_id_) {
    if (!pull->status.ok() || pull->finishing) continue;
    if (now >= pull->deadline) {
      failing.emplace_back(pull.get(), absl::DeadlineExceededError(absl::StrCat(
                                           "pull of ", pull->ops.size(), " ops: ", pull->ops_left,
                                           " not done by the deadline (peer silent or slow)")));
    } else if (check_liveness && pull->peer != nullptr && pull->peer->pid != 0 &&
               kill(pull->peer->pid, 0) != 0 && errno == ESRCH) {
      failing.emplace_back(pull.get(), absl::UnavailableError(absl::StrCat(
                                           "peer process ", pull->peer->pid, " is gone")));
    }
  }
  for (auto& [pull, status] : failing) FailPull(pull, std::move(status));
  for (size_t i = 0; i < parked_.size();) {  // abandoned pulls whose requests ended after all
    if (parked_[i]->ucx_requests == 0) {
      parked_[i] = std::move(parked_.back());
      parked_.pop_back();
    } else {
      ++i;
    }
  }
}

}  // namespace kvtier::transport
