#include "server/cluster/placement.h"

#include <algorithm>
#include <bit>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kvtier {
namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;
// Probes before the fallback scan, per expected probe (C / N): the chance of reaching the
// fallback is (1 - N/C)^(64 C/N) < e^-64 until the clamp. The clamp bounds a lookup's cost when
// slots are very sparse; there the fallback takes over.
constexpr uint32_t kProbesPerExpected = 64;
constexpr uint32_t kMaxProbeLimit = 1u << 16;
// TopR tracks taken members in a vector<bool> above this r, by linear search below it.
constexpr size_t kLinearTopR = 32;

// splitmix64's finalizer: a bijection with full avalanche, so h + i * kGolden (the splitmix64
// stream seeded by h) gives independent-looking probes.
inline uint64_t Mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

size_t StringHeapBytes(const std::string& s) {
  const char* p = s.data();
  const char* self = reinterpret_cast<const char*>(&s);
  const bool inline_buffer =
      p >= self && p < self + sizeof(std::string);  // small-string optimization
  return inline_buffer ? 0 : s.capacity() + 1;
}

}  // namespace

uint64_t PlacementHash(const Key128& key) { return Mix64(key.lo ^ Mix64(key.hi + kGolden)); }

size_t MembersMemoryBytes(const std::vector<Member>& members) {
  size_t bytes = members.capacity() * sizeof(Member);
  for (const Member& m : members) bytes += StringHeapBytes(m.id) + StringHeapBytes(m.address);
  return bytes;
}

absl::StatusOr<Placement> Placement::Build(const Roster& roster) {
  if (roster.members.empty()) return absl::InvalidArgumentError("roster has no members");
  Placement p;
  p.version_ = roster.version;
  p.members_ = roster.members;
  // Sorting by (slot, id) makes the result, and which error is reported, independent of the
  // input order.
  std::sort(p.members_.begin(), p.members_.end(), [](const Member& a, const Member& b) {
    return a.slot != b.slot ? a.slot < b.slot : a.id < b.id;
  });
  absl::flat_hash_map<std::string_view, uint32_t> slot_of_id;
  slot_of_id.reserve(p.members_.size());
  for (size_t i = 0; i < p.members_.size(); ++i) {
    const Member& m = p.members_[i];
    if (m.id.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("member at slot ", m.slot, " has an empty id"));
    }
    if (m.slot >= kMaxSlots) {
      return absl::InvalidArgumentError(
          absl::StrCat("member '", m.id, "' has slot ", m.slot, "; slots must be < ", kMaxSlots));
    }
    if (i > 0 && p.members_[i - 1].slot == m.slot) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate slot ", m.slot, " (members '",
                                                     p.members_[i - 1].id, "' and '", m.id, "')"));
    }
    auto [it, inserted] = slot_of_id.emplace(m.id, m.slot);
    if (!inserted) {
      return absl::InvalidArgumentError(absl::StrCat("duplicate member id '", m.id, "' (slots ",
                                                     it->second, " and ", m.slot, ")"));
    }
  }

  const uint32_t capacity = std::bit_ceil(p.members_.back().slot + 1);
  const uint32_t n = static_cast<uint32_t>(p.members_.size());
  p.mask_ = capacity - 1;
  const uint64_t expected_probes = (capacity + n - 1) / n;
  p.probe_limit_ = static_cast<uint32_t>(
      std::min<uint64_t>(kProbesPerExpected * expected_probes, kMaxProbeLimit));
  p.bits_.assign((capacity + 63) / 64, 0);
  p.slot_to_index_.assign(capacity, 0);
  for (uint32_t i = 0; i < n; ++i) {
    const uint32_t slot = p.members_[i].slot;
    p.bits_[slot >> 6] |= uint64_t{1} << (slot & 63);
    p.slot_to_index_[slot] = i;
  }
  return p;
}

uint32_t Placement::NextActive(uint32_t slot) const {
  // At least one slot is active, so this returns within one wrap (bits above C are never set).
  size_t w = slot >> 6;
  uint64_t word = bits_[w] & (~uint64_t{0} << (slot & 63));
  while (word == 0) {
    w = w + 1 == bits_.size() ? 0 : w + 1;
    word = bits_[w];
  }
  return static_cast<uint32_t>(w << 6) + static_cast<uint32_t>(std::countr_zero(word));
}

uint32_t Placement::OwnerIndex(uint64_t hash) const {
  uint64_t x = hash;
  uint32_t slot = 0;
  for (uint32_t i = 0; i < probe_limit_; ++i, x += kGolden) {
    slot = static_cast<uint32_t>(Mix64(x)) & mask_;
    if (Active(slot)) return slot_to_index_[slot];
  }
  return slot_to_index_[NextActive(slot)];
}

std::vector<uint32_t> Placement::TopR(uint64_t hash, size_t r) const {
  r = std::min(r, members_.size());
  std::vector<uint32_t> out;
  out.reserve(r);
  std::vector<bool> taken(r > kLinearTopR ? members_.size() : 0);
  // Adds the member at an active slot unless already taken.
  auto take = [&](uint32_t slot) {
    const uint32_t index = slot_to_index_[slot];
    if (taken.empty()) {
      if (std::find(out.begin(), out.end(), index) != out.end()) return;
    } else {
      if (taken[index]) return;
      taken[index] = true;
    }
    out.push_back(index);
  };
  uint64_t x = hash;
  uint32_t slot = 0;
  for (uint32_t i = 0; i < probe_limit_ && out.size() < r; ++i, x += kGolden) {
    slot = static_cast<uint32_t>(Mix64(x)) & mask_;
    if (Active(slot)) take(slot);
  }
  // Same fallback as OwnerIndex: scan upwards from the last probe. Each active slot is seen once
  // before the scan wraps past its start, and r <= N of them exist, so this terminates.
  while (out.size() < r) {
    slot = NextActive(slot);
    take(slot);
    slot = (slot + 1) & mask_;
  }
  return out;
}

size_t Placement::MemoryBytes() const {
  return sizeof(*this) + bits_.capacity() * sizeof(uint64_t) +
         slot_to_index_.capacity() * sizeof(uint32_t) + MembersMemoryBytes(members_);
}

}  // namespace kvtier
