#include "server/weights/origin.h"

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "server/weights/file_origin.h"
#include "server/weights/http_origin.h"

namespace kvtier {

absl::StatusOr<std::unique_ptr<Origin>> OpenOrigin(const std::string& uri,
                                                   const OriginOptions& options) {
  if (absl::StartsWith(uri, "file://")) {
    std::string path = uri.substr(7);
    if (path.empty() || path[0] != '/') {
      return absl::InvalidArgumentError(absl::StrFormat(
          "uri: '%s': a file URI needs an absolute path (file:///path/to/file)", uri));
    }
    return std::unique_ptr<Origin>(std::make_unique<FileOrigin>(uri, std::move(path)));
  }
  if (absl::StartsWith(uri, "http://") || absl::StartsWith(uri, "https://")) {
    const size_t host = uri.find("://") + 3;
    if (host >= uri.size() || uri[host] == '/') {
      return absl::InvalidArgumentError(absl::StrFormat("uri: '%s' has no host", uri));
    }
    return std::unique_ptr<Origin>(std::make_unique<HttpOrigin>(uri, options.ca_file));
  }
  return absl::InvalidArgumentError(absl::StrFormat(
      "uri: '%s': only file:///path, http://host/path and https://host/path are supported", uri));
}

}  // namespace kvtier
