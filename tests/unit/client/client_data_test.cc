// The client against FakeDaemon: Save/Load through the shared arena, zero-copy leases, control
// calls, and remapping after a daemon restart.
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "fake_daemon.h"
#include "gtest/gtest.h"
#include "kvtier/client.h"
#include "temp_dir.h"
#include "tests/support/wait.h"

namespace kvtier {
namespace {

constexpr uint64_t kArenaBytes = 8 << 20;
constexpr uint64_t kBlockBytes = 4096;

class ClientDataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    daemon_ = testing::FakeDaemon::Start(socket_, kArenaBytes, 1);
    ASSERT_NE(daemon_, nullptr);
    ClientOptions options;
    options.socket_path = socket_;
    options.timeout_ms = 2000;
    Status s = Client::Connect(options, &client_);
    ASSERT_TRUE(s.ok()) << s.ToString();
    NamespaceLayout layout;
    layout.model_id = "test-model";
    layout.layout_tag = "opaque";
    layout.block_bytes = kBlockBytes;
    s = client_->RegisterNamespace(layout, &ns_);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_EQ(ns_.block_bytes, kBlockBytes);
    keys_ = PrefixHasher(ns_.id, 4).HashTokens(
        std::vector<int32_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
    ASSERT_EQ(keys_.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
      data_.emplace_back(kBlockBytes, static_cast<unsigned char>('a' + i));
      src_.push_back(data_.back().data());
    }
  }

