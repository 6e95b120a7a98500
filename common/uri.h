// Small helpers for the URIs the weight cache reads (file://, http(s)://), shared by the daemon
// and the CLI.
#pragma once

#include <string>

namespace kvtier {

// The last path component of a URI (without query or fragment): the file name a pull writes.
// "" when the path ends in no name (e.g. "http://host/").
std::string UriBaseName(const std::string& uri);

}  // namespace kvtier
