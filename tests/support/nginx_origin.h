// A real HTTP origin for the weight-cache tests and benchmark: Debian's nginx (/usr/sbin/nginx)
// started as a child process with its own generated config, prefix, pid and log files in a
// temporary directory, serving that directory's root/ with range requests, ETag and
// Last-Modified. Killed and removed on destruction.
//
// Optionally nginx runs inside a network namespace this helper creates (`ip netns add`, a veth
// pair with a private /30 out of 198.18.0.0/15, the host side in the root namespace) and a
// `tc ... tbf` qdisc on the namespace's veth caps what the origin sends in aggregate, as a blob
// store caps a blob (nginx's limit_rate is per connection and would let N readers go N times
// faster). Where namespaces cannot be made (no CAP_NET_ADMIN, no veth/tbf), Start() returns
// UNAVAILABLE with the reason: tests GTEST_SKIP() with it, never pass silently. Names carry the
// process id, so parallel test processes never collide; namespaces left behind by a process that
// died are removed by the next Start().
//
// Locations (paths below are relative to root/):
//   /<path>              the file, 404 when it does not exist
//   /error500/<path>     always 500
//   /slow/<path>         the file at slow_rate_bytes_per_sec per connection (nginx limit_rate)
//   /cut/<path>          the file's first cut_after_bytes bytes of each response, then the
//                        connection closes mid-body (a reset mid-chunk; headers said more)
//   /close/<path>        closes the connection without any response (nginx's 444)
// Every request of these is in the access log with its status, $body_bytes_sent and Range header.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvtier::testing {

struct NginxOriginOptions {
  std::string nginx_binary = "/usr/sbin/nginx";
  // Run nginx in a network namespace of its own behind a veth pair (needs CAP_NET_ADMIN).
  bool network_namespace = false;
  // Aggregate cap on what the origin sends, bits per second (tbf on the namespace's veth); 0 for
  // none. Needs network_namespace.
  uint64_t rate_bits_per_sec = 0;
  // Per-connection rate of /slow/ (bytes per second).
  uint64_t slow_rate_bytes_per_sec = 256 * 1024;
  // Bytes of each /cut/ response sent before the connection is closed.
  uint64_t cut_after_bytes = 64 * 1024;
  // Serve https with this certificate and key (PEM paths, e.g. from MakeTestCert in
  // tests/support/test_certs.h; its names must cover host()); "" for plain http.
  std::string tls_cert;
  std::string tls_key;
};

// One line of the access log.
struct AccessLogEntry {
  int status = 0;
  uint64_t body_bytes = 0;  // $body_bytes_sent
  double end_s = 0;         // $msec: when it ended (Unix time, seconds)
  double duration_s = 0;    // $request_time: from its first byte read to its last byte sent
  std::string method;
  std::string path;   // the request URI's path (without ?query)
  std::string range;  // the Range header, "" when none
};

class NginxOrigin {
 public:
  // Whether the nginx binary is installed.
  static bool Available(const std::string& binary = NginxOriginOptions().nginx_binary);

  // Creates the directory (and namespace, veth pair and qdisc), starts nginx and waits (at most
  // 10 s) until it accepts connections. UNAVAILABLE when the namespace cannot be made here.
  static absl::StatusOr<std::unique_ptr<NginxOrigin>> Start(const NginxOriginOptions& options = {});
  ~NginxOrigin();  // kills nginx, deletes the namespace and veth pair, removes the directory
  NginxOrigin(const NginxOrigin&) = delete;
  NginxOrigin& operator=(const NginxOrigin&) = delete;

  // The served directory: files written here are served at Url(<relative path>).
  const std::string& root() const { return root_; }
  // The address nginx listens on: 127.0.0.1, or the namespace side of the veth pair.
  const std::string& host() const { return host_; }
  int port() const { return port_; }
  // "http(s)://<host>:<port>/<path>" (`path` relative, without a leading slash; https when
  // options.tls_cert is set).
  std::string Url(const std::string& path) const;
  // The namespace's name ("" without one).
  const std::string& netns() const { return netns_; }

  // Writes `size` pseudo-random bytes (deterministic by seed) to root()/<name>, creating
  // directories; returns the file's path.
  absl::StatusOr<std::string> WriteRandomFile(const std::string& name, uint64_t size,
                                              uint64_t seed);

  // The access log so far (requests are logged when they finish; not those cut by Kill()).
  std::vector<AccessLogEntry> AccessLog() const;
  // Sum of $body_bytes_sent over the log, of the requests for `path` ("/name", as in the URL)
  // when given, else of all requests.
  uint64_t BytesServed(const std::string& path = "") const;
  // Responses being written right now (nginx's stub_status "Writing", less the status request
  // itself); -1 when nginx does not answer.
  int ResponsesInFlight() const;

  bool Running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // SIGKILL and wait: connections in flight break without a goodbye.
  void Kill();
  // Starts nginx again with the same config and port (after Kill) and waits until it accepts.
  absl::Status Restart();
  // nginx's error log and stderr.
  std::string ReadErrorLog() const;

 private:
  NginxOrigin() = default;
  absl::Status MakeNamespace();
  void DeleteNamespace();
  absl::Status WriteConfig();
  absl::Status Launch();

  NginxOriginOptions options_;
  std::string dir_;
  std::string root_;
  std::string host_ = "127.0.0.1";
  int port_ = 0;
  std::string netns_;
  std::string veth_host_;
  std::string veth_ns_;
  pid_t pid_ = -1;
};

// One `curl` (the command-line client, a reader independent of ours) of `url` into `out_path`.
struct CurlResult {
  int exit_code = -1;   // curl's: 0 ok, 18 partial file, 52 empty reply, 28 timeout, ...
  int http_status = 0;  // 0 when no response came
  std::string headers;  // the response headers as received
  std::string output;   // curl's stdout and stderr
};
// `range` is a Range header value without "bytes=" ("0-99"), "" for the whole file.
CurlResult CurlFetch(const std::string& url, const std::string& out_path,
                     const std::string& range = "", int timeout_s = 60);

// The sha256 of a file as lowercase hex (by /usr/bin/sha256sum).
absl::StatusOr<std::string> Sha256OfFile(const std::string& path);

}  // namespace kvtier::testing
