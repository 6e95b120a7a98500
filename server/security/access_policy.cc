#include "server/security/access_policy.h"

#include <fnmatch.h>
#include <grp.h>
#include <pwd.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace kvtier {
namespace {

constexpr char kFlag[] = "--allow-models";

absl::Status RuleError(std::string_view rule, std::string_view why) {
  return absl::InvalidArgumentError(absl::StrFormat("%s: '%s': %s", kFlag, rule, why));
}

}  // namespace

std::string DescribeCaller(const Caller& caller) {
  if (caller.unix_peer) return absl::StrFormat("uid %d gid %d", caller.uid, caller.gid);
  if (!caller.cert_names.empty()) {
    return absl::StrFormat("TLS client '%s'", caller.cert_names.front());
  }
  return "a caller with no identity (plain TCP)";
}

absl::StatusOr<AccessPolicy> AccessPolicy::Create(const std::vector<std::string>& rules) {
  AccessPolicy policy;
  for (const std::string& text : rules) {
    const size_t eq = text.find('=');
    if (eq == std::string::npos) {
      return RuleError(text, "not PRINCIPAL=PATTERN[,PATTERN...] (e.g. uid:1000=llama-3-*)");
    }
    const absl::string_view who = absl::string_view(text).substr(0, eq);
    Rule rule;
    for (absl::string_view p : absl::StrSplit(absl::string_view(text).substr(eq + 1), ',')) {
      if (!p.empty()) rule.patterns.emplace_back(p.data(), p.size());
    }
    if (rule.patterns.empty()) return RuleError(text, "no model pattern after '='");
    absl::string_view value = who;
    if (who == "*") {
      rule.kind = Kind::kAny;
    } else if (absl::ConsumePrefix(&value, "uid:") || absl::ConsumePrefix(&value, "gid:")) {
      rule.kind = absl::StartsWith(who, "uid:") ? Kind::kUid : Kind::kGid;
      if (!absl::SimpleAtoi(value, &rule.id)) return RuleError(text, "the id is not a number");
    } else if (absl::ConsumePrefix(&value, "user:")) {
      rule.kind = Kind::kUid;
      passwd entry{}, *found = nullptr;
      std::vector<char> buffer(16384);
      const std::string name(value.data(), value.size());
      if (getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found) != 0 ||
          found == nullptr) {
        return RuleError(text, absl::StrFormat("no user named '%s'", name));
      }
      rule.id = found->pw_uid;
    } else if (absl::ConsumePrefix(&value, "group:")) {
      rule.kind = Kind::kGid;
      group entry{}, *found = nullptr;
      std::vector<char> buffer(16384);
      const std::string name(value.data(), value.size());
      if (getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found) != 0 ||
          found == nullptr) {
        return RuleError(text, absl::StrFormat("no group named '%s'", name));
      }
      rule.id = found->gr_gid;
    } else if (absl::ConsumePrefix(&value, "cert:")) {
      rule.kind = Kind::kCert;
      if (value.empty()) return RuleError(text, "empty certificate name");
      rule.name = std::string(value.data(), value.size());
    } else {
      return RuleError(text,
                       "the principal is not uid:N, gid:N, user:NAME, group:NAME, "
                       "cert:NAME or *");
    }
    policy.rules_.push_back(std::move(rule));
  }
  return policy;
}

bool AccessPolicy::Matches(const Rule& rule, const Caller& caller) const {
  switch (rule.kind) {
    case Kind::kAny:
      return true;
    case Kind::kUid:
      return caller.unix_peer && caller.uid == rule.id;
    case Kind::kGid:
      return caller.unix_peer &&
             (caller.gid == rule.id || std::find(caller.groups.begin(), caller.groups.end(),
                                                 rule.id) != caller.groups.end());
    case Kind::kCert:
      return std::find(caller.cert_names.begin(), caller.cert_names.end(), rule.name) !=
             caller.cert_names.end();
  }
  return false;
}

bool AccessPolicy::Allows(const Caller& caller, std::string_view model_id) const {
  if (rules_.empty()) return true;
  const std::string model(model_id);
  for (const Rule& rule : rules_) {
    if (!Matches(rule, caller)) continue;
    for (const std::string& pattern : rule.patterns) {
      if (fnmatch(pattern.c_str(), model.c_str(), 0) == 0) return true;
    }
  }
  return false;
}

bool AccessPolicy::AllowsEverything(const Caller& caller) const {
  if (rules_.empty()) return true;
  for (const Rule& rule : rules_) {
    if (Matches(rule, caller) &&
        std::find(rule.patterns.begin(), rule.patterns.end(), "*") != rule.patterns.end()) {
      return true;
    }
  }
  return false;
}

absl::Status AccessPolicy::Check(const Caller& caller, std::string_view model_id,
                                 std::string_view field, std::string_view what) const {
  if (Allows(caller, model_id)) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrFormat("%s: %s (model '%s') is not allowed for %s (%s)", field, what, model_id,
                      DescribeCaller(caller), kFlag));
}

}  // namespace kvtier
