#include "common/tls_files.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kvtier {
namespace {

absl::StatusOr<std::string> ReadFile(const std::string& path, const std::string& flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: cannot read '%s': %s", flag, path, std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().empty()) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: '%s' is empty", flag, path));
  }
  return text.str();
}

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no PEM data";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

std::unique_ptr<BIO, BioFree> Bio(const std::string& pem) {
  return std::unique_ptr<BIO, BioFree>(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// The first certificate in `pem`, or an error naming `flag`.
absl::StatusOr<std::unique_ptr<X509, X509Free>> FirstCert(const std::string& pem,
                                                          const std::string& flag,
                                                          const std::string& path) {
  auto bio = Bio(pem);
  std::unique_ptr<X509, X509Free> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: '%s' holds no PEM certificate (%s)", flag, path, OpenSslError()));
  }
  return cert;
}

}  // namespace

absl::StatusOr<TlsPem> LoadTlsFiles(const TlsFiles& files, std::string_view flag_prefix) {
  const std::string cert_flag = std::string(flag_prefix) + "tls-cert";
  const std::string key_flag = std::string(flag_prefix) + "tls-key";
  const std::string ca_flag = std::string(flag_prefix) + "tls-ca";
  const std::string all =
      absl::StrFormat("give %s, %s and %s together", cert_flag, key_flag, ca_flag);
  if (files.cert.empty()) return absl::InvalidArgumentError(cert_flag + ": missing (" + all + ")");
  if (files.key.empty()) return absl::InvalidArgumentError(key_flag + ": missing (" + all + ")");
  if (files.ca.empty()) return absl::InvalidArgumentError(ca_flag + ": missing (" + all + ")");
  TlsPem pem;
  auto cert_text = ReadFile(files.cert, cert_flag);
  if (!cert_text.ok()) return cert_text.status();
  auto key_text = ReadFile(files.key, key_flag);
  if (!key_text.ok()) return key_text.status();
  auto ca_text = ReadFile(files.ca, ca_flag);
  if (!ca_text.ok()) return ca_text.status();
  ERR_clear_error();
  auto cert = FirstCert(*cert_text, cert_flag, files.cert);
  if (!cert.ok()) return cert.status();
  if (auto ca = FirstCert(*ca_text, ca_flag, files.ca); !ca.ok()) return ca.status();
  auto bio = Bio(*key_text);
  std::unique_ptr<EVP_PKEY, KeyFree> key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: '%s' holds no PEM private key (%s)",
                                                      key_flag, files.key, OpenSslError()));
  }
  if (X509_check_private_key(cert->get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: '%s' is not the private key of the certificate in %s '%s'", key_flag,
                        files.key, cert_flag, files.cert));
  }
  pem.cert = std::move(*cert_text);
  pem.key = std::move(*key_text);
  pem.ca = std::move(*ca_text);
  return pem;
}

}  // namespace kvtier
