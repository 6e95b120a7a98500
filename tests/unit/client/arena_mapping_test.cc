// ArenaMapping against an in-test descriptor server: generation check, shared writes, failures.
#include "client/src/arena_mapping.h"

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "gtest/gtest.h"
#include "temp_dir.h"

namespace kvtier::client_internal {
namespace {

constexpr uint64_t kArenaBytes = 1 << 20;

// Serves one connection on `path`: sends `payload_bytes` of `generation` (LE) and, if fd >= 0, the
// descriptor. `hold` keeps the connection open afterwards until the object dies.
class OneShotFdServer {
 public:
  OneShotFdServer(const std::string& path, int fd, uint64_t generation, size_t payload_bytes,
                  bool send_anything = true)
      : listen_fd_(socket(AF_UNIX, SOCK_STREAM, 0)) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    EXPECT_EQ(bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(listen_fd_, 1), 0);
    thread_ = std::thread([=, this] {
      conn_ = accept(listen_fd_, nullptr, nullptr);
      if (conn_ < 0 || !send_anything) return;
      iovec iov{const_cast<uint64_t*>(&generation), payload_bytes};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      if (fd >= 0) {
        msg.msg_control = control;
        msg.msg_controllen = sizeof(control);
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
      }
      EXPECT_EQ(sendmsg(conn_, &msg, 0), static_cast<ssize_t>(payload_bytes));
    });
  }
  ~OneShotFdServer() {
    shutdown(listen_fd_, SHUT_RDWR);
    thread_.join();
    if (conn_ >= 0) close(conn_);
    close(listen_fd_);
  }

 private:
  int listen_fd_;
  int conn_ = -1;
  std::thread thread_;
};

class ArenaMappingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    memfd_ = memfd_create("arena-test", MFD_CLOEXEC);
    ASSERT_GE(memfd_, 0);
    ASSERT_EQ(ftruncate(memfd_, kArenaBytes), 0);
    ASSERT_EQ(pwrite(memfd_, "hello", 5, 4096), 5);
  }
  void TearDown() override { close(memfd_); }

  testing::TempDir dir_;
  std::string path_ = dir_.File("kvtier.sock.arena");
  int memfd_ = -1;
};

TEST_F(ArenaMappingTest, MapsTheSharedArena) {
  OneShotFdServer server(path_, memfd_, 0x0102030405060708ULL, 8);
  std::unique_ptr<ArenaMapping> arena;
  Status s = ArenaMapping::Create(path_, 0x0102030405060708ULL, kArenaBytes, true, 2000, &arena);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(arena->size(), kArenaBytes);
  EXPECT_EQ(std::memcmp(arena->base() + 4096, "hello", 5), 0);
  // Writes through the mapping are the daemon's bytes too.
  std::memcpy(arena->base() + 8192, "world", 5);
  char buf[5];
  ASSERT_EQ(pread(memfd_, buf, 5, 8192), 5);
  EXPECT_EQ(std::memcmp(buf, "world", 5), 0);
  EXPECT_TRUE(arena->Contains(kArenaBytes - 4096, 4096));
  EXPECT_FALSE(arena->Contains(kArenaBytes - 4096, 4097));
  EXPECT_FALSE(arena->Contains(~0ULL, 1));
}

TEST_F(ArenaMappingTest, GenerationMismatchIsFailedPrecondition) {
  OneShotFdServer server(path_, memfd_, 7, 8);
  std::unique_ptr<ArenaMapping> arena;
  Status s = ArenaMapping::Create(path_, 8, kArenaBytes, false, 2000, &arena);
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition) << s.ToString();
  EXPECT_EQ(arena, nullptr);
}

TEST_F(ArenaMappingTest, OneByteGenerationIsAccepted) {
  OneShotFdServer server(path_, memfd_, 0x2a, 1);
  std::unique_ptr<ArenaMapping> arena;
  Status s = ArenaMapping::Create(path_, 0x122a, kArenaBytes, false, 2000, &arena);
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST_F(ArenaMappingTest, NoDescriptorIsUnavailable) {
  OneShotFdServer server(path_, -1, 1, 8);
  std::unique_ptr<ArenaMapping> arena;
  Status s = ArenaMapping::Create(path_, 1, kArenaBytes, false, 2000, &arena);
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
}

TEST_F(ArenaMappingTest, SilentServerHitsTheDeadline) {
  OneShotFdServer server(path_, memfd_, 1, 8, /*send_anything=*/false);
  std::unique_ptr<ArenaMapping> arena;
  Status s = ArenaMapping::Create(path_, 1, kArenaBytes, false, 200, &arena);
  EXPECT_EQ(s.code(), Status::Code::kDeadlineExceeded) << s.ToString();
}

TEST_F(ArenaMappingTest, ArenaLargerThanTheFileIsRefused) {
  OneShotFdServer server(path_, memfd_, 1, 8);
  std::unique_ptr<ArenaMapping> arena;
  Status s = ArenaMapping::Create(path_, 1, kArenaBytes * 2, false, 2000, &arena);
  EXPECT_EQ(s.code(), Status::Code::kFailedPrecondition) << s.ToString();
}

TEST_F(ArenaMappingTest, NoServerIsUnavailable) {
  std::unique_ptr<ArenaMapping> arena;
  Status s = ArenaMapping::Create(path_, 1, kArenaBytes, false, 2000, &arena);
  EXPECT_EQ(s.code(), Status::Code::kUnavailable) << s.ToString();
}

}  // namespace
}  // namespace kvtier::client_internal
