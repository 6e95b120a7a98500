// The C API: argument checks, translation to the C++ client, and the thread-local last error.
// No exception crosses into C: each entry point catches what the C++ side could throw.
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "kvtier/client.h"
#include "kvtier/kvtier.h"

struct kvtier_client {
  std::unique_ptr<kvtier::Client> client;
};

namespace {

using kvtier::BlockKey;
using kvtier::Status;

thread_local std::string g_last_error;

int Finish(const Status& status) {
  if (status.ok()) {
    g_last_error.clear();
  } else {
    g_last_error = status.ToString();
  }
  return static_cast<int>(status.code());
}

int Invalid(const std::string& message) {
  return Finish(Status(Status::Code::kInvalidArgument, message));
}

// Runs `body` (returning a Status), turning exceptions into error codes.
template <typename Body>
int Guard(Body&& body) {
  try {
    return Finish(body());
  } catch (const std::bad_alloc&) {
    return Finish(Status(Status::Code::kResourceExhausted, "out of memory"));
  } catch (const std::exception& e) {
    return Finish(Status(Status::Code::kInternal, e.what()));
  } catch (...) {
    return Finish(Status(Status::Code::kInternal, "unknown exception"));
  }
}

std::vector<BlockKey> ToKeys(const kvtier_key* keys, size_t n) {
  std::vector<BlockKey> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = BlockKey{keys[i].lo, keys[i].hi};
  return out;
}

const char* Str(const char* s) { return s != nullptr ? s : ""; }

}  // namespace

