#include "server/cluster/directory.h"

#include <algorithm>

namespace kvtier {

uint32_t Directory::Intern(const std::string& holder) {
  absl::MutexLock lock(&names_mu_);
  auto [it, inserted] = ids_.try_emplace(holder, static_cast<uint32_t>(names_.size()));
  if (inserted) names_.push_back(holder);
  return it->second;
}

std::string Directory::NameOf(uint32_t holder) {
  absl::MutexLock lock(&names_mu_);
  return names_[holder];
}

void Directory::Add(const BlockId& id, const std::string& holder) {
  const uint32_t h = Intern(holder);
  Shard& shard = ShardOf(id);
  absl::MutexLock lock(&shard.mu);
  HolderList& list = shard.map[id];
  if (std::find(list.begin(), list.end(), h) == list.end()) list.push_back(h);
}

void Directory::Remove(const BlockId& id, const std::string& holder) {
  const uint32_t h = Intern(holder);
  Shard& shard = ShardOf(id);
  absl::MutexLock lock(&shard.mu);
  auto it = shard.map.find(id);
  if (it == shard.map.end()) return;
  HolderList& list = it->second;
  list.erase(std::remove(list.begin(), list.end(), h), list.end());
  if (list.empty()) shard.map.erase(it);
}

std::vector<std::string> Directory::Holders(const BlockId& id) {
  HolderList list;
  {
    Shard& shard = ShardOf(id);
    absl::MutexLock lock(&shard.mu);
    auto it = shard.map.find(id);
    if (it == shard.map.end()) return {};
    list = it->second;
  }
  std::vector<std::string> out;
  out.reserve(list.size());
  for (uint32_t h : list) out.push_back(NameOf(h));
  return out;
}

void Directory::RetainHolders(const absl::flat_hash_set<std::string>& alive) {
  absl::flat_hash_set<uint32_t> keep;
  {
    absl::MutexLock lock(&names_mu_);
    for (const std::string& name : alive) {
      if (auto it = ids_.find(name); it != ids_.end()) keep.insert(it->second);
    }
  }
  for (Shard& shard : shards_) {
    absl::MutexLock lock(&shard.mu);
    for (auto it = shard.map.begin(); it != shard.map.end();) {
      HolderList& list = it->second;
      list.erase(
          std::remove_if(list.begin(), list.end(), [&](uint32_t h) { return !keep.contains(h); }),
          list.end());
      if (list.empty()) {
        shard.map.erase(it++);
      } else {
        ++it;
      }
    }
  }
}

size_t Directory::size() {
  size_t n = 0;
  for (Shard& shard : shards_) {
    absl::MutexLock lock(&shard.mu);
    n += shard.map.size();
  }
  return n;
}

}  // namespace kvtier
