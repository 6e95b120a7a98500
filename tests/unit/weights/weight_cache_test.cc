// The weight cache on one node: a real BlockStore and file:// origins (counted), no cluster.
#include "server/weights/weight_cache.h"

#include <gtest/gtest.h>
#include <sys/time.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "absl/synchronization/notification.h"
#include "temp_dir.h"
#include "tests/support/random_bytes.h"

namespace kvtier {
namespace {

constexpr uint64_t kChunk = 64 << 10;

void WriteFile(const std::string& path, const std::vector<std::byte>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

// A file origin that counts what it reads.
class CountingOrigin final : public Origin {
 public:
  CountingOrigin(std::unique_ptr<Origin> inner, std::atomic<uint64_t>* reads,
                 std::atomic<uint64_t>* bytes)
      : inner_(std::move(inner)), reads_(reads), bytes_(bytes) {}
  absl::StatusOr<FileIdentity> Stat() override { return inner_->Stat(); }
  absl::Status Read(const FileIdentity& f, uint64_t offset, uint64_t length,
                    std::byte* dst) override {
    reads_->fetch_add(1);
    bytes_->fetch_add(length);
    return inner_->Read(f, offset, length, dst);
  }

 private:
  std::unique_ptr<Origin> inner_;
  std::atomic<uint64_t>* reads_;
  std::atomic<uint64_t>* bytes_;
};

class WeightCacheTest : public ::testing::Test {
 protected:
  void Start(uint64_t capacity = 4 * kChunk, uint32_t readahead = 16, bool disk = true) {
    cache_.reset();
    StoreOptions so;
    so.now_ms = [] { return int64_t{1000}; };
    store_ = std::make_unique<BlockStore>(64 * kChunk, so);
    arena_.assign(64 * kChunk, std::byte{0});
    WeightOptions o;
    o.chunk_size = kChunk;
    o.capacity = capacity;
    o.readahead_chunks = readahead;
    o.fetch_threads = 4;
    o.serve_threads = 2;
    o.request_threads = 4;
    if (disk) {
      o.disk_dir = dir_.File("weights");
      o.disk_capacity = 1 << 30;
    }
    o.open_origin = [this](const std::string& uri) -> absl::StatusOr<std::unique_ptr<Origin>> {
      auto inner = OpenOrigin(uri);
      if (!inner.ok()) return inner.status();
      return std::unique_ptr<Origin>(
          std::make_unique<CountingOrigin>(std::move(*inner), &origin_reads_, &origin_bytes_));
    };
    auto c = WeightCache::Create(o, store_.get(), arena_.data(), nullptr, nullptr);
    ASSERT_TRUE(c.ok()) << c.status();
    cache_ = std::move(*c);
  }
  void TearDown() override { cache_.reset(); }

  absl::StatusOr<ReadAnswer> Read(uint64_t file_id, uint64_t offset, uint64_t length) {
    absl::Notification done;
    absl::StatusOr<ReadAnswer> out;
    cache_->Read(file_id, offset, length, 0, [&](absl::StatusOr<ReadAnswer> a) {
      out = std::move(a);
      done.Notify();
    });
    done.WaitForNotification();
    return out;
  }

  // Reads and copies out, then ends the lease.
  absl::StatusOr<std::vector<std::byte>> ReadBytes(uint64_t file_id, uint64_t offset,
                                                   uint64_t length, ReadAnswer* answer = nullptr) {
    auto a = Read(file_id, offset, length);
    if (!a.ok()) return a.status();
    std::vector<std::byte> out;
    for (const ReadSpan& s : a->spans) {
      out.insert(out.end(), arena_.begin() + s.arena_offset + s.skip,
                 arena_.begin() + s.arena_offset + s.skip + s.length);
    }
    EXPECT_TRUE(store_->Release(std::vector<uint64_t>{a->lease_id}).ok());
    if (answer != nullptr) *answer = *a;
    return out;
  }

  testing::TempDir dir_;
  std::unique_ptr<BlockStore> store_;
  std::vector<std::byte> arena_;
  std::unique_ptr<WeightCache> cache_;
  std::atomic<uint64_t> origin_reads_{0}, origin_bytes_{0};
};

TEST_F(WeightCacheTest, ReadsTheFileOnceFromTheOrigin) {
  Start();
  const auto bytes = testing::RandomBytes(3 * kChunk + 1234, 11);
  WriteFile(dir_.File("m.bin"), bytes);
  auto f = cache_->Open("file://" + dir_.File("m.bin"));
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->chunks(), 4u);
  ReadAnswer a;
  auto got = ReadBytes(f->FileId(), 0, bytes.size(), &a);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, bytes);
  EXPECT_EQ(a.origin_bytes, bytes.size());
  EXPECT_EQ(a.local_bytes, 0u);
  EXPECT_EQ(origin_reads_.load(), 4u);
  EXPECT_EQ(origin_bytes_.load(), bytes.size());
  // Again, and an unaligned piece: all local.
  got = ReadBytes(f->FileId(), 0, bytes.size(), &a);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, bytes);
  EXPECT_EQ(a.local_bytes, bytes.size());
  got = ReadBytes(f->FileId(), kChunk - 10, kChunk + 20);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got,
            std::vector<std::byte>(bytes.begin() + kChunk - 10, bytes.begin() + 2 * kChunk + 10));
  EXPECT_EQ(origin_reads_.load(), 4u);
  const WeightCounters c = cache_->Counters();
  EXPECT_EQ(c.origin_bytes, bytes.size());
  EXPECT_EQ(c.pinned_bytes, 4 * kChunk);
}

