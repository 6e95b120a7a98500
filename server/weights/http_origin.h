// HttpOrigin: an http(s):// origin read with range GETs through libcurl (blob stores through
// pre-signed or SAS URLs). Stat is a HEAD (size from Content-Length, version from the ETag, else
// Last-Modified). Every range GET checks that the answer is a 206 of the same version (ETag or
// Last-Modified, and the total size in Content-Range) and exactly the bytes asked for, so a file
// replaced on the server is an error, never a chunk mixing two versions.
//
// 404 is NOT_FOUND, other 4xx FAILED_PRECONDITION or PERMISSION_DENIED; 5xx, timeouts and reset
// connections are UNAVAILABLE, retried (kAttempts in all) before they are returned.
//
// https: the server's certificate chain and host name are verified (libcurl's defaults, never
// turned off), against `ca_file` when given, else the system's CA bundle. A certificate that does
// not verify is FAILED_PRECONDITION at once (no retry: it will not verify the next time either),
// with libcurl's reason and the flag to fix it.
#pragma once

#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "server/weights/origin.h"

namespace kvtier {

class HttpOrigin final : public Origin {
 public:
  static constexpr int kAttempts = 3;
  // `ca_file`: PEM CAs for https ("" = the system's bundle).
  explicit HttpOrigin(std::string uri, std::string ca_file = "");
  ~HttpOrigin() override;
  HttpOrigin(const HttpOrigin&) = delete;
  HttpOrigin& operator=(const HttpOrigin&) = delete;

  // What one request answered (headers and the body's fill level); for the curl callbacks.
  struct Answer;

  absl::StatusOr<FileIdentity> Stat() override;
  absl::Status Read(const FileIdentity& expected, uint64_t offset, uint64_t length,
                    std::byte* dst) override;

 private:
  // One request (HEAD when `dst` is null, else a range GET of [offset, offset + length)).
  absl::Status Perform(bool head, uint64_t offset, uint64_t length, std::byte* dst, Answer* out);
  absl::Status ReadOnce(const FileIdentity& expected, uint64_t offset, uint64_t length,
                        std::byte* dst);
  void* TakeHandle();
  void GiveBack(void* handle);

  const std::string uri_;
  const std::string ca_file_;
  absl::Mutex mu_;
  std::vector<void*> idle_ ABSL_GUARDED_BY(mu_);  // CURL* kept for connection reuse
};

}  // namespace kvtier
