// `kvtier weights pull` (RunWeightsPull) against a canned WeightClient: the copy is written from
// the spans ReadSpans lends, with O_DIRECT where they are aligned and through the page cache where
// they are not, and a failed pull leaves no file.
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "temp_dir.h"
#include "tests/support/random_bytes.h"
#include "weights_cmd.h"

namespace kvtier::cli {
namespace {

constexpr uint64_t kChunk = 64 << 10;

// Serves one file from memory. Even chunks are lent from a 4 KiB aligned copy, odd chunks from a
// copy one byte off alignment, so a pull takes both of the writer's paths.
class CannedWeights final : public WeightClient {
 public:
  explicit CannedWeights(std::vector<std::byte> bytes) : bytes_(std::move(bytes)) {
    aligned_ = static_cast<std::byte*>(std::aligned_alloc(4096, Padded()));
    misaligned_base_ = static_cast<std::byte*>(std::aligned_alloc(4096, Padded() + 4096));
    std::memcpy(aligned_, bytes_.data(), bytes_.size());
    std::memcpy(misaligned_base_ + 1, bytes_.data(), bytes_.size());
  }
  ~CannedWeights() override {
    std::free(aligned_);
    std::free(misaligned_base_);
  }

  Status OpenFile(const std::string& uri, WeightFile* out) override {
    std::lock_guard<std::mutex> lock(mu_);
    out->file_id = 7;
    out->uri = uri;
    out->size = bytes_.size();
    out->version = opens_++ == 0 ? "v1" : next_version;
    out->chunk_size = kChunk;
    out->chunks = (bytes_.size() + kChunk - 1) / kChunk;
    return Status();
  }
  Status Read(const WeightFile&, uint64_t, uint64_t, void*, WeightReadStats*) override {
    return Status(Status::Code::kUnimplemented, "not used by pull");
  }
  Status ReadSpans(const WeightFile& file, uint64_t offset, uint64_t length, const SpanFn& use,
                   WeightReadStats* stats) override {
    uint64_t at = offset;
    while (at < offset + length) {
      const uint64_t chunk = at / kChunk;
      if (chunk == fail_chunk) return Status(Status::Code::kUnavailable, "canned failure");
      const uint64_t end = std::min(offset + length, (chunk + 1) * kChunk);
      const std::byte* base = chunk % 2 == 0 ? aligned_ : misaligned_base_ + 1;
      if (Status s = use(at, base + at, end - at); !s.ok()) return s;
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++spans_;
      }
      if (stats != nullptr) stats->origin_bytes += end - at;
      at = end;
    }
    return Status();
  }
  Status Prefetch(const std::string&, WeightFile*) override { return Unused(); }
  Status Pin(const std::string&, bool) override { return Unused(); }
  Status ListFiles(WeightListing*) override { return Unused(); }
  const std::string& socket_path() const override { return socket_; }

  uint64_t fail_chunk = ~0ULL;
  std::string next_version = "v1";  // what the re-check at the end sees
  uint64_t spans() {
    std::lock_guard<std::mutex> lock(mu_);
    return spans_;
  }

 private:
  static Status Unused() { return Status(Status::Code::kUnimplemented, "not used by pull"); }
  uint64_t Padded() const { return (bytes_.size() + 4095) / 4096 * 4096; }

  const std::vector<std::byte> bytes_;
  std::byte* aligned_ = nullptr;
  std::byte* misaligned_base_ = nullptr;
  std::mutex mu_;
  int opens_ = 0;
  uint64_t spans_ = 0;
  const std::string socket_ = "canned";
};

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

size_t Entries(const std::string& dir) {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++n;
  return n;
}

TEST(WeightsPullTest, WritesEveryByteDirectOrThroughThePageCache) {
  testing::TempDir dir;
  // An unaligned tail too: the last chunk's end goes through the page cache.
  const auto bytes = testing::RandomBytes(11 * kChunk + 1000, 5);
  CannedWeights client(bytes);
  for (int streams : {1, 8}) {
    const std::string to = dir.File("out" + std::to_string(streams));
    std::filesystem::create_directories(to);
    WeightsPullArgs args;
    args.uri = "http://origin/models/m.safetensors";
    args.dir = to;
    args.json = true;
    args.streams = streams;
    std::ostringstream out, progress;
    Status s = RunWeightsPull(client, args, out, progress);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_EQ(Slurp(to + "/m.safetensors"),
              std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()))
        << "streams " << streams;
    EXPECT_EQ(Entries(to), 1u);  // no temporary file left
    auto j = nlohmann::json::parse(out.str());
    EXPECT_EQ(j["size"].get<uint64_t>(), bytes.size());
    EXPECT_EQ(j["origin_bytes"].get<uint64_t>(), bytes.size());
  }
  EXPECT_EQ(client.spans(), 2 * 12u);  // one span per chunk
}

TEST(WeightsPullTest, AFailedReadLeavesNoFile) {
  testing::TempDir dir;
  const auto bytes = testing::RandomBytes(6 * kChunk, 6);
  CannedWeights client(bytes);
  client.fail_chunk = 3;
  WeightsPullArgs args;
  args.uri = "file:///models/m.bin";
  args.dir = dir.path();
  std::ostringstream out, progress;
  Status s = RunWeightsPull(client, args, out, progress);
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
  EXPECT_EQ(Entries(dir.path()), 0u);
}

TEST(WeightsPullTest, AVersionThatMovedDuringThePullFailsIt) {
  testing::TempDir dir;
  const auto bytes = testing::RandomBytes(3 * kChunk + 5, 7);
  CannedWeights client(bytes);
  client.next_version = "v2";
  WeightsPullArgs args;
  args.uri = "file:///models/m.bin";
  args.dir = dir.path();
  std::ostringstream out, progress;
  Status s = RunWeightsPull(client, args, out, progress);
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find("origin changed"), std::string::npos) << s.ToString();
  EXPECT_EQ(Entries(dir.path()), 0u);
}

}  // namespace
}  // namespace kvtier::cli
