// A tiny HTTP/1.0 GET over a TCP socket, for tests of the metrics endpoint: independent of the
// HTTP library the server uses, so the tests also check it speaks plain HTTP.
#pragma once

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kvtier::testing {

struct HttpResponse {
  int status = 0;
  std::string content_type;  // the Content-Type header's value, or ""
  std::string body;
};

// GET http://host:port/path (host numeric or a name); the whole answer (the server closes).
absl::StatusOr<HttpResponse> HttpGet(const std::string& host, int port, const std::string& path,
                                     absl::Duration timeout = absl::Seconds(5));

// The value of one series in a Prometheus text exposition: `series` is the sample's name with its
// labels exactly as written (e.g. kvtier_tier_used_bytes{tier="dram"}); nullopt when absent.
std::optional<double> SampleValue(const std::string& exposition, const std::string& series);

}  // namespace kvtier::testing
