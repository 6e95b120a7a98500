// toy_engine: what an inference engine does with kvtier, without the model.
//
// For each prompt it hashes the token blocks, asks the daemon how long a prefix is cached, loads
// that prefix instead of "computing" it, computes the rest (here: fills bytes derived from the
// tokens) and saves the new blocks for the next request. Run it twice against the same daemon
// and the second run finds everything cached:
//
//   scripts/serve &            # in another shell
//   build/bin/toy_engine       # socket: $KVTIER_SOCKET or ./var/kvtier.sock
#include <cstdio>
#include <cstring>
#include <vector>

#include "kvtier/client.h"

namespace {

// Stands in for a forward pass: the bytes of a block depend only on its key.
void ComputeBlock(const kvtier::BlockKey& key, std::byte* out, size_t bytes) {
  for (size_t i = 0; i < bytes; ++i) out[i] = static_cast<std::byte>((key.lo >> (i % 64)) ^ i);
}

bool Check(const kvtier::Status& s, const char* what) {
  if (!s.ok()) std::fprintf(stderr, "toy_engine: %s: %s\n", what, s.ToString().c_str());
  return s.ok();
}

}  // namespace

int main(int argc, char** argv) {
  kvtier::ClientOptions options;
  if (argc > 1) options.socket_path = argv[1];
  std::unique_ptr<kvtier::Client> client;
  if (!Check(kvtier::Client::Connect(options, &client), "connect")) return 2;

  // A small model: 4 layers, 2 KV heads of 64, fp16, 16 tokens per block = 32 KiB blocks.
  kvtier::NamespaceLayout layout;
  layout.model_id = "toy/model";
  layout.num_layers = 4;
  layout.kv_heads = 2;
  layout.head_size = 64;
  layout.dtype = "fp16";
  layout.tokens_per_block = 16;
  kvtier::Namespace ns;
  if (!Check(client->RegisterNamespace(layout, &ns), "register")) return 1;
  kvtier::PrefixHasher hasher(ns.id, layout.tokens_per_block);

  // Two prompts sharing a 64-token system prompt.
  std::vector<std::vector<int32_t>> prompts(2);
  for (int p = 0; p < 2; ++p) {
    for (int t = 0; t < 64; ++t) prompts[p].push_back(1000 + t);
    for (int t = 0; t < 40; ++t) prompts[p].push_back(p * 100 + t);
  }

  for (const auto& prompt : prompts) {
    std::vector<kvtier::BlockKey> keys = hasher.HashTokens(prompt);
    std::vector<std::vector<std::byte>> kv(keys.size(), std::vector<std::byte>(ns.block_bytes));
    std::vector<void*> dst;
    for (auto& block : kv) dst.push_back(block.data());

    size_t cached = 0;
    if (!Check(client->Load(ns, keys, dst, &cached), "load")) return 1;
    for (size_t i = cached; i < keys.size(); ++i) {
      ComputeBlock(keys[i], kv[i].data(), ns.block_bytes);
    }
    // Verify what came from the cache is what the model would have computed.
    std::vector<std::byte> expect(ns.block_bytes);
    for (size_t i = 0; i < cached; ++i) {
      ComputeBlock(keys[i], expect.data(), ns.block_bytes);
      if (std::memcmp(expect.data(), kv[i].data(), ns.block_bytes) != 0) {
        std::fprintf(stderr, "toy_engine: cached block %zu differs\n", i);
        return 1;
      }
    }
    std::vector<const void*> src;
    for (size_t i = cached; i < keys.size(); ++i) src.push_back(kv[i].data());
    size_t saved = 0;
    kvtier::BlockKey parent = cached ? keys[cached - 1] : kvtier::BlockKey{};
    if (!Check(client->Save(ns, {keys.data() + cached, keys.size() - cached}, src, &saved, parent),
               "save")) {
      return 1;
    }
    std::printf(
        "prompt of %zu tokens: %zu blocks, %zu loaded from kvtier, %zu computed and saved\n",
        prompt.size(), keys.size(), cached, saved);
  }
  return 0;
}
