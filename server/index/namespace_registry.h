// Registered namespaces: id -> layout, block size and usage counters.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/namespace_layout.h"

namespace kvtier {

struct NamespaceRecord {
  uint64_t id = 0;
  NamespaceLayout layout;  // normalized
  uint64_t block_bytes = 0;
  std::atomic<uint64_t> blocks{0};  // ready blocks
};

struct NamespaceSnapshot {
  uint64_t id = 0;
  NamespaceLayout layout;
  uint64_t block_bytes = 0;
  uint64_t blocks = 0;
};

class NamespaceRegistry {
 public:
  static constexpr size_t kMaxNamespaces = 4096;

  // Normalizes and registers `layout`; the same layout gives the same record (created = false).
  absl::StatusOr<NamespaceRecord*> Register(const NamespaceLayout& layout, bool* created);
  // The record of `id`, or NOT_FOUND naming `field`. Records live as long as the registry.
  absl::StatusOr<NamespaceRecord*> Find(uint64_t id, const char* field = "namespace_id");
  std::vector<NamespaceSnapshot> List();
  size_t size();

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<NamespaceRecord>> records_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kvtier
