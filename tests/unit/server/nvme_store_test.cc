#include "server/nvme/nvme_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <future>
#include <random>

#include "server/dram/arena.h"
#include "server/nvme/nvme_format.h"
#include "tests/support/flip_byte.h"

namespace kvtier {
namespace {

struct Free {
  void operator()(std::byte* p) const { std::free(p); }
};
using Buffer = std::unique_ptr<std::byte, Free>;
Buffer Aligned(uint64_t bytes) {
  return Buffer(static_cast<std::byte*>(std::aligned_alloc(4096, nvme::RoundUpPage(bytes))));
}

class NvmeStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // On the work tree's disk (ext4, O_DIRECT works there), not tmpfs.
    dir_ = std::filesystem::current_path() / ("nvme-test-" + std::to_string(getpid()));
    std::filesystem::create_directories(dir_);
    path_ = (dir_ / "nvme.dat").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<NvmeStore> Open(uint64_t capacity, std::vector<RecoveredBlock>* found,
                                  uint64_t fail_after = 0) {
    NvmeOptions o;
    o.path = path_;
    o.capacity = capacity;
    o.fail_writes_after = fail_after;
    auto s = NvmeStore::Open(o, nullptr, 0, found);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }

  absl::StatusOr<NvmeLocation> Write(NvmeStore& s, const NvmeKey& id, const std::byte* src,
                                     uint64_t bytes) {
    std::promise<absl::StatusOr<NvmeLocation>> p;
    s.Write(id, src, bytes, nvme::PayloadChecksum(src, bytes),
            [&](absl::StatusOr<NvmeLocation> r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }

  absl::Status Read(NvmeStore& s, const NvmeLocation& at, std::byte* dst, uint64_t bytes,
                    uint64_t checksum) {
    std::promise<absl::Status> p;
    s.Read(at, dst, bytes, checksum, [&](absl::Status r) { p.set_value(r); });
    return p.get_future().get();
  }

  Buffer RandomBlock(uint64_t bytes) {
    Buffer b = Aligned(bytes);
    for (uint64_t i = 0; i < nvme::RoundUpPage(bytes); ++i) b.get()[i] = std::byte(rng_());
    return b;
  }

  std::filesystem::path dir_;
  std::string path_;
  std::mt19937_64 rng_{std::random_device{}()};
};

TEST_F(NvmeStoreTest, WritesAndReadsBackEveryByte) {
  std::vector<RecoveredBlock> found;
  auto store = Open(32 << 20, &found);
  ASSERT_NE(store, nullptr);
  EXPECT_TRUE(found.empty());
  const uint64_t bytes = (256 << 10) - 100;  // not a whole number of pages
  std::vector<Buffer> blocks;
  std::vector<NvmeLocation> at;
  for (int i = 0; i < 10; ++i) {
    blocks.push_back(RandomBlock(bytes));
    auto loc = Write(*store, {1, {uint64_t(i), 9}}, blocks.back().get(), bytes);
    ASSERT_TRUE(loc.ok()) << loc.status();
    at.push_back(*loc);
  }
  Buffer out = Aligned(bytes);
  for (int i = 0; i < 10; ++i) {
    std::memset(out.get(), 0xEE, nvme::RoundUpPage(bytes));
    ASSERT_TRUE(
        Read(*store, at[i], out.get(), bytes, nvme::PayloadChecksum(blocks[i].get(), bytes)).ok());
    EXPECT_EQ(std::memcmp(out.get(), blocks[i].get(), bytes), 0) << i;
  }
  NvmeCounters c = store->Counters();
  EXPECT_EQ(c.bytes_in, 10 * bytes);
  EXPECT_EQ(c.bytes_out, 10 * bytes);
  EXPECT_FALSE(c.degraded);
}

TEST_F(NvmeStoreTest, FlippedBytesAreDataLossNeverServed) {
  std::vector<RecoveredBlock> found;
  auto store = Open(16 << 20, &found);
  const uint64_t bytes = 64 << 10;
  Buffer block = RandomBlock(bytes);
  auto loc = Write(*store, {1, {1, 1}}, block.get(), bytes);
  ASSERT_TRUE(loc.ok());
  // Flip a byte of the payload behind the store's back.
  ASSERT_TRUE(testing::FlipByte(path_, loc->offset + nvme::kPage + 1000));
  Buffer out = Aligned(bytes);
  absl::Status s = Read(*store, *loc, out.get(), bytes, nvme::PayloadChecksum(block.get(), bytes));
  EXPECT_TRUE(absl::IsDataLoss(s)) << s;
  EXPECT_EQ(store->Counters().corrupt_blocks, 1u);
}

TEST_F(NvmeStoreTest, RestartFindsIntactRecordsAndStopsAtATornOne) {
  const uint64_t bytes = 128 << 10;
  std::vector<Buffer> blocks;
  std::vector<NvmeLocation> at;
  {
    std::vector<RecoveredBlock> found;
    auto store = Open(16 << 20, &found);
    for (uint64_t i = 0; i < 5; ++i) {
      blocks.push_back(RandomBlock(bytes));
      auto loc = Write(*store, {7, {i, 3}}, blocks.back().get(), bytes);
      ASSERT_TRUE(loc.ok());
      at.push_back(*loc);
    }
  }
  // Tear the header of the fourth record.
  ASSERT_TRUE(testing::FlipByte(path_, at[3].offset + 40));

  std::vector<RecoveredBlock> found;
  auto store = Open(16 << 20, &found);
  ASSERT_EQ(found.size(), 3u);
  Buffer out = Aligned(bytes);
  for (uint64_t i = 0; i < 3; ++i) {
    EXPECT_EQ(found[i].id.ns, 7u);
    EXPECT_EQ(found[i].id.key, (Key128{i, 3}));
    EXPECT_EQ(found[i].bytes, bytes);
    EXPECT_EQ(found[i].location.offset, at[i].offset);
    ASSERT_TRUE(Read(*store, found[i].location, out.get(), bytes, found[i].checksum).ok());
    EXPECT_EQ(std::memcmp(out.get(), blocks[i].get(), bytes), 0);
  }
  // New writes go to a fresh region and survive the next restart too.
  ASSERT_TRUE(Write(*store, {7, {99, 3}}, blocks[0].get(), bytes).ok());
  store.reset();
  std::vector<RecoveredBlock> again;
  store = Open(16 << 20, &again);
  EXPECT_EQ(again.size(), 4u);
}

TEST_F(NvmeStoreTest, FullDeviceGivesBackTheOldestRegion) {
  std::vector<RecoveredBlock> found;
  auto store = Open(8 << 20, &found);  // two 4 MiB regions
  ASSERT_EQ(store->region_bytes(), 4u << 20);
  std::vector<NvmeKey> lost;
  store->set_on_evicted([&](uint32_t region, const std::vector<NvmeKey>& keys) {
    EXPECT_EQ(region, 0u);
    lost.insert(lost.end(), keys.begin(), keys.end());
  });
  const uint64_t bytes = 1 << 20;  // three records fit a region
  Buffer block = RandomBlock(bytes);
  for (uint64_t i = 0; i < 6; ++i) ASSERT_TRUE(Write(*store, {1, {i, 0}}, block.get(), bytes).ok());
  EXPECT_TRUE(lost.empty());
  ASSERT_TRUE(Write(*store, {1, {6, 0}}, block.get(), bytes).ok());
  ASSERT_EQ(lost.size(), 3u);
  for (uint64_t i = 0; i < 3; ++i) EXPECT_EQ(lost[i].key.lo, i);
  EXPECT_EQ(store->Counters().regions_evicted, 1u);
}

TEST_F(NvmeStoreTest, WriteErrorsDegradeTheTierOnce) {
  std::vector<RecoveredBlock> found;
  auto store = Open(16 << 20, &found, /*fail_after=*/2);
  Buffer block = RandomBlock(8192);
  EXPECT_TRUE(Write(*store, {1, {1, 0}}, block.get(), 8192).ok());
  EXPECT_TRUE(Write(*store, {1, {2, 0}}, block.get(), 8192).ok());
  auto third = Write(*store, {1, {3, 0}}, block.get(), 8192);
  EXPECT_TRUE(absl::IsUnavailable(third.status())) << third.status();
  NvmeCounters c = store->Counters();
  EXPECT_TRUE(c.degraded);
  EXPECT_EQ(c.io_errors, 1u);
  auto fourth = Write(*store, {1, {4, 0}}, block.get(), 8192);
  EXPECT_TRUE(absl::IsUnavailable(fourth.status()));
  EXPECT_EQ(store->Counters().io_errors, 1u);  // refused up front, not tried
}

TEST_F(NvmeStoreTest, BadPathsAreClearStartupErrors) {
  std::vector<RecoveredBlock> found;
  NvmeOptions o;
  o.capacity = 16 << 20;
  o.path = (dir_ / "no-such-dir" / "nvme.dat").string();
  auto missing = NvmeStore::Open(o, nullptr, 0, &found);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("--nvme-path"), std::string::npos);

  o.path = path_;
  o.capacity = 1 << 20;
  auto small = NvmeStore::Open(o, nullptr, 0, &found);
  ASSERT_FALSE(small.ok());
  EXPECT_NE(small.status().message().find("--nvme-capacity"), std::string::npos);
}

TEST_F(NvmeStoreTest, NoODirectIsAClearStartupError) {
  // tmpfs refused O_DIRECT before Linux 6.6; newer kernels accept it, and then nothing on this
  // machine refuses it: skip rather than pretend.
  const std::string probe = "/dev/shm/kvtier-odirect-probe-" + std::to_string(getpid());
  int fd = open(probe.c_str(), O_RDWR | O_CREAT | O_DIRECT, 0600);
  if (fd >= 0) {
    close(fd);
    std::filesystem::remove(probe);
    GTEST_SKIP() << "tmpfs accepts O_DIRECT on this kernel; no file system here refuses it";
  }
  std::vector<RecoveredBlock> found;
  NvmeOptions o;
  o.path = probe;
  o.capacity = 16 << 20;
  auto tmpfs = NvmeStore::Open(o, nullptr, 0, &found);
  ASSERT_FALSE(tmpfs.ok());
  EXPECT_NE(tmpfs.status().message().find("O_DIRECT"), std::string::npos) << tmpfs.status();
}

}  // namespace
}  // namespace kvtier

