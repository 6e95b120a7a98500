#include "common/uri.h"

namespace kvtier {

std::string UriBaseName(const std::string& uri) {
  std::string path = uri;
  if (const size_t scheme = path.find("://"); scheme != std::string::npos) {
    path = path.substr(scheme + 3);
    const size_t slash = path.find('/');
    path = slash == std::string::npos ? "" : path.substr(slash);
  }
  if (const size_t q = path.find_first_of("?#"); q != std::string::npos) path.resize(q);
  while (!path.empty() && path.back() == '/') path.pop_back();
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

}  // namespace kvtier
