// kvtier-test-peer: a second client process for integration tests. gRPC cannot be used in a
// child forked from a process that already runs gRPC, so tests exec this instead.
//
//   kvtier-test-peer save SOCKET BLOCK_BYTES SEED KEYHEX...
//       saves block i = RandomBytes(BLOCK_BYTES, SEED + i) under each key; exit 0 on success
//   kvtier-test-peer hold SOCKET BLOCK_BYTES LEASE_MS KEYHEX...
//       acquires the keys for reading and reserves two fresh keys for writing, prints "held",
//       then waits to be killed (it never releases)
//   kvtier-test-peer soak SOCKET BLOCK_BYTES SECONDS SEED CHAINS
//       random saves, loads, lookups, zero-copy reads/writes and drops for SECONDS, checking every
//       byte read (tests/support/soak_worker.cc)
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "common/block_key.h"
#include "kvtier/client.h"
#include "tests/support/random_bytes.h"

using namespace kvtier;  // NOLINT(google-build-using-namespace): a small test program

namespace kvtier::testing {
int RunSoak(int argc, char** argv);
}

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "soak") return testing::RunSoak(argc, argv);
  if (argc < 5) {
    std::fprintf(stderr, "usage: kvtier-test-peer save|hold SOCKET BLOCK_BYTES N KEYHEX...\n");
    return 2;
  }
  const std::string mode = argv[1];
  ClientOptions options;
  options.socket_path = argv[2];
  const uint64_t block_bytes = std::strtoull(argv[3], nullptr, 10);
  const uint64_t n = std::strtoull(argv[4], nullptr, 10);
  std::vector<BlockKey> keys;
  for (int i = 5; i < argc; ++i) {
    auto k = KeyFromHex(argv[i]);
    if (!k.ok()) return 2;
    keys.push_back({k->lo, k->hi});
  }
  if (mode == "hold") options.lease_ms = static_cast<uint32_t>(n);
  std::unique_ptr<Client> client;
  if (Status s = Client::Connect(options, &client); !s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return 3;
  }
  NamespaceLayout layout;
  layout.model_id = "test-model";
  layout.block_bytes = block_bytes;
  Namespace ns;
  if (!client->RegisterNamespace(layout, &ns).ok()) return 4;

  if (mode == "save") {
    std::vector<std::vector<std::byte>> blocks;
    std::vector<const void*> src;
    for (size_t i = 0; i < keys.size(); ++i) {
      blocks.push_back(testing::RandomBytes(block_bytes, n + i));
      src.push_back(blocks.back().data());
    }
    Status s = client->Save(ns, keys, src);
    if (!s.ok()) std::fprintf(stderr, "%s\n", s.ToString().c_str());
    return s.ok() ? 0 : 5;
  }
  if (mode == "hold") {
    std::unique_ptr<ReadLease> read;
    std::unique_ptr<WriteLease> write;
    std::vector<BlockKey> fresh = {{getpid() + 1ULL, 7}, {getpid() + 2ULL, 7}};
    if (!client->AcquireRead(ns, keys, &read).ok() || read->size() != keys.size()) return 6;
    if (!client->BeginWrite(ns, fresh, {}, &write).ok()) return 7;
    std::printf("held\n");
    std::fflush(stdout);
    for (;;) pause();
  }
  return 2;
}