TEST_F(WeightCacheTest, ConcurrentReadersShareOneFetchPerChunk) {
  Start(/*capacity=*/16 * kChunk);
  const auto bytes = testing::RandomBytes(8 * kChunk, 12);
  WriteFile(dir_.File("m.bin"), bytes);
  auto f = cache_->Open("file://" + dir_.File("m.bin"));
  ASSERT_TRUE(f.ok());
  std::vector<std::thread> readers;
  std::atomic<int> good{0};
  for (int t = 0; t < 8; ++t) {
    readers.emplace_back([&] {
      auto got = ReadBytes(f->FileId(), 0, bytes.size());
      if (got.ok() && *got == bytes) good.fetch_add(1);
    });
  }
  for (auto& t : readers) t.join();
  EXPECT_EQ(good.load(), 8);
  EXPECT_EQ(origin_reads_.load(), 8u);  // one per chunk
}

TEST_F(WeightCacheTest, ChangedOriginIsANewIdentityNeverMixed) {
  Start(4 * kChunk, /*readahead=*/0);
  const std::string path = dir_.File("m.bin");
  const auto v1 = testing::RandomBytes(3 * kChunk, 21);
  WriteFile(path, v1);
  auto f1 = cache_->Open("file://" + path);
  ASSERT_TRUE(f1.ok());
  auto got = ReadBytes(f1->FileId(), 0, kChunk);
  ASSERT_TRUE(got.ok());
  const auto v2 = testing::RandomBytes(3 * kChunk, 22);
  WriteFile(path, v2);
  struct timeval times[2] = {{2'000'000, 0}, {2'000'000, 0}};
  ASSERT_EQ(utimes(path.c_str(), times), 0);
  // The old version's uncached chunk: a clear error, never v2's bytes.
  auto old_read = Read(f1->FileId(), 2 * kChunk, kChunk);
  ASSERT_FALSE(old_read.ok());
  EXPECT_EQ(old_read.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(old_read.status().message().find("origin changed"), std::string::npos)
      << old_read.status();
  // Opened again: a new identity, read whole from the origin.
  auto f2 = cache_->Open("file://" + path);
  ASSERT_TRUE(f2.ok());
  EXPECT_NE(f2->FileId(), f1->FileId());
  const uint64_t before = origin_reads_.load();
  got = ReadBytes(f2->FileId(), 0, v2.size());
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, v2);
  EXPECT_EQ(origin_reads_.load() - before, 3u);
}

TEST_F(WeightCacheTest, ChunksSurviveARestartOnTheWeightsDisk) {
  Start();
  const auto bytes = testing::RandomBytes(5 * kChunk + 7, 31);
  WriteFile(dir_.File("m.bin"), bytes);
  const std::string uri = "file://" + dir_.File("m.bin");
  auto f = cache_->Open(uri);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE(ReadBytes(f->FileId(), 0, bytes.size()).ok());
  Start();  // a new store (empty DRAM) and cache over the same weights directory
  origin_reads_ = 0;
  auto files = cache_->List();
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].identity.uri, uri);
  EXPECT_EQ(files[0].nvme_chunks, 6u);
  EXPECT_EQ(files[0].dram_chunks, 0u);
  f = cache_->Open(uri);
  ASSERT_TRUE(f.ok());
  ReadAnswer a;
  auto got = ReadBytes(f->FileId(), 0, bytes.size(), &a);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got, bytes);
  EXPECT_EQ(origin_reads_.load(), 0u);
  EXPECT_EQ(a.local_bytes, bytes.size());
  EXPECT_EQ(cache_->Counters().disk_loads, 6u);
}

TEST_F(WeightCacheTest, ErrorsNameTheirCause) {
  Start();
  auto missing = cache_->Open("file://" + dir_.File("absent.bin"));
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(cache_->Open("gopher://x/y").status().code(), absl::StatusCode::kInvalidArgument);
  auto unknown = Read(12345, 0, 1);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(unknown.status().message().find("file_id"), std::string::npos);
  WriteFile(dir_.File("m.bin"), testing::RandomBytes(1000, 1));
  auto f = cache_->Open("file://" + dir_.File("m.bin"));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(Read(f->FileId(), 900, 200).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(Read(f->FileId(), 0, 0).status().code(), absl::StatusCode::kInvalidArgument);
  // Removed at the origin before it was read: NOT_FOUND, with the chunk named.
  std::filesystem::remove(dir_.File("m.bin"));
  auto gone = Read(f->FileId(), 0, 1000);
  ASSERT_FALSE(gone.ok());
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(gone.status().message().find("chunk 0"), std::string::npos) << gone.status();
}

TEST_F(WeightCacheTest, QuotaHoldsPinnedFilesFirst) {
  Start(/*capacity=*/2 * kChunk, /*readahead=*/0);
  WriteFile(dir_.File("a.bin"), testing::RandomBytes(2 * kChunk, 1));
  WriteFile(dir_.File("b.bin"), testing::RandomBytes(2 * kChunk, 2));
  absl::Notification pinned;
  cache_->Pin("file://" + dir_.File("a.bin"), false, [&](absl::StatusOr<FileIdentity> f) {
    EXPECT_TRUE(f.ok());
    pinned.Notify();
  });
  pinned.WaitForNotification();
  auto a = cache_->Open("file://" + dir_.File("a.bin"));
  auto b = cache_->Open("file://" + dir_.File("b.bin"));
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(ReadBytes(a->FileId(), 0, a->size).ok());
  ASSERT_TRUE(ReadBytes(b->FileId(), 0, b->size).ok());
  EXPECT_EQ(cache_->Counters().pinned_bytes, 2 * kChunk);
  // a's chunks are the ones held: b's were let go (still cached, evictable).
  for (const WeightFileView& v : cache_->List()) {
    if (v.file_id == a->FileId()) {
      EXPECT_TRUE(v.pinned);
    }
  }
}

}  // namespace
}  // namespace kvtier
