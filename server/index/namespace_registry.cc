#include "server/index/namespace_registry.h"

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace kvtier {

absl::StatusOr<NamespaceRecord*> NamespaceRegistry::Register(const NamespaceLayout& layout,
                                                             bool* created) {
  ASSIGN_OR_RETURN(NamespaceLayout normalized, NormalizeLayout(layout));
  const uint64_t id = LayoutId(normalized);
  absl::MutexLock lock(&mu_);
  auto it = records_.find(id);
  if (it != records_.end()) {
    if (!(it->second->layout == normalized)) {
      // Two layouts with one 64-bit id: refuse rather than mix their blocks.
      return absl::AlreadyExistsError(
          absl::StrFormat("layout: id %016x is taken by a different layout", id));
    }
    *created = false;
    return it->second.get();
  }
  if (records_.size() >= kMaxNamespaces) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("layout: the daemon already holds %d namespaces", kMaxNamespaces));
  }
  auto record = std::make_unique<NamespaceRecord>();
  record->id = id;
  record->layout = normalized;
  record->block_bytes = normalized.block_bytes;
  NamespaceRecord* raw = record.get();
  records_.emplace(id, std::move(record));
  *created = true;
  return raw;
}

absl::StatusOr<NamespaceRecord*> NamespaceRegistry::Find(uint64_t id, const char* field) {
  absl::ReaderMutexLock lock(&mu_);
  auto it = records_.find(id);
  if (it == records_.end()) {
    return absl::NotFoundError(absl::StrFormat(
        "%s: %016x is not a registered namespace (call RegisterNamespace first)", field, id));
  }
  return it->second.get();
}

std::vector<NamespaceSnapshot> NamespaceRegistry::List() {
  absl::ReaderMutexLock lock(&mu_);
  std::vector<NamespaceSnapshot> out;
  out.reserve(records_.size());
  for (const auto& [id, r] : records_) {
    out.push_back({id, r->layout, r->block_bytes, r->blocks.load(std::memory_order_relaxed)});
  }
  return out;
}

size_t NamespaceRegistry::size() {
  absl::ReaderMutexLock lock(&mu_);
  return records_.size();
}

}  // namespace kvtier
