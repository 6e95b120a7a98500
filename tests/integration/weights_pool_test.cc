// The weight cache in a pool of 3 real daemons (static peers, UCX over tcp) pulling one file://
// origin at the same moment: every copy is whole, and each byte was read from the origin once in
// total (by the chunks' owners); the rest moved between the daemons.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "common/free_port.h"
#include "common/local_daemon.h"
#include "tests/support/bin_path.h"
#include "tests/support/random_bytes.h"

namespace kvtier::testing {
namespace {

constexpr uint64_t kChunk = 256 << 10;

TEST(WeightsPoolTest, ThreeDaemonsReadEachChunkOnceFromTheOrigin) {
  const std::string dir =
      std::filesystem::temp_directory_path() / ("kvtw-pool-" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  const auto bytes = RandomBytes(24 * kChunk + 999, 77);
  {
    std::ofstream out(dir + "/model.bin", std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
  }
  const std::string uri = "file://" + dir + "/model.bin";
  constexpr int kNodes = 3;
  std::string peers;
  for (int i = 0; i < kNodes; ++i) {
    peers += (i ? "," : "") + std::string(1, static_cast<char>('a' + i)) +
             "@127.0.0.1:" + std::to_string(FreeTcpPort());
  }
  std::vector<std::unique_ptr<LocalDaemon>> daemons;
  for (int i = 0; i < kNodes; ++i) {
    auto d = LocalDaemon::Start(
        BinPath("kvtierd"),
        {"--dram-capacity", "64MiB", "--node-id", std::string(1, static_cast<char>('a' + i)),
         "--peers", peers, "--ucx-tls", "tcp", "--peer-timeout-ms", "5000", "--weight-chunk-size",
         "256KiB", "--weight-capacity", "16MiB"});
    ASSERT_TRUE(d.ok()) << d.status();
    daemons.push_back(std::move(*d));
    std::filesystem::create_directories(dir + "/out" + std::to_string(i));
  }
  std::vector<ProcessResult> results(kNodes);
  std::vector<std::thread> pulls;
  for (int i = 0; i < kNodes; ++i) {
    pulls.emplace_back([&, i] {
      results[i] = RunProgram({BinPath("kvtier"), "--socket", daemons[i]->socket_path(), "weights",
                               "pull", uri, "--to", dir + "/out" + std::to_string(i), "--json"},
                              90);
    });
  }
  for (auto& t : pulls) t.join();
  uint64_t origin = 0, peer = 0;
  const std::string want(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  for (int i = 0; i < kNodes; ++i) {
    ASSERT_EQ(results[i].exit_code, 0) << results[i].output << daemons[i]->ReadLog();
    auto j = nlohmann::json::parse(results[i].output);
    origin += j["origin_bytes"].get<uint64_t>();
    peer += j["peer_bytes"].get<uint64_t>();
    EXPECT_EQ(j["origin_bytes"].get<uint64_t>() + j["peer_bytes"].get<uint64_t>() +
                  j["local_bytes"].get<uint64_t>(),
              bytes.size());
    std::ifstream in(dir + "/out" + std::to_string(i) + "/model.bin", std::ios::binary);
    const std::string got((std::istreambuf_iterator<char>(in)), {});
    EXPECT_TRUE(got == want) << "copy " << i << " differs";
  }
  // Each chunk came from the origin once in the whole pool; the other copies from peers.
  EXPECT_EQ(origin, bytes.size());
  EXPECT_EQ(peer, (kNodes - 1) * bytes.size());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kvtier::testing
