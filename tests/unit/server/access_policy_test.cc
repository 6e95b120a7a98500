// AccessPolicy (--allow-models): parsing, and who may use which model.
#include "server/security/access_policy.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include "absl/strings/match.h"

namespace kvtier {
namespace {

Caller Unix(uid_t uid, gid_t gid, std::vector<gid_t> groups = {}) {
  Caller c;
  c.unix_peer = true;
  c.uid = uid;
  c.gid = gid;
  c.groups = std::move(groups);
  return c;
}

Caller Cert(std::vector<std::string> names) {
  Caller c;
  c.cert_names = std::move(names);
  return c;
}

TEST(AccessPolicy, NoRulesAllowsEveryone) {
  auto policy = AccessPolicy::Create({});
  ASSERT_TRUE(policy.ok());
  EXPECT_FALSE(policy->restricted());
  EXPECT_TRUE(policy->Allows(Caller{}, "anything"));
  EXPECT_TRUE(policy->AllowsEverything(Caller{}));
  EXPECT_TRUE(policy->Check(Unix(5, 5), "m", "f", "w").ok());
}

TEST(AccessPolicy, RulesMatchTheirPrincipalsOnly) {
  auto policy = AccessPolicy::Create(
      {"uid:1000=llama-*,qwen-2", "gid:2000=mistral-*", "cert:engine-a=phi-*", "*=public-*"});
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_TRUE(policy->restricted());
  EXPECT_TRUE(policy->Allows(Unix(1000, 1), "llama-3-8b"));
  EXPECT_TRUE(policy->Allows(Unix(1000, 1), "qwen-2"));
  EXPECT_FALSE(policy->Allows(Unix(1000, 1), "qwen-2.5"));  // globs match the whole id
  EXPECT_FALSE(policy->Allows(Unix(1001, 1), "llama-3-8b"));
  EXPECT_TRUE(policy->Allows(Unix(7, 2000), "mistral-7b"));          // primary group
  EXPECT_TRUE(policy->Allows(Unix(7, 1, {3, 2000}), "mistral-7b"));  // supplementary group
  EXPECT_FALSE(policy->Allows(Unix(1000, 1), "mistral-7b"));
  EXPECT_TRUE(policy->Allows(Cert({"engine-a"}), "phi-3"));
  EXPECT_TRUE(policy->Allows(Cert({"cn", "engine-a"}), "phi-3"));  // any of its names
  EXPECT_FALSE(policy->Allows(Cert({"engine-b"}), "phi-3"));
  // A certificate name never matches a uid rule, nor a plain TCP caller anything but "*".
  EXPECT_FALSE(policy->Allows(Cert({"1000"}), "llama-3-8b"));
  EXPECT_TRUE(policy->Allows(Caller{}, "public-model"));
  EXPECT_FALSE(policy->Allows(Caller{}, "llama-3-8b"));
  EXPECT_FALSE(policy->AllowsEverything(Unix(1000, 1)));
}

TEST(AccessPolicy, RefusalNamesModelAndCaller) {
  auto policy = AccessPolicy::Create({"uid:1000=llama-*"});
  ASSERT_TRUE(policy.ok());
  absl::Status s = policy->Check(Unix(1001, 1001), "mistral-7b", "namespace_id", "namespace 00ab");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(),
            "namespace_id: namespace 00ab (model 'mistral-7b') is not allowed for uid 1001 gid "
            "1001 (--allow-models)");
  s = policy->Check(Cert({"engine-b"}), "x", "layout.model_id", "a namespace");
  EXPECT_TRUE(absl::StrContains(s.message(), "TLS client 'engine-b'")) << s;
}

TEST(AccessPolicy, StarPatternAllowsEverything) {
  auto policy = AccessPolicy::Create({"cert:admin=*", "uid:0=a-*"});
  ASSERT_TRUE(policy.ok());
  EXPECT_TRUE(policy->AllowsEverything(Cert({"admin"})));
  EXPECT_FALSE(policy->AllowsEverything(Unix(0, 0)));
}

TEST(AccessPolicy, NamesResolveAndBadRulesNameTheFlag) {
  auto policy = AccessPolicy::Create({"user:root=a-*", "group:root=b-*"});
  ASSERT_TRUE(policy.ok()) << policy.status();
  EXPECT_TRUE(policy->Allows(Unix(0, 99), "a-1"));
  EXPECT_TRUE(policy->Allows(Unix(99, 0), "b-1"));
  for (const char* bad : {"llama", "uid:x=a", "uid:1=", "host:foo=a", "cert:=a",
                          "user:no-such-user-kvtier=a", "group:no-such-group-kvtier=a"}) {
    auto p = AccessPolicy::Create({bad});
    EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_TRUE(absl::StartsWith(p.status().message(), "--allow-models: '")) << p.status();
  }
}

}  // namespace
}  // namespace kvtier
