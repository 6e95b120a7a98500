// A daemon that dies and comes back (with a new arena) while a client stays connected: the client
// must notice and map the new arena, whichever call reaches the new daemon first.
#include <chrono>
#include <thread>
#include <vector>

#include "fake_daemon_process.h"
#include "gtest/gtest.h"
#include "kvtier/client.h"
#include "temp_dir.h"
#include "tests/support/wait.h"

namespace kvtier {
namespace {

constexpr uint64_t kArenaBytes = 4 << 20;
constexpr uint64_t kBlockBytes = 4096;

Status Register(Client& client, Namespace* ns) {
  NamespaceLayout layout;
  layout.model_id = "restart-model";
  layout.layout_tag = "opaque";
  layout.block_bytes = kBlockBytes;
  return client.RegisterNamespace(layout, ns);
}

// Retries a call while the channel reconnects (backoff is at most a second).
template <typename Call>
Status Eventually(Call&& call) {
  Status s;
  kvtier::testing::WaitUntil(
      [&] {
        s = call();
        return s.ok();
      },
      absl::Seconds(5), absl::Milliseconds(100));
  return s;
}

class RestartTest : public ::testing::TestWithParam<bool> {};

TEST_P(RestartTest, SaveAfterRestartLandsInTheNewArena) {
  const bool control_call_first = GetParam();
  testing::TempDir dir;
  const std::string socket = dir.File("kvtier.sock");
  auto daemon = testing::FakeDaemonProcess::Start(socket, kArenaBytes, 1);
  ASSERT_NE(daemon, nullptr);
  ClientOptions options;
  options.socket_path = socket;
  options.timeout_ms = 2000;
  std::unique_ptr<Client> client;
  ASSERT_TRUE(Client::Connect(options, &client).ok());
  Namespace ns;
  ASSERT_TRUE(Register(*client, &ns).ok());
  const auto keys = PrefixHasher(ns.id, 2).HashTokens(std::vector<int32_t>{1, 2, 3, 4});
  std::vector<unsigned char> a(kBlockBytes, 'A'), b(kBlockBytes, 'B');
  std::vector<const void*> src = {a.data(), b.data()};
  ASSERT_TRUE(client->Save(ns, keys, src).ok());

  daemon->Kill();
  daemon = testing::FakeDaemonProcess::Start(socket, kArenaBytes, 2);
  ASSERT_NE(daemon, nullptr);
  if (control_call_first) {
    // A control call reconnects the channel before any data call runs.
    ASSERT_TRUE(Eventually([&] { return Register(*client, &ns); }).ok());
  }
  size_t saved = 0;
  Status s = Eventually([&] {
    Status r = Register(*client, &ns);
    return r.ok() ? client->Save(ns, keys, src, &saved) : r;
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(saved, 2u);

  // A fresh client reads what the new daemon holds: the bytes must be there, not zeros.
  std::unique_ptr<Client> reader;
  ASSERT_TRUE(Client::Connect(options, &reader).ok());
  std::vector<unsigned char> ra(kBlockBytes), rb(kBlockBytes);
  std::vector<void*> dst = {ra.data(), rb.data()};
  size_t loaded = 0;
  ASSERT_TRUE(reader->Load(ns, keys, dst, &loaded).ok());
  EXPECT_EQ(loaded, 2u);
  EXPECT_EQ(ra, a);
  EXPECT_EQ(rb, b);
}

INSTANTIATE_TEST_SUITE_P(FirstCall, RestartTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Control" : "Data"; });

}  // namespace
}  // namespace kvtier
