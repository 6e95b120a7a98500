#include "bench/ring_bench.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/cluster/placement.h"

namespace kvtier::bench {
namespace {

constexpr size_t kKeysPerNode = 200;
constexpr int kTimedRuns = 3;  // lookup timings: median of these
constexpr double kMiB = 1024.0 * 1024.0;

// splitmix64: a cheap, seedable stream for keys (not the placement's hash).
struct SplitMix64 {
  uint64_t state;
  uint64_t Next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
};

Member NodeAt(uint32_t slot) {
  return Member{
      absl::StrCat("node-", slot),
      absl::StrFormat("10.%d.%d.%d:7000", (slot >> 16) & 255, (slot >> 8) & 255, slot & 255), slot};
}

Roster RosterOfSlots(uint32_t n) {
  Roster roster;
  roster.version = n;
  roster.members.reserve(n);
  for (uint32_t s = 0; s < n; ++s) roster.members.push_back(NodeAt(s));
  return roster;
}

absl::StatusOr<Placement> BuildTimed(const Roster& roster, const char* what) {
  const auto t0 = Now();
  auto p = Placement::Build(roster);
  if (!p.ok()) return p.status();
  std::printf("ring: built placement %s: %zu nodes, capacity %u, probe limit %u (%.1f ms)\n", what,
              p->size(), p->capacity(), p->probe_limit(), Seconds(Now() - t0) * 1e3);
  return p;
}

// Owner slot of every key.
std::vector<uint32_t> OwnerSlots(const Placement& p, const std::vector<uint64_t>& hashes) {
  std::vector<uint32_t> out(hashes.size());
  for (size_t i = 0; i < hashes.size(); ++i) out[i] = p.Owner(hashes[i]).slot;
  return out;
}

size_t CountMoved(const std::vector<uint32_t>& a, const std::vector<uint32_t>& b) {
  size_t moved = 0;
  for (size_t i = 0; i < a.size(); ++i) moved += a[i] != b[i];
  return moved;
}

struct Spread {
  double max_over_mean = 0, min_over_mean = 0, cv = 0;  // cv: stddev / mean
};
Spread SpreadOf(const std::vector<uint32_t>& counts, size_t nodes, size_t keys) {
  const double mean = static_cast<double>(keys) / static_cast<double>(nodes);
  double var = 0;
  for (uint32_t c : counts) var += (c - mean) * (c - mean);
  var /= static_cast<double>(counts.size());
  const auto [lo, hi] = std::minmax_element(counts.begin(), counts.end());
  return {*hi / mean, *lo / mean, std::sqrt(var) / mean};
}

// Median of kTimedRuns runs of `fn` over n items, in items per second.
template <typename Fn>
double RatePerSecond(size_t n, Fn fn) {
  std::vector<double> rates;
  for (int run = 0; run < kTimedRuns; ++run) {
    const auto t0 = Now();
    fn();
    rates.push_back(static_cast<double>(n) / Seconds(Now() - t0));
  }
  return Median(rates);
}

// The movement of one change, as the moved fraction times the node count of the larger view (1.0
// means exactly one node's share moved).
double PrintMovement(const char* what, size_t moved, size_t keys, size_t larger_nodes) {
  const double fraction = static_cast<double>(moved) / static_cast<double>(keys);
  const double times_n = fraction * static_cast<double>(larger_nodes);
  std::printf("ring: movement %s: %zu keys moved (fraction %.6f, x N = %.3f)\n", what, moved,
              fraction, times_n);
  return times_n;
}

std::string Fmt(double v) {
  return v >= 1000 ? absl::StrFormat("%.0f", v) : absl::StrFormat("%.4g", v);
}

}  // namespace

std::string FormatRingResult(const Result& r) {
  std::string line = "RESULT " + r.name;
  for (const auto& [k, v] : r.params) absl::StrAppend(&line, " ", k, "=", v);
  absl::StrAppend(&line, " ours=", Fmt(r.ours));
  if (!r.baseline_name.empty()) {
    absl::StrAppend(&line, " baseline_", r.baseline_name, "=", Fmt(r.baseline),
                    " ratio=", absl::StrFormat("%.3f", r.ratio));
  }
  return line;
}

absl::StatusOr<std::vector<Result>> RunRingBench(const RingBenchOptions& o) {
  // The capacity-doubling case joins slot bit_ceil(nodes), which must stay a valid slot.
  if (o.nodes < 2 || o.nodes > Placement::kMaxSlots / 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("--nodes must be in [2, ", Placement::kMaxSlots / 2, "]"));
  }
  const size_t n = o.nodes;
  const size_t k = o.keys != 0 ? o.keys : kKeysPerNode * n;
  const auto start = Now();

