// A fresh directory under /tmp for one test's sockets (short, so paths fit sun_path), removed with
// everything in it on destruction.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace kvtier::testing {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/kvtc-XXXXXX";
    const char* dir = mkdtemp(tmpl);
    path_ = dir != nullptr ? dir : "/tmp";
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace kvtier::testing
