#include "server/service/proto_convert.h"

#include <string>

namespace kvtier {

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  // absl and gRPC share their code numbers.
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

NamespaceLayout FromProto(const v1::NamespaceLayout& p) {
  NamespaceLayout l;
  l.model_id = p.model_id();
  l.model_revision = p.model_revision();
  l.num_layers = p.num_layers();
  l.kv_heads = p.kv_heads();
  l.head_size = p.head_size();
  l.dtype = p.dtype();
  l.tokens_per_block = p.tokens_per_block();
  l.tp_rank = p.tp_rank();
  l.tp_size = p.tp_size();
  l.pp_rank = p.pp_rank();
  l.pp_size = p.pp_size();
  l.layout_tag = p.layout_tag();
  l.block_bytes = p.block_bytes();
  return l;
}

void ToProto(const NamespaceLayout& l, v1::NamespaceLayout* p) {
  p->set_model_id(l.model_id);
  p->set_model_revision(l.model_revision);
  p->set_num_layers(l.num_layers);
  p->set_kv_heads(l.kv_heads);
  p->set_head_size(l.head_size);
  p->set_dtype(l.dtype);
  p->set_tokens_per_block(l.tokens_per_block);
  p->set_tp_rank(l.tp_rank);
  p->set_tp_size(l.tp_size);
  p->set_pp_rank(l.pp_rank);
  p->set_pp_size(l.pp_size);
  p->set_layout_tag(l.layout_tag);
  p->set_block_bytes(l.block_bytes);
}

v1::Tier ToProto(TierId tier) { return static_cast<v1::Tier>(static_cast<int>(tier)); }

void ToProto(const TierCounters& t, v1::TierStats* p) {
  p->set_name(t.name);
  p->set_capacity_bytes(t.capacity_bytes);
  p->set_used_bytes(t.used_bytes);
  p->set_blocks(t.blocks);
  p->set_hits(t.hits);
  p->set_misses(t.misses);
  p->set_evictions(t.evictions);
  p->set_bytes_in(t.bytes_in);
  p->set_bytes_out(t.bytes_out);
  p->set_status(t.status);
}

}  // namespace kvtier
