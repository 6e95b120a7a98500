// FileOrigin: a file:// origin (a mounted path). The version is the modification time in
// nanoseconds; every read checks size and mtime again after reading, so a file that changes while
// it is read is an error, never a chunk mixing two versions.
#pragma once

#include <string>

#include "server/weights/origin.h"

namespace kvtier {

class FileOrigin final : public Origin {
 public:
  FileOrigin(std::string uri, std::string path) : uri_(std::move(uri)), path_(std::move(path)) {}
  absl::StatusOr<FileIdentity> Stat() override;
  absl::Status Read(const FileIdentity& expected, uint64_t offset, uint64_t length,
                    std::byte* dst) override;

 private:
  const std::string uri_;
  const std::string path_;
};

}  // namespace kvtier