extern "C" {

const char* kvtier_last_error(void) { return g_last_error.c_str(); }

int kvtier_connect(const char* socket_path, int timeout_ms, kvtier_client** out) {
  if (out == nullptr) return Invalid("kvtier_connect: out is NULL");
  if (timeout_ms < 0) return Invalid("kvtier_connect: timeout_ms is negative");
  return Guard([&] {
    kvtier::ClientOptions options;
    options.socket_path = Str(socket_path);
    if (timeout_ms > 0) options.timeout_ms = timeout_ms;
    auto wrapper = std::make_unique<kvtier_client>();
    Status s = kvtier::Client::Connect(options, &wrapper->client);
    if (s.ok()) *out = wrapper.release();
    return s;
  });
}

void kvtier_close(kvtier_client* client) { delete client; }

int kvtier_register_namespace(kvtier_client* client, const kvtier_layout* layout, uint64_t* ns_id,
                              uint64_t* block_bytes) {
  if (client == nullptr || layout == nullptr) {
    return Invalid("kvtier_register_namespace: client or layout is NULL");
  }
  return Guard([&] {
    kvtier::NamespaceLayout l;
    l.model_id = Str(layout->model_id);
    l.model_revision = Str(layout->model_revision);
    l.num_layers = layout->num_layers;
    l.kv_heads = layout->kv_heads;
    l.head_size = layout->head_size;
    l.dtype = Str(layout->dtype);
    l.tokens_per_block = layout->tokens_per_block;
    l.tp_rank = layout->tp_rank;
    l.tp_size = layout->tp_size;
    l.pp_rank = layout->pp_rank;
    l.pp_size = layout->pp_size;
    l.layout_tag = Str(layout->layout_tag);
    l.block_bytes = layout->block_bytes;
    kvtier::Namespace ns;
    Status s = client->client->RegisterNamespace(l, &ns);
    if (s.ok()) {
      if (ns_id != nullptr) *ns_id = ns.id;
      if (block_bytes != nullptr) *block_bytes = ns.block_bytes;
    }
    return s;
  });
}

int kvtier_hash_tokens(uint64_t ns_id, uint32_t tokens_per_block, const int32_t* tokens, size_t n,
                       const kvtier_key* parent, kvtier_key* out_keys, size_t max_keys,
                       size_t* n_keys) {
  if (tokens_per_block == 0) return Invalid("kvtier_hash_tokens: tokens_per_block is 0");
  if (tokens == nullptr && n > 0) return Invalid("kvtier_hash_tokens: tokens is NULL");
  if (n_keys == nullptr) return Invalid("kvtier_hash_tokens: n_keys is NULL");
  const size_t needed = n / tokens_per_block;
  if (needed > max_keys) {
    *n_keys = needed;
    return Finish(Status(Status::Code::kOutOfRange,
                         "kvtier_hash_tokens: " + std::to_string(needed) +
                             " keys do not fit in max_keys " + std::to_string(max_keys)));
  }
  if (out_keys == nullptr && needed > 0) return Invalid("kvtier_hash_tokens: out_keys is NULL");
  return Guard([&] {
    kvtier::PrefixHasher hasher(ns_id, tokens_per_block);
    const BlockKey start = parent != nullptr ? BlockKey{parent->lo, parent->hi} : BlockKey{};
    const std::vector<BlockKey> keys = hasher.HashTokens({tokens, n}, start);
    for (size_t i = 0; i < keys.size(); ++i) out_keys[i] = kvtier_key{keys[i].lo, keys[i].hi};
    *n_keys = keys.size();
    return Status();
  });
}

int kvtier_lookup(kvtier_client* client, uint64_t ns_id, const kvtier_key* keys, size_t n,
                  size_t* prefix_blocks, int* tiers) {
  if (client == nullptr || prefix_blocks == nullptr) {
    return Invalid("kvtier_lookup: client or prefix_blocks is NULL");
  }
  if (keys == nullptr && n > 0) return Invalid("kvtier_lookup: keys is NULL");
  return Guard([&] {
    const std::vector<BlockKey> k = ToKeys(keys, n);
    kvtier::LookupResult result;
    Status s = client->client->Lookup(ns_id, k, &result);
    if (!s.ok()) return s;
    *prefix_blocks = result.prefix_blocks;
    if (tiers != nullptr) {
      for (size_t i = 0; i < result.tiers.size() && i < n; ++i) {
        tiers[i] = static_cast<int>(result.tiers[i]);
      }
    }
    return s;
  });
}

int kvtier_save(kvtier_client* client, uint64_t ns_id, uint64_t block_bytes, const kvtier_key* keys,
                size_t n, const void* const* blocks, size_t* saved) {
  if (client == nullptr) return Invalid("kvtier_save: client is NULL");
  if ((keys == nullptr || blocks == nullptr) && n > 0) {
    return Invalid("kvtier_save: keys or blocks is NULL");
  }
  return Guard([&] {
    const std::vector<BlockKey> k = ToKeys(keys, n);
    size_t written = 0;
    Status s =
        client->client->Save(kvtier::Namespace{ns_id, block_bytes}, k, {blocks, n}, &written);
    if (s.ok() && saved != nullptr) *saved = written;
    return s;
  });
}

int kvtier_load(kvtier_client* client, uint64_t ns_id, uint64_t block_bytes, const kvtier_key* keys,
                size_t n, void* const* blocks, size_t* loaded) {
  if (client == nullptr || loaded == nullptr) {
    return Invalid("kvtier_load: client or loaded is NULL");
  }
  if ((keys == nullptr || blocks == nullptr) && n > 0) {
    return Invalid("kvtier_load: keys or blocks is NULL");
  }
  return Guard([&] {
    const std::vector<BlockKey> k = ToKeys(keys, n);
    size_t count = 0;
    Status s = client->client->Load(kvtier::Namespace{ns_id, block_bytes}, k, {blocks, n}, &count);
    if (s.ok()) *loaded = count;
    return s;
  });
}

int kvtier_drop(kvtier_client* client, uint64_t ns_id, const kvtier_key* keys, size_t n, int all,
                kvtier_drop_result* out) {
  if (client == nullptr) return Invalid("kvtier_drop: client is NULL");
  if (!all && keys == nullptr && n > 0) return Invalid("kvtier_drop: keys is NULL");
  return Guard([&] {
    kvtier::DropResult result;
    Status s = all ? client->client->DropAll(ns_id, &result)
                   : client->client->Drop(ns_id, ToKeys(keys, n), &result);
    if (s.ok() && out != nullptr)
      *out = kvtier_drop_result{result.dropped, result.busy, result.missing};
    return s;
  });
}

}  // extern "C"
