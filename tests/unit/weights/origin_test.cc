// FileIdentity, URIs and the file:// origin.
#include "server/weights/origin.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <fstream>

#include "server/weights/file_identity.h"
#include "temp_dir.h"
#include "tests/support/random_bytes.h"

namespace kvtier {
namespace {

void WriteFile(const std::string& path, const std::vector<std::byte>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

TEST(FileIdentityTest, ChunksAndKeys) {
  FileIdentity f{"file:///m/a.bin", 10'000, "mtime:1", 4096};
  EXPECT_EQ(f.chunks(), 3u);
  EXPECT_EQ(f.ChunkBytes(0), 4096u);
  EXPECT_EQ(f.ChunkBytes(2), 10'000u - 8192u);
  EXPECT_EQ(f.ChunkBytes(3), 0u);
  EXPECT_FALSE(f.ChunkKey(0) == f.ChunkKey(1));
  // Any part of the identity changes every key and the file id.
  for (FileIdentity g : {FileIdentity{"file:///m/b.bin", 10'000, "mtime:1", 4096},
                         FileIdentity{"file:///m/a.bin", 10'001, "mtime:1", 4096},
                         FileIdentity{"file:///m/a.bin", 10'000, "mtime:2", 4096},
                         FileIdentity{"file:///m/a.bin", 10'000, "mtime:1", 8192}}) {
    EXPECT_NE(f.FileId(), g.FileId());
    EXPECT_FALSE(f.ChunkKey(0) == g.ChunkKey(0));
  }
  FileIdentity empty{"file:///m/e", 0, "mtime:1", 4096};
  EXPECT_EQ(empty.chunks(), 0u);
}

TEST(OriginTest, UriForms) {
  EXPECT_TRUE(OpenOrigin("file:///tmp/x").ok());
  EXPECT_TRUE(OpenOrigin("http://127.0.0.1:80/x").ok());
  EXPECT_TRUE(OpenOrigin("https://blob.example/c/x?sig=1").ok());
  for (const char* bad : {"", "/tmp/x", "file://relative/x", "ftp://h/x", "http:///x"}) {
    auto o = OpenOrigin(bad);
    ASSERT_FALSE(o.ok()) << bad;
    EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(o.status().message().find("uri"), std::string::npos);
  }
  EXPECT_EQ(UriBaseName("file:///m/model.safetensors"), "model.safetensors");
  EXPECT_EQ(UriBaseName("http://h:8/a/b/w.bin?sig=x#f"), "w.bin");
  EXPECT_EQ(UriBaseName("http://h:8/"), "");
}

TEST(FileOriginTest, StatAndRead) {
  testing::TempDir dir;
  const auto bytes = testing::RandomBytes(50'000, 7);
  WriteFile(dir.File("w.bin"), bytes);
  auto origin = OpenOrigin("file://" + dir.File("w.bin"));
  ASSERT_TRUE(origin.ok());
  auto f = (*origin)->Stat();
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->size, 50'000u);
  EXPECT_EQ(f->version.rfind("mtime:", 0), 0u);
  std::vector<std::byte> got(1000);
  ASSERT_TRUE((*origin)->Read(*f, 49'000, 1000, got.data()).ok());
  EXPECT_EQ(0, std::memcmp(got.data(), bytes.data() + 49'000, 1000));
}

TEST(FileOriginTest, MissingFileIsNotFound) {
  testing::TempDir dir;
  auto origin = OpenOrigin("file://" + dir.File("absent.bin"));
  ASSERT_TRUE(origin.ok());
  auto f = (*origin)->Stat();
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(f.status().message().find("absent.bin"), std::string::npos);
}

TEST(FileOriginTest, ChangedFileIsAnErrorNeverOtherBytes) {
  testing::TempDir dir;
  const std::string path = dir.File("w.bin");
  WriteFile(path, testing::RandomBytes(20'000, 1));
  auto origin = OpenOrigin("file://" + path);
  ASSERT_TRUE(origin.ok());
  auto f = (*origin)->Stat();
  ASSERT_TRUE(f.ok());
  // Same size, other bytes and another mtime.
  WriteFile(path, testing::RandomBytes(20'000, 2));
  struct timeval times[2] = {{1'000'000, 0}, {1'000'000, 0}};
  ASSERT_EQ(utimes(path.c_str(), times), 0);
  std::vector<std::byte> got(4096);
  absl::Status s = (*origin)->Read(*f, 0, 4096, got.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(s.message().find("origin changed"), std::string::npos) << s;
  // A file that shrank.
  WriteFile(path, testing::RandomBytes(100, 3));
  auto f2 = (*origin)->Stat();
  ASSERT_TRUE(f2.ok());
  EXPECT_EQ(f2->size, 100u);
  s = (*origin)->Read(*f, 8192, 4096, got.data());
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
}

}  // namespace
}  // namespace kvtier
