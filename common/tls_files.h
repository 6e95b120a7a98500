// Mutual-TLS material read from PEM files: a certificate (chain), its private key and the CA that
// signs the other side's certificates. Shared by kvtierd (its --listen and peer dials) and the
// client library (ClientOptions::tls_*), which each build gRPC credentials from it.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace kvtier {

struct TlsFiles {
  std::string cert;  // path: PEM certificate (chain) presented to the other side
  std::string key;   // path: PEM private key of `cert`
  std::string ca;    // path: PEM CA certificate(s) the other side's certificate must chain to
  bool empty() const { return cert.empty() && key.empty() && ca.empty(); }
};

struct TlsPem {
  std::string cert;
  std::string key;
  std::string ca;
};

// Reads and checks the three files: each readable and holding PEM of the right kind, and the key
// the one of the certificate. Errors are INVALID_ARGUMENT naming the flag
// (`<flag_prefix>tls-cert: ...`); all three are needed when any is given.
absl::StatusOr<TlsPem> LoadTlsFiles(const TlsFiles& files, std::string_view flag_prefix = "--");

}  // namespace kvtier
