// The weights disk: chunk files that survive a restart, are verified on read, and give way to a
// new version of their URI.
#include "server/weights/chunk_disk.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace kvtier