  // Keys and their placement hashes.
  std::printf("ring: %zu nodes, %zu random keys (seed %llu)\n", n, k,
              static_cast<unsigned long long>(o.seed));
  SplitMix64 rng{o.seed};
  std::vector<Key128> keys(k);
  for (Key128& key : keys) key = Key128{rng.Next(), rng.Next()};
  std::vector<uint64_t> hashes(k);
  for (size_t i = 0; i < k; ++i) hashes[i] = PlacementHash(keys[i]);
  std::fflush(stdout);

  const Roster roster = RosterOfSlots(o.nodes);
  auto full = BuildTimed(roster, "for the view");
  if (!full.ok()) return full.status();

  // (a) Lookups on one core.
  uint64_t sink = 0;
  const double owner_rate = RatePerSecond(k, [&] {
    for (const Key128& key : keys) sink += full->Owner(PlacementHash(key)).slot;
  });
  const double index_rate = RatePerSecond(k, [&] {
    for (uint64_t h : hashes) sink += full->OwnerIndex(h);
  });
  const double mod_rate = RatePerSecond(k, [&] {
    for (const Key128& key : keys) sink += roster.members[PlacementHash(key) % n].slot;
  });
  std::printf(
      "ring: lookups on one core (median of %d): Owner(PlacementHash(key)) %.1f M/s, "
      "OwnerIndex(hash) %.1f M/s; baseline members[hash mod N] %.1f M/s (sink %llu)\n",
      kTimedRuns, owner_rate / 1e6, index_rate / 1e6, mod_rate / 1e6,
      static_cast<unsigned long long>(sink & 1));

  // (b) Memory: the placement (its tables and its copy of the members) plus the caller's roster.
  const size_t placement_bytes = full->MemoryBytes();
  const size_t member_copy_bytes = MembersMemoryBytes(full->members());
  const size_t roster_bytes = sizeof(Roster) + MembersMemoryBytes(roster.members);
  const double memory_mib = static_cast<double>(placement_bytes + roster_bytes) / kMiB;
  std::printf(
      "ring: memory: placement %.2f MiB (tables %.1f KiB, members copy %.2f MiB), roster %.2f "
      "MiB (ids like '%s', addresses like '%s'), total %.2f MiB\n",
      static_cast<double>(placement_bytes) / kMiB,
      static_cast<double>(placement_bytes - member_copy_bytes) / 1024.0,
      static_cast<double>(member_copy_bytes) / kMiB, static_cast<double>(roster_bytes) / kMiB,
      roster.members.back().id.c_str(), roster.members.back().address.c_str(), memory_mib);

  // (c) Balance, ours and hash mod N on the same keys.
  const std::vector<uint32_t> owners = OwnerSlots(*full, hashes);
  std::vector<uint32_t> ours_counts(n, 0), mod_counts(n, 0);
  for (uint32_t s : owners) ++ours_counts[s];
  for (uint64_t h : hashes) ++mod_counts[h % n];
  const Spread ours = SpreadOf(ours_counts, n, k);
  const Spread mod = SpreadOf(mod_counts, n, k);
  const double mean = static_cast<double>(k) / static_cast<double>(n);
  std::printf(
      "ring: balance (%.1f keys/node): ours max/mean %.4f min/mean %.4f cv %.4f; hash mod N "
      "max/mean %.4f min/mean %.4f cv %.4f; ideal (Poisson) cv %.4f\n",
      mean, ours.max_over_mean, ours.min_over_mean, ours.cv, mod.max_over_mean, mod.min_over_mean,
      mod.cv, 1 / std::sqrt(mean));
  std::fflush(stdout);

  // (d) Movement. One random node leaves.
  const uint32_t leaver = static_cast<uint32_t>(rng.Next() % n);
  Roster minus = roster;
  minus.members.erase(minus.members.begin() + leaver);
  auto p_minus = BuildTimed(minus, absl::StrCat("without node-", leaver).c_str());
  if (!p_minus.ok()) return p_minus.status();
  const std::vector<uint32_t> owners_minus = OwnerSlots(*p_minus, hashes);
  size_t moved_not_leaver = 0;
  for (size_t i = 0; i < k; ++i) {
    moved_not_leaver += owners[i] != owners_minus[i] && owners[i] != leaver;
  }
  const double leave_x = PrintMovement(absl::StrCat("node-", leaver, " leaves").c_str(),
                                       CountMoved(owners, owners_minus), k, n);
  std::printf("ring:   it owned %u keys; keys moved that it did not own: %zu\n",
              ours_counts[leaver], moved_not_leaver);