  testing::TempDir dir_;
  std::string socket_ = dir_.File("kvtier.sock");
  std::unique_ptr<testing::FakeDaemon> daemon_;
  std::unique_ptr<Client> client_;
  Namespace ns_;
  std::vector<BlockKey> keys_;
  std::vector<std::vector<unsigned char>> data_;
  std::vector<const void*> src_;
};

TEST_F(ClientDataTest, SaveThenLoadRoundTrips) {
  size_t saved = 99;
  Status s = client_->Save(ns_, keys_, src_, &saved);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(saved, 3u);
  EXPECT_EQ(daemon_->leases(), 0u);

  LookupResult lookup;
  ASSERT_TRUE(client_->Lookup(ns_.id, keys_, &lookup).ok());
  EXPECT_EQ(lookup.prefix_blocks, 3u);
  EXPECT_EQ(lookup.tiers, std::vector<Tier>(3, Tier::kDram));

  std::vector<std::vector<unsigned char>> out(3, std::vector<unsigned char>(kBlockBytes));
  std::vector<void*> dst = {out[0].data(), out[1].data(), out[2].data()};
  size_t loaded = 0;
  s = client_->Load(ns_, keys_, dst, &loaded);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(loaded, 3u);
  EXPECT_EQ(out, data_);
  EXPECT_EQ(daemon_->leases(), 0u);
}

TEST_F(ClientDataTest, SavingPresentKeysWritesNothing) {
  size_t saved = 0;
  ASSERT_TRUE(client_->Save(ns_, std::span(keys_).first(2), std::span(src_).first(2), &saved).ok());
  EXPECT_EQ(saved, 2u);
  ASSERT_TRUE(client_->Save(ns_, keys_, src_, &saved, {}).ok());
  EXPECT_EQ(saved, 1u);
  ASSERT_TRUE(client_->Save(ns_, keys_, src_, &saved).ok());
  EXPECT_EQ(saved, 0u);
}

TEST_F(ClientDataTest, LoadStopsAtTheFirstMiss) {
  ASSERT_TRUE(client_->Save(ns_, std::span(keys_).first(2), std::span(src_).first(2)).ok());
  std::vector<unsigned char> a(kBlockBytes), b(kBlockBytes), c(kBlockBytes, 'z');
  std::vector<void*> dst = {a.data(), b.data(), c.data()};
  size_t loaded = 0;
  ASSERT_TRUE(client_->Load(ns_, keys_, dst, &loaded).ok());
  EXPECT_EQ(loaded, 2u);
  EXPECT_EQ(a, data_[0]);
  EXPECT_EQ(b, data_[1]);
  EXPECT_EQ(c, std::vector<unsigned char>(kBlockBytes, 'z'));  // untouched
}

TEST_F(ClientDataTest, InvalidArgumentsAreCaughtClientSide) {
  EXPECT_EQ(client_->Save(ns_, keys_, std::span(src_).first(2)).code(),
            Status::Code::kInvalidArgument);
  std::vector<const void*> with_null = src_;
  with_null[1] = nullptr;
  Status s = client_->Save(ns_, keys_, with_null);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(s.message().find("block buffer 1 is null"), std::string::npos) << s.message();
  EXPECT_EQ(client_->Save(Namespace{ns_.id, 0}, keys_, src_).code(),
            Status::Code::kInvalidArgument);
  // A Namespace whose block size disagrees with the daemon's is refused, and aborts its lease.
  s = client_->Save(Namespace{ns_.id, kBlockBytes * 2}, keys_, src_);
  EXPECT_EQ(s.code(), Status::Code::kInvalidArgument) << s.ToString();
  EXPECT_EQ(daemon_->leases(), 0u);
  LookupResult lookup;
  ASSERT_TRUE(client_->Lookup(ns_.id, keys_, &lookup).ok());
  EXPECT_EQ(lookup.prefix_blocks, 0u);
}

TEST_F(ClientDataTest, DaemonErrorsKeepCodeAndMessage) {
  Status s = client_->Save(Namespace{12345, kBlockBytes}, keys_, src_);
  EXPECT_EQ(s.code(), Status::Code::kNotFound);
  EXPECT_EQ(s.message(), "namespace");
}

TEST_F(ClientDataTest, WriteLeaseAbortsWhenDroppedUncommitted) {
  {
    std::unique_ptr<WriteLease> lease;
    ASSERT_TRUE(client_->BeginWrite(ns_, keys_, {}, &lease).ok());
    ASSERT_EQ(lease->size(), 3u);
    ASSERT_EQ(lease->block(0).size(), kBlockBytes);
    EXPECT_EQ(daemon_->leases(), 1u);
  }
  EXPECT_EQ(daemon_->leases(), 0u);
  LookupResult lookup;
  ASSERT_TRUE(client_->Lookup(ns_.id, keys_, &lookup).ok());
  EXPECT_EQ(lookup.prefix_blocks, 0u);
}

TEST_F(ClientDataTest, ZeroCopyLeases) {
  std::unique_ptr<WriteLease> write;
  ASSERT_TRUE(client_->BeginWrite(ns_, keys_, {}, &write).ok());
  for (size_t i = 0; i < write->size(); ++i) {
    std::memcpy(write->block(i).data(), data_[i].data(), kBlockBytes);
  }
  ASSERT_TRUE(write->Commit().ok());
  EXPECT_EQ(write->Commit().code(), Status::Code::kFailedPrecondition);
  EXPECT_TRUE(write->block(0).empty());

  std::unique_ptr<ReadLease> read;
  ASSERT_TRUE(client_->AcquireRead(ns_, keys_, &read).ok());
  ASSERT_EQ(read->size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    auto block = read->block(i);
    ASSERT_EQ(block.size(), kBlockBytes);
    EXPECT_EQ(std::memcmp(block.data(), data_[i].data(), kBlockBytes), 0);
  }
  // Pinned blocks are busy for Drop.
  DropResult drop;
  ASSERT_TRUE(client_->Drop(ns_.id, std::span(keys_).first(1), &drop).ok());
  EXPECT_EQ(drop.busy, 1u);
  ASSERT_TRUE(read->Release().ok());
  EXPECT_EQ(read->size(), 0u);
  EXPECT_EQ(daemon_->leases(), 0u);
}

TEST_F(ClientDataTest, ReadLeaseOfNothingIsEmpty) {
  std::unique_ptr<ReadLease> read;
  ASSERT_TRUE(client_->AcquireRead(ns_, keys_, &read).ok());
  EXPECT_EQ(read->size(), 0u);
  EXPECT_TRUE(read->Release().ok());
}

TEST_F(ClientDataTest, DropListAndStats) {
  ASSERT_TRUE(client_->Save(ns_, keys_, src_).ok());
  std::vector<BlockEntry> blocks;
  bool truncated = true;
  ASSERT_TRUE(client_->ListBlocks(ns_.id, 0, &blocks, &truncated).ok());
  EXPECT_EQ(blocks.size(), 3u);
  EXPECT_FALSE(truncated);
  ASSERT_TRUE(client_->ListBlocks(0, 2, &blocks, &truncated).ok());
  EXPECT_EQ(blocks.size(), 2u);
  EXPECT_TRUE(truncated);
  EXPECT_EQ(blocks[0].state, "ready");
  EXPECT_EQ(blocks[0].tier, Tier::kDram);

  std::vector<NamespaceEntry> namespaces;
  ASSERT_TRUE(client_->ListNamespaces(&namespaces).ok());
  ASSERT_EQ(namespaces.size(), 1u);
  EXPECT_EQ(namespaces[0].ns.id, ns_.id);
  EXPECT_EQ(namespaces[0].blocks, 3u);
  EXPECT_EQ(namespaces[0].layout.model_id, "test-model");

  DaemonStats stats;
  ASSERT_TRUE(client_->Stats(&stats).ok());
  EXPECT_EQ(stats.node_id, "fake-node");
  ASSERT_EQ(stats.tiers.size(), 1u);
  EXPECT_EQ(stats.tiers[0].name, "dram");
  EXPECT_EQ(stats.tiers[0].blocks, 3u);

  DropResult drop;
  const BlockKey unknown{1, 2};
  std::vector<BlockKey> some = {keys_[2], unknown};
  ASSERT_TRUE(client_->Drop(ns_.id, some, &drop).ok());
  EXPECT_EQ(drop.dropped, 1u);
  EXPECT_EQ(drop.missing, 1u);
  ASSERT_TRUE(client_->DropAll(ns_.id, &drop).ok());
  EXPECT_EQ(drop.dropped, 2u);
  LookupResult lookup;
  ASSERT_TRUE(client_->Lookup(ns_.id, keys_, &lookup).ok());
  EXPECT_EQ(lookup.prefix_blocks, 0u);
}

TEST_F(ClientDataTest, ControlOnlyClientRefusesTheDataPath) {
  ClientOptions options;
  options.socket_path = socket_;
  options.map_arena = false;
  std::unique_ptr<Client> control;
  ASSERT_TRUE(Client::Connect(options, &control).ok());
  EXPECT_EQ(control->Save(ns_, keys_, src_).code(), Status::Code::kFailedPrecondition);
  DaemonStats stats;
  EXPECT_TRUE(control->Stats(&stats).ok());
}

TEST_F(ClientDataTest, LeaseOutlivesItsClient) {
  std::unique_ptr<WriteLease> lease;
  ASSERT_TRUE(client_->BeginWrite(ns_, keys_, {}, &lease).ok());
  client_.reset();
  std::memcpy(lease->block(0).data(), data_[0].data(), kBlockBytes);
  EXPECT_TRUE(lease->Commit().ok());
}

TEST_F(ClientDataTest, RemapsAfterTheDaemonRestarts) {
  ASSERT_TRUE(client_->Save(ns_, keys_, src_).ok());
  daemon_.reset();
  size_t saved = 0;
  // With the daemon gone the data path answers UNAVAILABLE, not a write into a dead arena.
  EXPECT_EQ(client_->Save(ns_, keys_, src_, &saved).code(), Status::Code::kUnavailable);

  daemon_ = testing::FakeDaemon::Start(socket_, kArenaBytes, 2);
  ASSERT_NE(daemon_, nullptr);
  NamespaceLayout layout;
  layout.model_id = "test-model";
  layout.layout_tag = "opaque";
  layout.block_bytes = kBlockBytes;
  // The channel reconnects within its (short) backoff.
  Status s;
  kvtier::testing::WaitUntil(
      [&] {
        s = client_->RegisterNamespace(layout, &ns_);
        return s.ok();
      },
      absl::Seconds(5), absl::Milliseconds(100));
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(client_->Save(ns_, keys_, src_, &saved).ok());
  EXPECT_EQ(saved, 3u);
  std::vector<unsigned char> out(kBlockBytes);
  std::vector<void*> dst = {out.data()};
  size_t loaded = 0;
  ASSERT_TRUE(client_->Load(ns_, std::span(keys_).first(1), dst, &loaded).ok());
  EXPECT_EQ(loaded, 1u);
  EXPECT_EQ(out, data_[0]);
  // The bytes landed in the new daemon's arena, not the old mapping.
  EXPECT_EQ(daemon_->arena()[0], 'a');
}

}  // namespace
}  // namespace kvtier
