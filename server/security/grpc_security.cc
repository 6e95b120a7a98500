#include "server/security/grpc_security.h"

#include <grpcpp/security/auth_context.h>

#include <algorithm>

namespace kvtier {

std::shared_ptr<grpc::ServerCredentials> MutualTlsServerCredentials(const TlsPem& pem) {
  grpc::SslServerCredentialsOptions options(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = pem.ca;
  options.pem_key_cert_pairs.push_back({pem.key, pem.cert});
  return grpc::SslServerCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> MutualTlsChannelCredentials(const TlsPem& pem) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = pem.ca;
  options.pem_private_key = pem.key;
  options.pem_cert_chain = pem.cert;
  return grpc::SslCredentials(options);
}

Caller IdentifyCaller(const grpc::ServerContextBase& ctx, const UnixPeerListener* unix_peers) {
  Caller caller;
  if (unix_peers != nullptr) {
    if (auto creds = unix_peers->Find(ctx.peer())) {
      caller.unix_peer = true;
      caller.uid = creds->uid;
      caller.gid = creds->gid;
      caller.groups = std::move(creds->groups);
    }
  }
  std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  if (auth != nullptr && auth->IsPeerAuthenticated()) {
    for (const char* property : {"x509_common_name", "x509_subject_alternative_name"}) {
      for (const grpc::string_ref& value : auth->FindPropertyValues(property)) {
        std::string name(value.data(), value.size());
        if (std::find(caller.cert_names.begin(), caller.cert_names.end(), name) ==
            caller.cert_names.end()) {
          caller.cert_names.push_back(std::move(name));
        }
      }
    }
  }
  return caller;
}

}  // namespace kvtier
