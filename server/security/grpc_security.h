// gRPC credentials for mutual TLS, and who a call comes from (for AccessPolicy).
#pragma once

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_context.h>

#include <memory>

#include "common/tls_files.h"
#include "server/security/access_policy.h"
#include "server/security/unix_peer_listener.h"

namespace kvtier {

// Serves TLS and requires a client certificate that chains to pem.ca.
std::shared_ptr<grpc::ServerCredentials> MutualTlsServerCredentials(const TlsPem& pem);
// Dials with TLS, presenting pem.cert and checking the server's certificate against pem.ca.
std::shared_ptr<grpc::ChannelCredentials> MutualTlsChannelCredentials(const TlsPem& pem);

// The caller of a call: its unix peer credentials (when it came through `unix_peers`, which may
// be null) and the names in its TLS client certificate (common name and SANs), if any.
Caller IdentifyCaller(const grpc::ServerContextBase& ctx, const UnixPeerListener* unix_peers);

}  // namespace kvtier
