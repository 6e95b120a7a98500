// A fresh kvtierd per test and a connected client.
#pragma once

#include <gtest/gtest.h>

#include <random>

#include "common/local_daemon.h"
#include "kvtier/client.h"
#include "tests/support/bin_path.h"
#include "tests/support/random_bytes.h"

namespace kvtier::testing {

class DaemonTest : public ::testing::Test {
 protected:
  virtual std::vector<std::string> DaemonArgs() { return {"--dram-capacity", "64MiB"}; }

  void SetUp() override {
    auto d = LocalDaemon::Start(BinPath("kvtierd"), DaemonArgs());
    ASSERT_TRUE(d.ok()) << d.status();
    daemon_ = std::move(*d);
    client_ = Connect();
    ASSERT_NE(client_, nullptr);
  }

  std::unique_ptr<Client> Connect(uint32_t lease_ms = 0) {
    ClientOptions options;
    options.socket_path = daemon_->socket_path();
    options.lease_ms = lease_ms;
    std::unique_ptr<Client> c;
    Status s = Client::Connect(options, &c);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return c;
  }

  Namespace Register(uint64_t block_bytes, const std::string& model = "test-model") {
    NamespaceLayout layout;
    layout.model_id = model;
    layout.block_bytes = block_bytes;
    Namespace ns;
    Status s = client_->RegisterNamespace(layout, &ns);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return ns;
  }

  std::vector<BlockKey> RandomKeys(size_t n) {
    std::vector<BlockKey> keys(n);
    for (BlockKey& k : keys) k = {rng_(), rng_()};
    return keys;
  }

  std::unique_ptr<LocalDaemon> daemon_;
  std::unique_ptr<Client> client_;
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace kvtier::testing