namespace kvtier {
namespace {

TEST_F(NvmeStoreTest, ReadsLandInTheRegisteredArena) {
  auto arena = Arena::Create(8 << 20, "nvme-test-arena");
  ASSERT_TRUE(arena.ok());
  NvmeOptions o;
  o.path = path_;
  o.capacity = 16 << 20;
  std::vector<RecoveredBlock> found;
  auto store = NvmeStore::Open(o, (*arena)->base(), (*arena)->size(), &found);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_TRUE((*store)->fixed_buffers());  // memfd memory registers (kernel >= 5.14)
  const uint64_t bytes = 1 << 20;
  std::byte* slot_a = (*arena)->base() + (2 << 20);
  std::byte* slot_b = (*arena)->base() + (5 << 20);
  for (uint64_t i = 0; i < bytes; ++i) slot_a[i] = std::byte(i * 7);
  auto loc = Write(**store, {3, {4, 5}}, slot_a, bytes);  // written from the arena
  ASSERT_TRUE(loc.ok());
  ASSERT_TRUE(Read(**store, *loc, slot_b, bytes, nvme::PayloadChecksum(slot_a, bytes)).ok());
  EXPECT_EQ(std::memcmp(slot_a, slot_b, bytes), 0);
}

}  // namespace
}  // namespace kvtier
