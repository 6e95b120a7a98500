#include "server/weights/http_origin.h"

#include <curl/curl.h>

#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"

namespace kvtier {

struct HttpOrigin::Answer {
  long code = 0;
  std::string etag, last_modified;
  int64_t content_length = -1;
  int64_t range_total = -1;  // from Content-Range: bytes a-b/total
  // Body sink (range GETs).
  std::byte* dst = nullptr;
  uint64_t capacity = 0;
  uint64_t received = 0;
  bool overflow = false;
};

namespace {

void GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* a = static_cast<HttpOrigin::Answer*>(user);
  absl::string_view line(data, size * n);
  const size_t colon = line.find(':');
  if (absl::StartsWith(line, "HTTP/")) {
    // A new response (after a redirect or a 100): forget the headers of the last one.
    a->etag.clear();
    a->last_modified.clear();
    a->content_length = -1;
    a->range_total = -1;
    return size * n;
  }
  if (colon == absl::string_view::npos) return size * n;
  const std::string name = absl::AsciiStrToLower(line.substr(0, colon));
  absl::string_view value = absl::StripAsciiWhitespace(line.substr(colon + 1));
  if (name == "etag") {
    a->etag = std::string(value);
  } else if (name == "last-modified") {
    a->last_modified = std::string(value);
  } else if (name == "content-length") {
    int64_t v = 0;
    if (absl::SimpleAtoi(value, &v)) a->content_length = v;
  } else if (name == "content-range") {
    const size_t slash = value.rfind('/');
    int64_t v = 0;
    if (slash != absl::string_view::npos && absl::SimpleAtoi(value.substr(slash + 1), &v)) {
      a->range_total = v;
    }
  }
  return size * n;
}

size_t OnBody(char* data, size_t size, size_t n, void* user) {
  auto* a = static_cast<HttpOrigin::Answer*>(user);
  const size_t bytes = size * n;
  if (a->dst == nullptr) return bytes;  // error bodies are dropped
  if (a->received + bytes > a->capacity) {
    a->overflow = true;
    return 0;  // aborts the transfer
  }
  std::memcpy(a->dst + a->received, data, bytes);
  a->received += bytes;
  return bytes;
}

absl::Status CodeStatus(const std::string& uri, long code) {
  const std::string msg = absl::StrFormat("origin: HTTP %d from %s", code, uri);
  if (code == 404 || code == 410) return absl::NotFoundError(msg);
  if (code == 401 || code == 403) return absl::PermissionDeniedError(msg);
  if (code >= 500 || code == 429 || code == 408) return absl::UnavailableError(msg);
  return absl::FailedPreconditionError(msg);
}

std::string VersionOf(const HttpOrigin::Answer& a) {
  if (!a.etag.empty()) return "etag:" + a.etag;
  if (!a.last_modified.empty()) return "last-modified:" + a.last_modified;
  return "";
}

}  // namespace

HttpOrigin::HttpOrigin(std::string uri, std::string ca_file)
    : uri_(std::move(uri)), ca_file_(std::move(ca_file)) {
  GlobalInit();
}

HttpOrigin::~HttpOrigin() {
  absl::MutexLock lock(&mu_);
  for (void* h : idle_) curl_easy_cleanup(static_cast<CURL*>(h));
}

void* HttpOrigin::TakeHandle() {
  {
    absl::MutexLock lock(&mu_);
    if (!idle_.empty()) {
      void* h = idle_.back();
      idle_.pop_back();
      return h;
    }
  }
  return curl_easy_init();
}

void HttpOrigin::GiveBack(void* handle) {
  absl::MutexLock lock(&mu_);
  idle_.push_back(handle);
}

