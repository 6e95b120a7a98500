// The weight cache on one real kvtierd with file:// origins: `kvtier weights pull/ls/pin`,
// the client API, changed and missing origin files, and chunks kept across a restart.
#include <gtest/gtest.h>
#include <sys/time.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "common/local_daemon.h"
#include "kvtier/weights.h"
#include "kvtier/weights_gpu.h"
#include "tests/support/bin_path.h"
#include "tests/support/random_bytes.h"

namespace kvtier::testing {
namespace {

constexpr uint64_t kChunk = 1 << 20;

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const std::string& path, const std::vector<std::byte>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

std::string AsString(const std::vector<std::byte>& b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

class WeightsNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("kvtw-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_ + "/origin");
    std::filesystem::create_directories(dir_ + "/out");
    StartDaemon();
  }
  void TearDown() override {
    daemon_.reset();
    std::filesystem::remove_all(dir_);
  }
  void StartDaemon(const std::vector<std::string>& extra = {}) {
    daemon_.reset();
    std::vector<std::string> args = {
        "--dram-capacity",   "64MiB", "--weight-chunk-size", "1MiB",
        "--weight-capacity", "16MiB", "--weight-dir",        dir_ + "/weights"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto d = LocalDaemon::Start(BinPath("kvtierd"), args);
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
  }
  ProcessResult Cli(std::vector<std::string> args) {
    std::vector<std::string> argv = {BinPath("kvtier"), "--socket", daemon_->socket_path()};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunProgram(argv, 60);
  }
  nlohmann::json Pull(const std::string& uri, const std::string& to) {
    ProcessResult r = Cli({"weights", "pull", uri, "--to", to, "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.output;
    if (r.exit_code != 0) return {};
    return nlohmann::json::parse(r.output);
  }
  std::unique_ptr<WeightClient> Connect() {
    ClientOptions o;
    o.socket_path = daemon_->socket_path();
    std::unique_ptr<WeightClient> c;
    Status s = WeightClient::Connect(o, &c);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return c;
  }

  std::string dir_;
  std::unique_ptr<LocalDaemon> daemon_;
};

TEST_F(WeightsNodeTest, PullWritesTheFileOnceFromTheOrigin) {
  const auto bytes = RandomBytes(5 * kChunk + 4321, 1);
  WriteFile(dir_ + "/origin/model.bin", bytes);
  const std::string uri = "file://" + dir_ + "/origin/model.bin";
  nlohmann::json j = Pull(uri, dir_ + "/out");
  ASSERT_FALSE(j.is_null());
  EXPECT_EQ(j["uri"], uri);
  EXPECT_EQ(j["path"], dir_ + "/out/model.bin");
  EXPECT_EQ(j["size"].get<uint64_t>(), bytes.size());
  EXPECT_EQ(j["chunks"].get<uint64_t>(), 6u);
  EXPECT_EQ(j["origin_bytes"].get<uint64_t>(), bytes.size());
  EXPECT_EQ(j["peer_bytes"].get<uint64_t>(), 0u);
  EXPECT_EQ(j["local_bytes"].get<uint64_t>(), 0u);
  EXPECT_GE(j["seconds"].get<double>(), 0.0);
  EXPECT_EQ(Slurp(dir_ + "/out/model.bin"), AsString(bytes));
  // No temporary file left behind.
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir_ + "/out")) {
    ++entries;
  }
  EXPECT_EQ(entries, 1u);

  // Again, elsewhere: everything from the cache.
  std::filesystem::create_directories(dir_ + "/out2");
  j = Pull(uri, dir_ + "/out2");
  ASSERT_FALSE(j.is_null());
  EXPECT_EQ(j["origin_bytes"].get<uint64_t>(), 0u);
  EXPECT_EQ(j["local_bytes"].get<uint64_t>(), bytes.size());
  EXPECT_EQ(Slurp(dir_ + "/out2/model.bin"), AsString(bytes));

  ProcessResult ls = Cli({"weights", "ls", "--json"});
  ASSERT_EQ(ls.exit_code, 0) << ls.output;
  auto l = nlohmann::json::parse(ls.output);
  ASSERT_EQ(l["files"].size(), 1u);
  EXPECT_EQ(l["files"][0]["uri"], uri);
  EXPECT_EQ(l["files"][0]["size"].get<uint64_t>(), bytes.size());
  EXPECT_EQ(l["files"][0]["chunks"].get<uint64_t>(), 6u);
  EXPECT_EQ(l["files"][0]["cached_chunks"]["dram"].get<uint64_t>(), 6u);
  EXPECT_EQ(l["files"][0]["cached_chunks"]["nvme"].get<uint64_t>(), 6u);
  ProcessResult table = Cli({"weights", "ls"});
  ASSERT_EQ(table.exit_code, 0) << table.output;
  EXPECT_NE(table.output.find("model.bin"), std::string::npos) << table.output;
}

TEST_F(WeightsNodeTest, MissingFileFailsWithOneLineAndNoFile) {
  ProcessResult r =
      Cli({"weights", "pull", "file://" + dir_ + "/origin/absent.bin", "--to", dir_ + "/out"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("absent.bin"), std::string::npos) << r.output;
  std::string out = r.output;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  EXPECT_EQ(out.find('\n'), std::string::npos) << r.output;
  EXPECT_TRUE(std::filesystem::is_empty(dir_ + "/out"));
  // An origin that does not answer: exit 1 (the daemon did answer), no file.
  r = Cli({"weights", "pull", "http://127.0.0.1:1/none.bin", "--to", dir_ + "/out"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_TRUE(std::filesystem::is_empty(dir_ + "/out"));
  // Bad URI forms name the field.
  r = Cli({"weights", "pull", "ftp://x/y.bin", "--to", dir_ + "/out"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("uri"), std::string::npos) << r.output;
}

TEST_F(WeightsNodeTest, NoDaemonIsExitCode2) {
  ProcessResult r = RunProgram({BinPath("kvtier"), "--socket", dir_ + "/none.sock", "weights",
                                "pull", "file:///x", "--to", dir_ + "/out"},
                               30);
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

TEST_F(WeightsNodeTest, ChangedFileIsANewVersionNeverMixed) {
  const std::string path = dir_ + "/origin/model.bin";
  const auto v1 = RandomBytes(4 * kChunk, 10);
  WriteFile(path, v1);
  const std::string uri = "file://" + path;
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  WeightFile f1;
  ASSERT_TRUE(client->OpenFile(uri, &f1).ok());
  EXPECT_EQ(f1.size, v1.size());
  std::vector<std::byte> buf(kChunk);
  ASSERT_TRUE(client->Read(f1, 0, 100, buf.data()).ok());
  EXPECT_EQ(0, std::memcmp(buf.data(), v1.data(), 100));

  // The file changes while "pulled": same size, new bytes and mtime.
  const auto v2 = RandomBytes(4 * kChunk, 11);
  WriteFile(path, v2);
  struct timeval times[2] = {{3'000'000, 0}, {3'000'000, 0}};
  ASSERT_EQ(utimes(path.c_str(), times), 0);
  // Every read of the old handle answers the old version's bytes (cached by readahead) or fails
  // with FAILED_PRECONDITION naming the change: never v2's bytes.
  for (uint64_t c = 0; c < 4; ++c) {
    Status s = client->Read(f1, c * kChunk, kChunk, buf.data());
    if (s.ok()) {
      EXPECT_EQ(0, std::memcmp(buf.data(), v1.data() + c * kChunk, kChunk)) << "chunk " << c;
    } else {
      EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition) << s.ToString();
      EXPECT_NE(s.message().find("origin changed"), std::string::npos) << s.ToString();
    }
  }
  // A pull now gets v2 whole.
  nlohmann::json j = Pull(uri, dir_ + "/out");
  ASSERT_FALSE(j.is_null());
  EXPECT_EQ(Slurp(dir_ + "/out/model.bin"), AsString(v2));
  EXPECT_EQ(j["origin_bytes"].get<uint64_t>(), v2.size());
}

TEST_F(WeightsNodeTest, ReadSpansLendsTheBytesInPlace) {
  const auto bytes = RandomBytes(4 * kChunk + 999, 40);
  WriteFile(dir_ + "/origin/model.bin", bytes);
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  WeightFile f;
  ASSERT_TRUE(client->OpenFile("file://" + dir_ + "/origin/model.bin", &f).ok());
  // A range from the middle of a chunk to the file's end: pieces in file order, each within one
  // chunk, together the range; pieces that start a chunk are 4 KiB aligned (pull's O_DIRECT).
  const uint64_t from = kChunk / 2 + 3;
  std::string got;
  uint64_t next = from;
  int pieces = 0, aligned = 0;
  WeightReadStats stats;
  Status s = client->ReadSpans(
      f, from, bytes.size() - from,
      [&](uint64_t at, const void* data, uint64_t n) {
        EXPECT_EQ(at, next);
        EXPECT_EQ(at / kChunk, (at + n - 1) / kChunk) << "a piece spans chunks at " << at;
        if (at % kChunk == 0 && reinterpret_cast<uintptr_t>(data) % 4096 == 0) ++aligned;
        got.append(static_cast<const char*>(data), n);
        next = at + n;
        ++pieces;
        return Status();
      },
      &stats);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(got, AsString(bytes).substr(from));
  EXPECT_EQ(pieces, 5);
  EXPECT_EQ(aligned, 4);
  EXPECT_EQ(stats.origin_bytes + stats.local_bytes, bytes.size() - from);
  // A `use` that fails ends the read with its status, at once.
  int calls = 0;
  s = client->ReadSpans(f, 0, bytes.size(), [&](uint64_t, const void*, uint64_t) {
    ++calls;
    return Status(Status::Code::kAborted, "stop here");
  });
  EXPECT_EQ(s.code(), Status::Code::kAborted) << s.ToString();
  EXPECT_EQ(calls, 1);
  // Reads go on after it.
  std::vector<std::byte> buf(bytes.size());
  ASSERT_TRUE(client->Read(f, 0, bytes.size(), buf.data()).ok());
  EXPECT_EQ(buf, bytes);
}

// ReadToDevice through the cpu backend (this host has no GPU; tests/gpu/weights_gpu_test.cc runs
// the cuda one where there is a device): the same ReadSpans path and per-piece copies, so offsets
// that cut chunks land each byte where it belongs, and nothing outside the range is written.
TEST_F(WeightsNodeTest, ReadToDeviceCopiesTheRangeByteExact) {
  const auto bytes = RandomBytes(5 * kChunk + 4097, 41);
  WriteFile(dir_ + "/origin/model.bin", bytes);
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  WeightFile f;
  ASSERT_TRUE(client->OpenFile("file://" + dir_ + "/origin/model.bin", &f).ok());
  std::unique_ptr<WeightDeviceReader> gpu;
  ASSERT_TRUE(WeightDeviceReader::Create(client.get(), GpuBackend::kCpu, &gpu).ok());
  EXPECT_STREQ(gpu->backend(), "cpu");

  struct Range {
    uint64_t offset, length;
  };
  for (const Range r : {Range{0, bytes.size()}, Range{kChunk - 5, 2 * kChunk + 11},
                        Range{3 * kChunk + 1, 100}, Range{bytes.size() - 7, 7}}) {
    // Guard bytes on both sides of the destination catch a copy that lands off by one piece.
    std::vector<std::byte> dst(r.length + 128, std::byte{0xA5});
    WeightReadStats stats;
    Status s = gpu->ReadToDevice(f, r.offset, r.length, dst.data() + 64, nullptr, &stats);
    ASSERT_TRUE(s.ok()) << s.ToString();
    EXPECT_TRUE(std::equal(dst.begin() + 64, dst.begin() + 64 + static_cast<ptrdiff_t>(r.length),
                           bytes.begin() + static_cast<ptrdiff_t>(r.offset)))
        << "range " << r.offset << "+" << r.length;
    for (size_t i = 0; i < 64; ++i) {
      ASSERT_EQ(dst[i], std::byte{0xA5});
      ASSERT_EQ(dst[dst.size() - 1 - i], std::byte{0xA5});
    }
    EXPECT_EQ(stats.origin_bytes + stats.peer_bytes + stats.local_bytes, r.length);
  }

  // kAuto picks cuda only with a device; kCuda without one is a clear FAILED_PRECONDITION.
  std::unique_ptr<WeightDeviceReader> automatic;
  ASSERT_TRUE(WeightDeviceReader::Create(client.get(), GpuBackend::kAuto, &automatic).ok());
  std::unique_ptr<WeightDeviceReader> cuda;
  Status s = WeightDeviceReader::Create(client.get(), GpuBackend::kCuda, &cuda);
  if (std::string(automatic->backend()) == "cpu") {
    EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition) << s.ToString();
    EXPECT_NE(s.message().find("no device"), std::string::npos) << s.ToString();
  } else {
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  // Errors of the read come through: a range past the end of the file.
  std::vector<std::byte> dst(16);
  s = gpu->ReadToDevice(f, bytes.size() - 8, 16, dst.data());
  EXPECT_FALSE(s.ok());
  s = gpu->ReadToDevice(f, 0, 16, nullptr);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
}

TEST_F(WeightsNodeTest, ChunksSurviveARestart) {
  const auto bytes = RandomBytes(3 * kChunk + 17, 20);
  WriteFile(dir_ + "/origin/model.bin", bytes);
  const std::string uri = "file://" + dir_ + "/origin/model.bin";
  ASSERT_FALSE(Pull(uri, dir_ + "/out").is_null());
  ASSERT_EQ(daemon_->Stop(), 0);
  StartDaemon();
  ProcessResult ls = Cli({"weights", "ls", "--json"});
  ASSERT_EQ(ls.exit_code, 0) << ls.output;
  auto l = nlohmann::json::parse(ls.output);
  ASSERT_EQ(l["files"].size(), 1u) << ls.output;
  EXPECT_EQ(l["files"][0]["cached_chunks"]["nvme"].get<uint64_t>(), 4u);
  std::filesystem::remove(dir_ + "/out/model.bin");
  nlohmann::json j = Pull(uri, dir_ + "/out");
  ASSERT_FALSE(j.is_null());
  EXPECT_EQ(j["origin_bytes"].get<uint64_t>(), 0u);
  EXPECT_EQ(j["local_bytes"].get<uint64_t>(), bytes.size());
  EXPECT_EQ(Slurp(dir_ + "/out/model.bin"), AsString(bytes));
}

TEST_F(WeightsNodeTest, PinAndPrefetch) {
  const auto bytes = RandomBytes(2 * kChunk, 30);
  WriteFile(dir_ + "/origin/a.bin", bytes);
  const std::string uri = "file://" + dir_ + "/origin/a.bin";
  ProcessResult r = Cli({"weights", "pin", uri, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = Cli({"weights", "prefetch", uri});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  ProcessResult ls = Cli({"weights", "ls", "--json"});
  ASSERT_EQ(ls.exit_code, 0) << ls.output;
  auto l = nlohmann::json::parse(ls.output);
  ASSERT_EQ(l["files"].size(), 1u);
  EXPECT_TRUE(l["files"][0]["pinned"].get<bool>());
}

// The weights disk holds 4 chunks (5 MiB: four 1 MiB chunks and their headers, not five). With
// a.bin pinned and pulled first, then b.bin, pulling c.bin must evict b.bin, the least recently
// used file that is not pinned: unpinned, a.bin would have gone first.
TEST_F(WeightsNodeTest, FullWeightsDiskEvictsUnpinnedFilesFirst) {
  StartDaemon({"--weight-disk-capacity", "5MiB"});
  std::map<std::string, std::vector<std::byte>> bytes;
  for (const char* name : {"a", "b", "c"}) {
    bytes[name] = RandomBytes(2 * kChunk, 40 + name[0]);
    WriteFile(dir_ + "/origin/" + name + ".bin", bytes[name]);
  }
  auto uri = [&](const std::string& name) { return "file://" + dir_ + "/origin/" + name + ".bin"; };
  ProcessResult r = Cli({"weights", "pin", uri("a")});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* name : {"a", "b", "c"}) {
    ASSERT_FALSE(Pull(uri(name), dir_ + "/out").is_null()) << name;
    EXPECT_EQ(Slurp(dir_ + "/out/" + name + ".bin"), AsString(bytes[name])) << name;
  }
  ProcessResult ls = Cli({"weights", "ls", "--json"});
  ASSERT_EQ(ls.exit_code, 0) << ls.output;
  std::map<std::string, uint64_t> on_disk;
  const nlohmann::json listed = nlohmann::json::parse(ls.output);
  for (const auto& f : listed["files"]) {
    on_disk[f["uri"].get<std::string>()] = f["cached_chunks"]["nvme"].get<uint64_t>();
  }
  EXPECT_EQ(on_disk[uri("a")], 2u) << ls.output;
  EXPECT_EQ(on_disk[uri("b")], 0u) << ls.output;
  EXPECT_EQ(on_disk[uri("c")], 2u) << ls.output;
}

}  // namespace
}  // namespace kvtier::testing