  // A new node joins the lowest free slot (the one just freed).
  Roster rejoin = minus;
  rejoin.members.insert(rejoin.members.begin() + leaver,
                        Member{"node-new", "10.255.0.1:7000", leaver});
  auto p_rejoin = BuildTimed(rejoin, "with node-new in the freed slot");
  if (!p_rejoin.ok()) return p_rejoin.status();
  const std::vector<uint32_t> owners_rejoin = OwnerSlots(*p_rejoin, hashes);
  const double join_free_x =
      PrintMovement("node-new joins the freed slot", CountMoved(owners_minus, owners_rejoin), k, n);
  std::printf("ring:   owners then equal the original view's for every key: %s\n",
              owners_rejoin == owners ? "yes" : "NO");

  // A new node joins as a new slot at the end.
  Roster plus = roster;
  plus.members.push_back(NodeAt(o.nodes));
  auto p_plus = BuildTimed(plus, "with a node at a new slot at the end");
  if (!p_plus.ok()) return p_plus.status();
  const bool end_doubles = p_plus->capacity() != full->capacity();
  const double join_end_x =
      PrintMovement(end_doubles ? "node joins a new slot at the end (capacity doubles)"
                                : "node joins a new slot at the end",
                    CountMoved(owners, OwnerSlots(*p_plus, hashes)), k, n + 1);

  // Baseline hash mod N: the same leave and join at the end.
  size_t mod_leave = 0, mod_join = 0;
  for (uint64_t h : hashes) {
    const uint64_t before = h % n;
    const uint64_t after_leave = h % (n - 1);
    mod_leave += before != (after_leave < leaver ? after_leave : after_leave + 1);
    mod_join += before != h % (n + 1);
  }
  PrintMovement("baseline hash mod N, the same node leaves", mod_leave, k, n);
  PrintMovement("baseline hash mod N, a node joins at the end", mod_join, k, n + 1);

  // The one event that moves more: capacity doubling, N = C exactly, then one join at slot C.
  const uint32_t c = std::bit_ceil(o.nodes);
  const Roster at_capacity = c == o.nodes ? roster : RosterOfSlots(c);
  Roster over_capacity = at_capacity;
  over_capacity.members.push_back(NodeAt(c));
  auto p_c = BuildTimed(at_capacity, "with N = C");
  if (!p_c.ok()) return p_c.status();
  auto p_c1 = BuildTimed(over_capacity, "with N = C + 1");
  if (!p_c1.ok()) return p_c1.status();
  PrintMovement(absl::StrFormat("CAPACITY DOUBLING (N = C = %u, one node joins slot %u, C -> %u)",
                                c, c, p_c1->capacity())
                    .c_str(),
                CountMoved(OwnerSlots(*p_c, hashes), OwnerSlots(*p_c1, hashes)), k, c + 1);
  std::printf("ring:   (the reverse, the node at slot %u leaving, moves the same keys back)\n", c);
  std::printf("ring: done in %.1f s\n", Seconds(Now() - start));

  // The worse of leave and join; a join at the end that doubles the capacity (N a power of two)
  // is the doubling event, reported above, not a plain join.
  const double movement = std::max({leave_x, join_free_x, end_doubles ? 0.0 : join_end_x});
  const std::string nodes = absl::StrCat(n);
  std::vector<Result> results(4);
  results[0].name = "ring_lookup";
  results[0].ours = owner_rate;
  results[1].name = "ring_memory";
  results[1].ours = memory_mib;
  results[2].name = "ring_balance";
  results[2].ours = ours.max_over_mean;
  results[2].baseline_name = "uniform";
  results[2].baseline = mod.max_over_mean;
  results[2].ratio = ours.max_over_mean / mod.max_over_mean;
  results[3].name = "ring_movement";
  results[3].ours = movement;
  for (Result& r : results) r.params = {{"nodes", nodes}};
  results[2].params.emplace_back("keys", absl::StrCat(k));
  return results;
}

}  // namespace kvtier::bench