absl::Status HttpOrigin::Perform(bool head, uint64_t offset, uint64_t length, std::byte* dst,
                                 Answer* out) {
  CURL* curl = static_cast<CURL*>(TakeHandle());
  if (curl == nullptr) return absl::ResourceExhaustedError("origin: curl_easy_init failed");
  curl_easy_reset(curl);
  curl_easy_setopt(curl, CURLOPT_URL, uri_.c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, 10'000L);
  // A transfer slower than 1 KiB/s for 30 s is dead.
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 30L);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, out);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, out);
  // Verification stays on (libcurl's default; set anyway, so no reused handle could differ).
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!ca_file_.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, ca_file_.c_str());
  char error[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  std::string range;
  if (head) {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else {
    range = absl::StrFormat("%d-%d", offset, offset + length - 1);
    curl_easy_setopt(curl, CURLOPT_RANGE, range.c_str());
    out->dst = dst;
    out->capacity = length;
  }
  const CURLcode rc = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out->code);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, nullptr);  // `error` dies here; the handle lives on
  GiveBack(curl);
  const std::string detail = error[0] != '\0' ? std::string(error) : curl_easy_strerror(rc);
  if (rc == CURLE_PEER_FAILED_VERIFICATION) {
    // Not worth a retry: the same chain fails the same way.
    return absl::FailedPreconditionError(absl::StrFormat(
        "origin: %s: TLS certificate not trusted (%s); give the CA that signed it with "
        "--weight-ca-file (now %s)",
        uri_, detail, ca_file_.empty() ? "unset: the system's CAs" : ca_file_));
  }
  if (rc == CURLE_SSL_CACERT_BADFILE) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "origin: %s: cannot use the CA certificate file %s (%s); check --weight-ca-file", uri_,
        ca_file_.empty() ? "(the system's bundle)" : ca_file_, detail));
  }
  if (rc != CURLE_OK && !(rc == CURLE_WRITE_ERROR && out->overflow)) {
    return absl::UnavailableError(absl::StrFormat("origin: %s: %s", uri_, detail));
  }
  if (out->overflow) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "origin: %s answered more than the %d bytes asked for at %d", uri_, length, offset));
  }
  if (out->code >= 300 || out->code < 200) return CodeStatus(uri_, out->code);
  return absl::OkStatus();
}

absl::StatusOr<FileIdentity> HttpOrigin::Stat() {
  absl::Status last;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100 << attempt));
    Answer a;
    last = Perform(/*head=*/true, 0, 0, nullptr, &a);
    if (last.ok()) {
      if (a.content_length < 0) {
        return absl::FailedPreconditionError(
            absl::StrFormat("origin: %s answered HEAD without a Content-Length", uri_));
      }
      FileIdentity f;
      f.uri = uri_;
      f.size = static_cast<uint64_t>(a.content_length);
      f.version = VersionOf(a);
      return f;
    }
    if (last.code() != absl::StatusCode::kUnavailable) return last;
  }
  return last;
}

absl::Status HttpOrigin::ReadOnce(const FileIdentity& expected, uint64_t offset, uint64_t length,
                                  std::byte* dst) {
  Answer a;
  if (absl::Status s = Perform(/*head=*/false, offset, length, dst, &a); !s.ok()) return s;
  const bool whole = a.code == 200 && offset == 0 && length == expected.size;
  if (a.code != 206 && !whole) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "origin: %s answered HTTP %d to a range request (range requests not supported?)", uri_,
        a.code));
  }
  const std::string version = VersionOf(a);
  const uint64_t total = a.code == 206 ? static_cast<uint64_t>(a.range_total) : a.received;
  if (version != expected.version || (a.code == 206 && a.range_total < 0) ||
      total != expected.size) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "origin changed: %s is now %d bytes, %s (opened as %d bytes, %s); open it again to read "
        "the new version",
        uri_, a.range_total, version.empty() ? "no version" : version, expected.size,
        expected.version));
  }
  if (a.received != length) {
    return absl::UnavailableError(absl::StrFormat("origin: %s sent %d of the %d bytes at %d", uri_,
                                                  a.received, length, offset));
  }
  return absl::OkStatus();
}

absl::Status HttpOrigin::Read(const FileIdentity& expected, uint64_t offset, uint64_t length,
                              std::byte* dst) {
  if (length == 0) return absl::OkStatus();
  absl::Status last;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100 << attempt));
    last = ReadOnce(expected, offset, length, dst);
    if (last.code() != absl::StatusCode::kUnavailable) return last;
  }
  return last;
}

}  // namespace kvtier
