#include <cstdlib>

#include "gtest/gtest.h"
#include "kvtier/client.h"

namespace kvtier {
namespace {

TEST(StatusTest, OkToString) {
  EXPECT_EQ(Status().ToString(), "OK");
  EXPECT_TRUE(Status().ok());
}

TEST(StatusTest, ErrorToStringUsesGrpcCodeNames) {
  EXPECT_EQ(Status(Status::Code::kInvalidArgument, "bad key").ToString(),
            "INVALID_ARGUMENT: bad key");
  EXPECT_EQ(Status(Status::Code::kResourceExhausted, "dram: no free slot").ToString(),
            "RESOURCE_EXHAUSTED: dram: no free slot");
  EXPECT_EQ(Status(Status::Code::kUnavailable, "").ToString(), "UNAVAILABLE");
  EXPECT_EQ(Status(Status::Code::kDataLoss, "x").ToString(), "DATA_LOSS: x");
  EXPECT_EQ(Status(Status::Code::kCancelled, "x").ToString(), "CANCELLED: x");
}

TEST(StatusTest, CodeNumbersMatchGrpc) {
  EXPECT_EQ(static_cast<int>(Status::Code::kNotFound), 5);
  EXPECT_EQ(static_cast<int>(Status::Code::kUnavailable), 14);
}

TEST(TierNameTest, Names) {
  EXPECT_STREQ(TierName(Tier::kNone), "none");
  EXPECT_STREQ(TierName(Tier::kHbm), "hbm");
  EXPECT_STREQ(TierName(Tier::kDram), "dram");
  EXPECT_STREQ(TierName(Tier::kNvme), "nvme");
}

// Sets or unsets $KVTIER_SOCKET for one test and restores it after.
class ScopedSocketEnv {
 public:
  explicit ScopedSocketEnv(const char* value) {
    if (const char* old = std::getenv("KVTIER_SOCKET")) {
      had_ = true;
      old_ = old;
    }
    if (value != nullptr) {
      setenv("KVTIER_SOCKET", value, 1);
    } else {
      unsetenv("KVTIER_SOCKET");
    }
  }
  ~ScopedSocketEnv() {
    if (had_) {
      setenv("KVTIER_SOCKET", old_.c_str(), 1);
    } else {
      unsetenv("KVTIER_SOCKET");
    }
  }

 private:
  bool had_ = false;
  std::string old_;
};

TEST(ResolveSocketPathTest, ExplicitWins) {
  ScopedSocketEnv env("/tmp/from-env.sock");
  EXPECT_EQ(ResolveSocketPath("/tmp/explicit.sock"), "/tmp/explicit.sock");
}

TEST(ResolveSocketPathTest, EnvironmentWhenNoExplicitPath) {
  ScopedSocketEnv env("/tmp/from-env.sock");
  EXPECT_EQ(ResolveSocketPath(""), "/tmp/from-env.sock");
}

TEST(ResolveSocketPathTest, DefaultWhenNothingSet) {
  ScopedSocketEnv env(nullptr);
  EXPECT_EQ(ResolveSocketPath(""), "./var/kvtier.sock");
}

TEST(ResolveSocketPathTest, EmptyEnvironmentIsIgnored) {
  ScopedSocketEnv env("");
  EXPECT_EQ(ResolveSocketPath(""), "./var/kvtier.sock");
}

}  // namespace
}  // namespace kvtier
