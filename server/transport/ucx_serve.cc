// The serving side of UcxTransport: peers' AM read requests, answered from our arena.
#include <cstring>

#include "server/transport/ucx_transport_impl.h"

namespace kvtier::transport {
namespace {

// Replies at least this big go rendezvous: UCX moves the bytes from our arena straight into the
// reader's (one copy on shared memory, by cma), and the reader's progress thread does the work.
// Smaller ones go eager, copied on both sides but without the rendezvous round trip.
constexpr uint64_t kRendezvousBytes = 16 * 1024;

}  // namespace

ucs_status_t UcxTransport::Impl::OnReadRequest(void* arg, const void* header, size_t header_length,
                                               void* data, size_t length,
                                               const ucp_am_recv_param_t* param) {
  auto* impl = static_cast<Impl*>(arg);
  impl->activity_ = true;
  ReadRequest request;
  if (header_length != sizeof(request) || !(param->recv_attr & UCP_AM_RECV_ATTR_FIELD_REPLY_EP) ||
      param->reply_ep == nullptr) {
    impl->errors_.fetch_add(1, std::memory_order_relaxed);
    return UCS_OK;  // malformed, or nobody to answer: drop it
  }
  std::memcpy(&request, header, sizeof(request));
  impl->ServeRead(request, param->reply_ep);
  return UCS_OK;
}

// Answers one read: the bytes, or (for a range outside our arena) an error code and no bytes.
void UcxTransport::Impl::ServeRead(const ReadRequest& request, ucp_ep_h reply_ep) {
  const bool valid =
      request.bytes > 0 && InRange(request.remote_offset, request.bytes, arena_bytes_);
  ServeSlot* slot = serve_slots_.Acquire();
  slot->impl = this;
  slot->reply = {request.pull_id, request.op_index,
                 valid ? 0u : static_cast<uint32_t>(absl::StatusCode::kInvalidArgument)};
  slot->bytes = valid ? request.bytes : 0;
  ucp_request_param_t param{};
  param.op_attr_mask =
      UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA | UCP_OP_ATTR_FIELD_FLAGS;
  param.cb.send = &OnServeSent;
  param.user_data = slot;
  if (valid) {
    param.op_attr_mask |= UCP_OP_ATTR_FIELD_MEMH;
    param.memh = memh_;  // the arena is registered once: no registration per send
    if (slot->bytes >= kRendezvousBytes) param.flags = UCP_AM_SEND_FLAG_RNDV;
  } else {
    errors_.fetch_add(1, std::memory_order_relaxed);
  }
  ucs_status_ptr_t r =
      ucp_am_send_nbx(reply_ep, kAmReadReply, &slot->reply, sizeof(slot->reply),
                      valid ? arena_ + request.remote_offset : nullptr, slot->bytes, &param);
  if (r == nullptr) {
    bytes_served_.fetch_add(slot->bytes, std::memory_order_relaxed);
    serve_slots_.Release(slot);
  } else if (UCS_PTR_IS_ERR(r)) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    serve_slots_.Release(slot);
  } else {
    ++serves_in_flight_;
  }
}

void UcxTransport::Impl::OnServeSent(void* request, ucs_status_t status, void* user_data) {
  auto* slot = static_cast<ServeSlot*>(user_data);
  Impl* impl = slot->impl;
  --impl->serves_in_flight_;
  if (status == UCS_OK) {
    impl->bytes_served_.fetch_add(slot->bytes, std::memory_order_relaxed);
  } else {
    impl->errors_.fetch_add(1, std::memory_order_relaxed);  // the reader went away
  }
  impl->activity_ = true;
  impl->serve_slots_.Release(slot);
  ucp_request_free(request);
}

}  // namespace kvtier::transport
