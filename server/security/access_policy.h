// Namespace restrictions (--allow-models): which callers may use which models' namespaces.
//
// A rule is "PRINCIPAL=PATTERN[,PATTERN...]". PRINCIPAL names callers:
//   uid:N, user:NAME    a process on the unix socket running as that user (SO_PEERCRED)
//   gid:N, group:NAME   a process on the unix socket with that group, primary or supplementary
//                       (SO_PEERCRED, SO_PEERGROUPS)
//   cert:NAME           a TLS client (--listen with --tls-*) whose certificate has NAME as its
//                       common name or as a subject alternative name
//   *                   every caller
// PATTERNs are shell globs (fnmatch) on the namespace's model id: "llama-3-*", "*".
// With no rule, every caller may use every namespace. With rules, a caller may use the models of
// every rule naming it, and nothing else; a call on another model's namespace is refused with
// PERMISSION_DENIED naming the namespace and the model.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvtier {

// Who is calling, as far as the daemon can tell.
struct Caller {
  bool unix_peer = false;  // came over the unix socket with known credentials
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;            // supplementary groups
  std::vector<std::string> cert_names;  // TLS client certificate: common name and SANs
};

// "uid 1000 gid 1000", "cert engine-a", "an unauthenticated TCP client".
std::string DescribeCaller(const Caller& caller);

class AccessPolicy {
 public:
  // Parses --allow-models rules; user and group names are resolved here. Errors name the flag.
  static absl::StatusOr<AccessPolicy> Create(const std::vector<std::string>& rules);
  AccessPolicy() = default;  // unrestricted

  bool restricted() const { return !rules_.empty(); }
  // Whether `caller` may use namespaces of `model_id`.
  bool Allows(const Caller& caller, std::string_view model_id) const;
  // Whether `caller` may use every model (a matching rule with pattern "*").
  bool AllowsEverything(const Caller& caller) const;
  // OK, or PERMISSION_DENIED: "<field>: <what> (model '<model_id>') is not allowed for <caller>".
  absl::Status Check(const Caller& caller, std::string_view model_id, std::string_view field,
                     std::string_view what) const;

 private:
  enum class Kind { kUid, kGid, kCert, kAny };
  struct Rule {
    Kind kind = Kind::kAny;
    uint32_t id = 0;   // kUid, kGid
    std::string name;  // kCert
    std::vector<std::string> patterns;
  };
  bool Matches(const Rule& rule, const Caller& caller) const;

  std::vector<Rule> rules_;
};

}  // namespace kvtier
