#include "tests/support/test_certs.h"

#include <fstream>
#include <random>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "common/local_daemon.h"

namespace kvtier::testing {
namespace {

absl::Status Run(const std::vector<std::string>& argv) {
  ProcessResult r = RunProgram(argv, 30);
  if (r.exit_code != 0) {
    return absl::InternalError(
        absl::StrFormat("%s %s failed (%d): %s", argv[0], argv[1], r.exit_code, r.output));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<TestCert> MakeTestCa(const std::string& dir, const std::string& name) {
  TestCert ca{dir + "/" + name + ".pem", dir + "/" + name + ".key"};
  if (auto s = Run({"/usr/bin/openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-keyout",
                    ca.key,
                    "-out",
                    ca.cert,
                    "-days",
                    "2",
                    "-subj",
                    "/CN=" + name,
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign,cRLSign"});
      !s.ok()) {
    return s;
  }
  return ca;
}

absl::StatusOr<TestCert> MakeTestCert(const std::string& dir, const TestCert& ca,
                                      const std::string& common_name) {
  TestCert out{dir + "/" + common_name + ".pem", dir + "/" + common_name + ".key"};
  const std::string csr = dir + "/" + common_name + ".csr";
  const std::string ext = dir + "/" + common_name + ".ext";
  {
    std::ofstream f(ext);
    f << "basicConstraints=CA:FALSE\n"
      << "keyUsage=critical,digitalSignature,keyEncipherment\n"
      << "extendedKeyUsage=serverAuth,clientAuth\n"
      << "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:" << common_name << "\n";
  }
  if (auto s = Run({"/usr/bin/openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", out.key, "-out", csr,
                    "-subj", "/CN=" + common_name});
      !s.ok()) {
    return s;
  }
  std::mt19937_64 rng{std::random_device{}()};
  if (auto s = Run({"/usr/bin/openssl", "x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey",
                    ca.key, "-set_serial", absl::StrFormat("0x%x", rng() >> 2), "-days", "2",
                    "-extfile", ext, "-out", out.cert});
      !s.ok()) {
    return s;
  }
  return out;
}

}  // namespace kvtier::testing
