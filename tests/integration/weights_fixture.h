// Real kvtierd clusters pulling model files from a real nginx origin (tests/support/
// nginx_origin.h) through `kvtier weights pull`, for the weight-cache integration tests.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/free_port.h"
#include "common/local_daemon.h"
#include "tests/support/bin_path.h"
#include "tests/support/nginx_origin.h"

namespace kvtier::testing {

// What one `kvtier weights pull` did.
struct Pull {
  int exit_code = -1;
  std::string output;   // stdout and stderr
  nlohmann::json json;  // the --json summary (the last line), null when none
  std::string path;     // where the copy should be: <dir>/<basename>
};

class WeightsTest : public ::testing::Test {
 protected:
  // Every multi-daemon step is bounded: a pull that takes longer has hung.
  static constexpr int kPullTimeoutS = 40;

  void SetUp() override {
    char tmpl[] = "/tmp/kvtier-weights-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    out_dir_ = tmpl;
  }
  void TearDown() override {
    daemons_.clear();  // before the origin goes: their requests in flight end first
    origin_.reset();
    std::error_code ec;
    std::filesystem::remove_all(out_dir_, ec);
  }

  // Fails the test (not a skip) when the CLI has no `weights` command: with no daemon at the
  // socket, a CLI that knows the command says so and exits 2.
  static void RequireWeightsCli() {
    ProcessResult r = RunProgram(
        {BinPath("kvtier"), "--socket", "/nonexistent/kvtier.sock", "weights", "ls", "--json"}, 20);
    ASSERT_EQ(r.exit_code, 2) << "the kvtier CLI has no `weights` command (issue 6): " << r.output;
  }

  // Starts the origin; skips the test, saying why, where its network namespace cannot be made.
  // (Use as ASSERT_NO_FATAL_FAILURE(StartOrigin(...)); if (IsSkipped()) return;)
  void StartOrigin(const NginxOriginOptions& options = {}) {
    auto origin = NginxOrigin::Start(options);
    if (origin.status().code() == absl::StatusCode::kUnavailable && options.network_namespace) {
      GTEST_SKIP() << "skipped: " << origin.status().message();
    }
    ASSERT_TRUE(origin.ok()) << origin.status();
    origin_ = std::move(*origin);
  }

  // Starts `n` daemons w0, w1, ... listing each other as static peers.
  void StartCluster(int n, const std::vector<std::string>& extra = {}) {
    std::string peers;
    for (int i = 0; i < n; ++i) {
      absl::StrAppend(&peers, i ? "," : "", "w", i, "@127.0.0.1:", FreeTcpPort());
    }
    for (int i = 0; i < n; ++i) {
      std::vector<std::string> args = {"--node-id",
                                       absl::StrCat("w", i),
                                       "--peers",
                                       peers,
                                       "--ucx-tls",
                                       "tcp",
                                       "--peer-timeout-ms",
                                       "2000",
                                       "--dram-capacity",
                                       "96MiB",
                                       "--weight-capacity",
                                       "64MiB",
                                       "--weight-chunk-size",
                                       "256KiB"};
      args.insert(args.end(), extra.begin(), extra.end());
      auto d = LocalDaemon::Start(BinPath("kvtierd"), args);
      ASSERT_TRUE(d.ok()) << d.status();
      daemons_.push_back(std::move(*d));
    }
  }

  std::string NodeDir(int node) const { return absl::StrCat(out_dir_, "/node", node); }

  // `kvtier weights pull <url> --to <dir of node> --json` on daemon `node`.
  Pull RunPull(int node, const std::string& url) {
    Pull p;
    const std::string dir = NodeDir(node);
    std::filesystem::create_directories(dir);
    p.path = dir + "/" + std::filesystem::path(url).filename().string();
    ProcessResult r = RunProgram({BinPath("kvtier"), "--socket", daemons_[node]->socket_path(),
                                  "weights", "pull", url, "--to", dir, "--json"},
                                 kPullTimeoutS);
    p.exit_code = r.exit_code;
    p.output = r.output;
    const size_t brace = r.output.rfind("\n{");
    const std::string last = brace == std::string::npos ? r.output : r.output.substr(brace + 1);
    p.json = nlohmann::json::parse(last, nullptr, false);
    if (p.json.is_discarded()) p.json = nullptr;
    return p;
  }

  // Pulls on `nodes` started at the same moment (one thread each), in the order of `nodes`.
  std::vector<Pull> PullAtOnce(const std::vector<int>& nodes, const std::string& url) {
    std::vector<Pull> pulls(nodes.size());
    std::vector<std::thread> threads;
    for (size_t i = 0; i < nodes.size(); ++i) {
      threads.emplace_back([&, i] { pulls[i] = RunPull(nodes[i], url); });
    }
    for (std::thread& t : threads) t.join();
    return pulls;
  }

  // `kvtier weights ls --json` on daemon `node` (null when it fails).
  nlohmann::json Ls(int node) {
    ProcessResult r = RunProgram(
        {BinPath("kvtier"), "--socket", daemons_[node]->socket_path(), "weights", "ls", "--json"},
        10);
    if (r.exit_code != 0) return nullptr;
    nlohmann::json j = nlohmann::json::parse(r.output, nullptr, false);
    return j.is_discarded() ? nlohmann::json(nullptr) : j;
  }

  // Chunks of `uri` daemon `node` holds in any tier (0 when it does not know the file).
  uint64_t CachedChunks(int node, const std::string& uri) {
    nlohmann::json ls = Ls(node);
    if (!ls.is_object() || !ls.contains("files")) return 0;
    for (const nlohmann::json& f : ls["files"]) {
      if (f.value("uri", "") != uri || !f.contains("cached_chunks")) continue;
      const nlohmann::json& c = f["cached_chunks"];
      return c.value("dram", uint64_t{0}) + c.value("nvme", uint64_t{0});
    }
    return 0;
  }

  // The copy is the origin's file, byte for byte (sha256), or it does not exist at all.
  static void ExpectNoCorruptCopy(const Pull& p, const std::vector<std::string>& good_shas) {
    if (!std::filesystem::exists(p.path)) return;
    auto sha = Sha256OfFile(p.path);
    ASSERT_TRUE(sha.ok()) << sha.status();
    EXPECT_NE(std::find(good_shas.begin(), good_shas.end(), *sha), good_shas.end())
        << p.path << " exists but is none of the origin's versions (exit " << p.exit_code
        << "): " << p.output;
  }

  static uint64_t Field(const nlohmann::json& j, const char* key) {
    return j.is_object() && j.contains(key) && j[key].is_number() ? j[key].get<uint64_t>() : 0;
  }

  std::unique_ptr<NginxOrigin> origin_;
  std::vector<std::unique_ptr<LocalDaemon>> daemons_;
  std::string out_dir_;
};

}  // namespace kvtier::testing
