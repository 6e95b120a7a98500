#include "server/cluster/placement.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"

namespace kvtier {
namespace {

using ::testing::HasSubstr;

Member MemberAt(uint32_t slot) {
  return Member{absl::StrCat("node-", slot), absl::StrCat("10.0.0.", slot % 250, ":7000"), slot};
}

Roster RosterOf(const std::vector<uint32_t>& slots) {
  Roster roster;
  roster.version = 7;
  for (uint32_t s : slots) roster.members.push_back(MemberAt(s));
  return roster;
}

std::vector<uint32_t> Range(uint32_t n) {
  std::vector<uint32_t> v(n);
  for (uint32_t i = 0; i < n; ++i) v[i] = i;
  return v;
}

// Placement hashes of `n` random keys (fixed seed).
std::vector<uint64_t> RandomHashes(size_t n, uint64_t seed = 42) {
  std::mt19937_64 rng(seed);
  std::vector<uint64_t> out(n);
  for (uint64_t& h : out) h = PlacementHash(Key128{rng(), rng()});
  return out;
}

Placement BuildOrDie(const Roster& roster) {
  auto p = Placement::Build(roster);
  EXPECT_TRUE(p.ok()) << p.status();
  return *std::move(p);
}

// Keys per member id.
std::map<std::string, size_t> CountOwners(const Placement& p, const std::vector<uint64_t>& hashes) {
  std::map<std::string, size_t> counts;
  for (const Member& m : p.members()) counts[m.id] = 0;
  for (uint64_t h : hashes) ++counts[p.Owner(h).id];
  return counts;
}

// Checks every member's share is within +-20% of the mean: with >= 2,000 keys per member that is
// >= 9 standard deviations, so it cannot fail by chance, but a member with 0 or 3x the keys fails.
void ExpectBalanced(const Placement& p, const std::vector<uint64_t>& hashes) {
  const double mean = static_cast<double>(hashes.size()) / static_cast<double>(p.size());
  ASSERT_GE(mean, 2000);
  for (const auto& [id, count] : CountOwners(p, hashes)) {
    EXPECT_GT(count, 0.8 * mean) << id;
    EXPECT_LT(count, 1.2 * mean) << id;
  }
}

// The slots 0..99 with a few holes, so joins into free slots below the maximum are possible.
std::vector<uint32_t> SlotsWithHoles() {
  std::vector<uint32_t> slots;
  for (uint32_t s = 0; s < 100; ++s) {
    if (s % 7 != 3) slots.push_back(s);
  }
  return slots;
}

// A very sparse roster: capacity 2^20 for 3 members, so most lookups take the bitmap-scan
// fallback after probe_limit() probes.
std::vector<uint32_t> SparseSlots() { return {0, 3, Placement::kMaxSlots - 1}; }

TEST(PlacementTest, CapacityIsThePowerOfTwoAboveTheLargestSlot) {
  EXPECT_EQ(BuildOrDie(RosterOf({0})).capacity(), 1u);
  EXPECT_EQ(BuildOrDie(RosterOf(Range(100))).capacity(), 128u);
  EXPECT_EQ(BuildOrDie(RosterOf(Range(128))).capacity(), 128u);
  EXPECT_EQ(BuildOrDie(RosterOf({5, 128})).capacity(), 256u);
  const Placement p = BuildOrDie(RosterOf(Range(100)));
  EXPECT_EQ(p.version(), 7u);
  EXPECT_EQ(p.probe_limit(), 128u);  // 64 per expected probe (ceil(128 / 100) = 2)
  EXPECT_GE(p.MemoryBytes(), 128 * sizeof(uint32_t) + 100 * sizeof(Member));
}

TEST(PlacementTest, SameOwnersWhateverTheInputOrder) {
  const Roster sorted = RosterOf(SlotsWithHoles());
  Roster shuffled = sorted;
  std::mt19937_64 rng(1);
  std::shuffle(shuffled.members.begin(), shuffled.members.end(), rng);
  ASSERT_NE(shuffled.members, sorted.members);
  const Placement a = BuildOrDie(sorted);
  const Placement b = BuildOrDie(shuffled);
  EXPECT_EQ(a.members(), sorted.members);
  EXPECT_EQ(b.members(), sorted.members);
  std::set<uint32_t> owners;
  for (uint64_t h : RandomHashes(20000)) {
    ASSERT_EQ(a.OwnerIndex(h), b.OwnerIndex(h));
    owners.insert(a.OwnerIndex(h));
  }
  EXPECT_EQ(owners.size(), a.size());
}

TEST(PlacementTest, PinnedOwnersDoNotChange) {
  // Every daemon, of every version, must agree on owners: a change here moves every key in a
  // cluster under a rolling upgrade. Change only with a placement version bump.
  EXPECT_EQ(PlacementHash(Key128{0, 0}), 0x48218226ff3cd4bfull);
  EXPECT_EQ(PlacementHash(Key128{1, 2}), 0xf2826f98653e9e57ull);
  const Placement p = BuildOrDie(RosterOf(SlotsWithHoles()));
  EXPECT_EQ(p.Owner(0).slot, 0u);
  EXPECT_EQ(p.Owner(1).slot, 65u);
  EXPECT_EQ(p.Owner(0x123456789abcdefull).slot, 44u);
  EXPECT_EQ(p.Owner(0xf2826f98653e9e57ull).slot, 4u);
}

TEST(PlacementTest, SingleMemberOwnsEverything) {
  for (uint32_t slot : {0u, 5u, Placement::kMaxSlots - 1}) {
    const Placement p = BuildOrDie(RosterOf({slot}));
    for (uint64_t h : RandomHashes(200)) ASSERT_EQ(p.Owner(h).slot, slot);
  }
}

TEST(PlacementTest, KeysSpreadEvenlyOverMembers) {
  const std::vector<uint64_t> hashes = RandomHashes(200000);
  ExpectBalanced(BuildOrDie(RosterOf(Range(64))), hashes);            // C = N: one probe
  ExpectBalanced(BuildOrDie(RosterOf(Range(65))), hashes);            // C = 128: ~2 probes
  ExpectBalanced(BuildOrDie(RosterOf(SlotsWithHoles())), hashes);     // holes
  ExpectBalanced(BuildOrDie(RosterOf({1, 40, 1000, 4095})), hashes);  // sparse, no fallback
}

// Checks that going from `before` to `after` (rosters that differ by the member at `slot`) moves
// exactly the keys that member owns (in the view that has it), and that it owns some.
void ExpectOnlyMemberMoves(const Roster& before, const Roster& after, uint32_t slot,
                           size_t num_keys) {
  const Placement a = BuildOrDie(before);
  const Placement b = BuildOrDie(after);
  ASSERT_EQ(a.capacity(), b.capacity());
  size_t moved = 0, member_keys = 0;
  for (uint64_t h : RandomHashes(num_keys)) {
    const Member& from = a.Owner(h);
    const Member& to = b.Owner(h);
    if (from.slot == slot || to.slot == slot) ++member_keys;
    if (from == to) continue;
    ++moved;
    ASSERT_TRUE(from.slot == slot || to.slot == slot)
        << "key " << h << " moved from " << from.id << " to " << to.id;
  }
  EXPECT_EQ(moved, member_keys);
  EXPECT_GT(member_keys, 0u);
}

TEST(PlacementTest, RemovingAMemberMovesOnlyItsKeys) {
  const Roster full = RosterOf(SlotsWithHoles());
  for (uint32_t slot : {0u, 50u, 98u}) {
    Roster without = full;
    std::erase_if(without.members, [&](const Member& m) { return m.slot == slot; });
    ExpectOnlyMemberMoves(full, without, slot, 100000);
  }
}

TEST(PlacementTest, AddingAMemberOnlyTakesKeys) {
  const Roster base = RosterOf(SlotsWithHoles());
  for (uint32_t slot : {3u, 52u}) {  // free slots below the largest
    Roster with = base;
    with.members.push_back(MemberAt(slot));
    ExpectOnlyMemberMoves(base, with, slot, 100000);
  }
  Roster at_end = base;  // a new largest slot, same capacity
  at_end.members.push_back(MemberAt(120));
  ExpectOnlyMemberMoves(base, at_end, 120, 100000);
}

TEST(PlacementTest, FallbackScanAlsoMovesOnlyTheChangedMember) {
  Roster sparse = RosterOf(SparseSlots());
  const Placement p = BuildOrDie(sparse);
  ASSERT_EQ(p.capacity(), Placement::kMaxSlots);
  ASSERT_EQ(p.probe_limit(), 1u << 16);
  // Most keys here end in the fallback scan (P = (1 - 3/2^20)^65536 ~ 0.83); each member gets
  // some keys and removing or adding one moves only that member's keys.
  Roster without = sparse;
  without.members.erase(without.members.begin() + 1);  // slot 3
  ExpectOnlyMemberMoves(sparse, without, 3, 600);
  Roster with = sparse;
  with.members.push_back(MemberAt(700000));
  ExpectOnlyMemberMoves(sparse, with, 700000, 600);
}

TEST(PlacementTest, TopRIsDistinctAndStartsWithTheOwner) {
  const Placement p = BuildOrDie(RosterOf(SlotsWithHoles()));
  for (uint64_t h : RandomHashes(2000)) {
    const std::vector<uint32_t> top = p.TopR(h, 3);
    ASSERT_EQ(top.size(), 3u);
    EXPECT_EQ(top[0], p.OwnerIndex(h));
    EXPECT_EQ(std::set<uint32_t>(top.begin(), top.end()).size(), 3u);
  }
  EXPECT_TRUE(p.TopR(1, 0).empty());
  // r above the member count: every member once (exercises the vector<bool> path too).
  for (size_t r : {p.size(), p.size() + 10}) {
    const std::vector<uint32_t> all = p.TopR(99, r);
    EXPECT_EQ(all.size(), p.size());
    EXPECT_EQ(std::set<uint32_t>(all.begin(), all.end()).size(), p.size());
    EXPECT_EQ(all[0], p.OwnerIndex(99));
  }
  // Replicas are spread too: the second choice is not always one member.
  std::set<uint32_t> seconds;
  for (uint64_t h : RandomHashes(1000)) seconds.insert(p.TopR(h, 2)[1]);
  EXPECT_GT(seconds.size(), p.size() / 2);
}

TEST(PlacementTest, TopRThroughTheFallbackScan) {
  const Placement p = BuildOrDie(RosterOf(SparseSlots()));
  for (uint64_t h : RandomHashes(50)) {
    const std::vector<uint32_t> top = p.TopR(h, 3);
    ASSERT_EQ(top.size(), 3u);
    EXPECT_EQ(top[0], p.OwnerIndex(h));
    EXPECT_EQ(std::set<uint32_t>(top.begin(), top.end()).size(), 3u);
  }
}

void ExpectInvalid(const Roster& roster, const std::string& message) {
  const auto p = Placement::Build(roster);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(p.status().message(), HasSubstr(message));
}

TEST(PlacementTest, RejectsMalformedRosters) {
  ExpectInvalid(Roster{}, "roster has no members");
  Roster empty_id = RosterOf({0, 1, 2});
  empty_id.members[1].id.clear();
  ExpectInvalid(empty_id, "member at slot 1 has an empty id");
  Roster dup_slot = RosterOf({0, 1, 2});
  dup_slot.members[2].slot = 1;
  ExpectInvalid(dup_slot, "duplicate slot 1 (members 'node-1' and 'node-2')");
  Roster dup_id = RosterOf({0, 1, 2});
  dup_id.members[2].id = "node-0";
  ExpectInvalid(dup_id, "duplicate member id 'node-0' (slots 0 and 2)");
  ExpectInvalid(RosterOf({0, Placement::kMaxSlots}), "slots must be < 1048576");
}

}  // namespace
}  // namespace kvtier
