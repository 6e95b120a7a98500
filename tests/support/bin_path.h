// Where the build put our programs (build/bin), for tests that start them.
#pragma once

#include <string>

namespace kvtier::testing {

inline std::string BinPath(const std::string& name) {
  return std::string(KVTIER_BIN_DIR) + "/" + name;
}

}  // namespace kvtier::testing
