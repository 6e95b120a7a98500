// Throwaway certificates for mutual-TLS tests, made with the openssl command line (Debian's
// `openssl` package) in a directory the caller owns: a CA, and certificates it signs.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace kvtier::testing {

struct TestCert {
  std::string cert;  // PEM file paths
  std::string key;
};

// A self-signed CA named `name`: <dir>/<name>.pem and <dir>/<name>.key.
absl::StatusOr<TestCert> MakeTestCa(const std::string& dir, const std::string& name);

// A certificate for `common_name`, signed by `ca`, usable as server and as client certificate,
// with subject alternative names IP:127.0.0.1, DNS:localhost and DNS:<common_name>:
// <dir>/<common_name>.pem and .key.
absl::StatusOr<TestCert> MakeTestCert(const std::string& dir, const TestCert& ca,
                                      const std::string& common_name);

}  // namespace kvtier::testing
