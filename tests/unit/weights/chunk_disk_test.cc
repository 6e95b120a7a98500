// The weights disk: chunk files that survive a restart, are verified on read, give way to a new
// version of their URI, and make room by evicting least recently used files that are not pinned.
#include "server/weights/chunk_disk.h"

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_format.h"
#include "temp_dir.h"
#include "tests/support/random_bytes.h"

namespace kvtier {
namespace {

TEST(ChunkDiskTest, WriteReadAndReopen) {
  testing::TempDir dir;
  FileIdentity f{"file:///m/a.bin", 10'000, "mtime:1", 4096};
  const auto bytes = testing::RandomBytes(4096, 5);
  {
    auto disk = ChunkDisk::Open(dir.File("w"), 1 << 20);
    ASSERT_TRUE(disk.ok()) << disk.status();
    ASSERT_TRUE((*disk)->Write(f, 1, bytes.data(), 4096).ok());
    EXPECT_TRUE((*disk)->Has(f.FileId(), 1));
    EXPECT_FALSE((*disk)->Has(f.FileId(), 0));
  }
  auto disk = ChunkDisk::Open(dir.File("w"), 1 << 20);
  ASSERT_TRUE(disk.ok());
  ASSERT_EQ((*disk)->Files().size(), 1u);
  EXPECT_EQ((*disk)->Files()[0], f);
  std::vector<std::byte> got(4096);
  ASSERT_TRUE((*disk)->Read(f, 1, got.data(), 4096).ok());
  EXPECT_EQ(got, bytes);
  EXPECT_EQ((*disk)->Read(f, 0, got.data(), 4096).code(), absl::StatusCode::kNotFound);
}

TEST(ChunkDiskTest, CorruptChunkIsDataLossAndRemoved) {
  testing::TempDir dir;
  FileIdentity f{"file:///m/a.bin", 4096, "mtime:1", 4096};
  auto disk = ChunkDisk::Open(dir.File("w"), 1 << 20);
  ASSERT_TRUE(disk.ok());
  const auto bytes = testing::RandomBytes(4096, 6);
  ASSERT_TRUE((*disk)->Write(f, 0, bytes.data(), 4096).ok());
  const std::string path = absl::StrFormat("%s/%016x/0.chunk", dir.File("w"), f.FileId());
  {
    std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
    io.seekp(32 + 100);
    io.put('\x5a' ^ static_cast<char>(bytes[100]));
  }
  std::vector<std::byte> got(4096);
  EXPECT_EQ((*disk)->Read(f, 0, got.data(), 4096).code(), absl::StatusCode::kDataLoss);
  EXPECT_FALSE((*disk)->Has(f.FileId(), 0));
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST(ChunkDiskTest, NewVersionOfAUriDropsTheOld) {
  testing::TempDir dir;
  FileIdentity old_f{"file:///m/a.bin", 4096, "mtime:1", 4096};
  FileIdentity new_f{"file:///m/a.bin", 4096, "mtime:2", 4096};
  auto disk = ChunkDisk::Open(dir.File("w"), 1 << 20);
  ASSERT_TRUE(disk.ok());
  const auto bytes = testing::RandomBytes(4096, 8);
  ASSERT_TRUE((*disk)->Write(old_f, 0, bytes.data(), 4096).ok());
  ASSERT_TRUE((*disk)->Write(new_f, 0, bytes.data(), 4096).ok());
  EXPECT_FALSE((*disk)->Has(old_f.FileId(), 0));
  EXPECT_TRUE((*disk)->Has(new_f.FileId(), 0));
  EXPECT_EQ((*disk)->Files().size(), 1u);
}

TEST(ChunkDiskTest, FullDiskRefusesWrites) {
  testing::TempDir dir;
  FileIdentity f{"file:///m/a.bin", 3 * 4096, "mtime:1", 4096};
  auto disk = ChunkDisk::Open(dir.File("w"), 2 * 4096 + 100);
  ASSERT_TRUE(disk.ok());
  const auto bytes = testing::RandomBytes(4096, 9);
  ASSERT_TRUE((*disk)->Write(f, 0, bytes.data(), 4096).ok());
  ASSERT_TRUE((*disk)->Write(f, 1, bytes.data(), 4096).ok());
  EXPECT_EQ((*disk)->Write(f, 2, bytes.data(), 4096).code(), absl::StatusCode::kResourceExhausted);
}

// Room for two 4 KiB chunks (each with its 32-byte header), not three.
constexpr uint64_t kTwoChunks = 2 * (4096 + 32) + 100;

TEST(ChunkDiskTest, LeastRecentlyUsedFileMakesRoom) {
  testing::TempDir dir;
  FileIdentity a{"file:///m/a.bin", 4096, "mtime:1", 4096};
  FileIdentity b{"file:///m/b.bin", 4096, "mtime:1", 4096};
  FileIdentity c{"file:///m/c.bin", 4096, "mtime:1", 4096};
  auto disk = ChunkDisk::Open(dir.File("w"), kTwoChunks);
  ASSERT_TRUE(disk.ok());
  const auto bytes = testing::RandomBytes(4096, 10);
  ASSERT_TRUE((*disk)->Write(a, 0, bytes.data(), 4096).ok());
  ASSERT_TRUE((*disk)->Write(b, 0, bytes.data(), 4096).ok());
  std::vector<std::byte> got(4096);
  ASSERT_TRUE((*disk)->Read(a, 0, got.data(), 4096).ok());  // a is now the more recent
  ASSERT_TRUE((*disk)->Write(c, 0, bytes.data(), 4096).ok()) << "b should have made room";
  EXPECT_TRUE((*disk)->Has(a.FileId(), 0));
  EXPECT_FALSE((*disk)->Has(b.FileId(), 0));
  EXPECT_TRUE((*disk)->Has(c.FileId(), 0));
  EXPECT_EQ((*disk)->evicted_files(), 1u);
  EXPECT_LE((*disk)->used_bytes(), kTwoChunks);
  EXPECT_FALSE(std::filesystem::exists(absl::StrFormat("%s/%016x", dir.File("w"), b.FileId())));
  EXPECT_EQ((*disk)->Files().size(), 2u);
  ASSERT_TRUE((*disk)->Read(c, 0, got.data(), 4096).ok());
  EXPECT_EQ(got, bytes);
}

TEST(ChunkDiskTest, PinnedFilesAreNotEvicted) {
  testing::TempDir dir;
  FileIdentity a{"file:///m/a.bin", 2 * 4096, "mtime:1", 4096};
  FileIdentity b{"file:///m/b.bin", 4096, "mtime:1", 4096};
  auto disk = ChunkDisk::Open(dir.File("w"), kTwoChunks);
  ASSERT_TRUE(disk.ok());
  (*disk)->SetKeep([id = a.FileId()](uint64_t file_id) { return file_id == id; });
  const auto bytes = testing::RandomBytes(4096, 11);
  ASSERT_TRUE((*disk)->Write(a, 0, bytes.data(), 4096).ok());
  ASSERT_TRUE((*disk)->Write(a, 1, bytes.data(), 4096).ok());
  const absl::Status refused = (*disk)->Write(b, 0, bytes.data(), 4096);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted) << refused;
  EXPECT_TRUE((*disk)->Has(a.FileId(), 0));
  EXPECT_TRUE((*disk)->Has(a.FileId(), 1));
  EXPECT_EQ((*disk)->evicted_files(), 0u);
  // Unpinned, a is the one to go.
  (*disk)->SetKeep(nullptr);
  ASSERT_TRUE((*disk)->Write(b, 0, bytes.data(), 4096).ok());
  EXPECT_FALSE((*disk)->Has(a.FileId(), 0));
  EXPECT_EQ((*disk)->evicted_files(), 1u);
}

// After a restart the order comes from when each file was first written: the oldest goes first.
TEST(ChunkDiskTest, EvictionOrderSurvivesARestart) {
  testing::TempDir dir;
  FileIdentity a{"file:///m/a.bin", 4096, "mtime:1", 4096};
  FileIdentity b{"file:///m/b.bin", 4096, "mtime:1", 4096};
  FileIdentity c{"file:///m/c.bin", 4096, "mtime:1", 4096};
  const auto bytes = testing::RandomBytes(4096, 12);
  {
    auto disk = ChunkDisk::Open(dir.File("w"), kTwoChunks);
    ASSERT_TRUE(disk.ok());
    ASSERT_TRUE((*disk)->Write(a, 0, bytes.data(), 4096).ok());
    ASSERT_TRUE((*disk)->Write(b, 0, bytes.data(), 4096).ok());
  }
  // a's identity file older than b's, whatever the file system's timestamp resolution.
  const auto identity = [&](const FileIdentity& f) {
    return absl::StrFormat("%s/%016x/identity", dir.File("w"), f.FileId());
  };
  std::filesystem::last_write_time(
      identity(a), std::filesystem::last_write_time(identity(b)) - std::chrono::seconds(60));
  auto disk = ChunkDisk::Open(dir.File("w"), kTwoChunks);
  ASSERT_TRUE(disk.ok());
  ASSERT_TRUE((*disk)->Write(c, 0, bytes.data(), 4096).ok());
  EXPECT_FALSE((*disk)->Has(a.FileId(), 0));
  EXPECT_TRUE((*disk)->Has(b.FileId(), 0));
}

}  // namespace
}  // namespace kvtier
