#include "server/weights/chunk_disk.h"

#include <fcntl.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "common/checksum.h"
#include "spdlog/spdlog.h"

namespace kvtier {
namespace {

constexpr char kMagic[8] = {'K', 'V', 'T', 'W', 'C', 'H', 'K', '1'};
constexpr size_t kHeaderBytes = 32;

struct Header {
  char magic[8];
  uint64_t index;
  uint64_t length;
  uint64_t checksum;
};
static_assert(sizeof(Header) == kHeaderBytes);

absl::Status WriteAll(int fd, const void* data, size_t n, const std::string& path) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      return absl::UnavailableError(
          absl::StrFormat("weights disk: cannot write %s: %s", path, std::strerror(errno)));
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return absl::OkStatus();
}

absl::Status ReadAll(int fd, void* data, size_t n, uint64_t at, const std::string& path) {
  auto* p = static_cast<char*>(data);
  while (n > 0) {
    const ssize_t r = pread(fd, p, n, static_cast<off_t>(at));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      return absl::DataLossError(absl::StrFormat("weights disk: %s is short or unreadable", path));
    }
    p += r;
    n -= static_cast<size_t>(r);
    at += static_cast<uint64_t>(r);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ChunkDisk>> ChunkDisk::Open(const std::string& dir,
                                                           uint64_t capacity) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--nvme-path: cannot create the weights directory %s: %s", dir, ec.message()));
  }
  std::unique_ptr<ChunkDisk> disk(new ChunkDisk(dir, capacity));
  disk->Scan();
  return disk;
}

std::string ChunkDisk::FileDir(uint64_t file_id) const {
  return absl::StrFormat("%s/%016x", dir_, file_id);
}

std::string ChunkDisk::ChunkPath(uint64_t file_id, uint64_t index) const {
  return absl::StrFormat("%s/%016x/%d.chunk", dir_, file_id, index);
}

void ChunkDisk::Scan() {
  absl::MutexLock lock(&mu_);
  std::error_code ec;
  std::vector<std::pair<std::filesystem::file_time_type, uint64_t>> by_age;
  for (const auto& d : std::filesystem::directory_iterator(dir_, ec)) {
    if (!d.is_directory()) continue;
    std::ifstream in(d.path() / "identity");
    FileIdentity f;
    std::string size, chunk_size;
    if (!std::getline(in, f.uri) || !std::getline(in, size) || !std::getline(in, f.version) ||
        !std::getline(in, chunk_size) || !absl::SimpleAtoi(size, &f.size) ||
        !absl::SimpleAtoi(chunk_size, &f.chunk_size) || f.chunk_size == 0 ||
        absl::StrFormat("%016x", f.FileId()) != d.path().filename().string()) {
      spdlog::warn("weights disk: {} has no valid identity file; removing it", d.path().string());
      std::filesystem::remove_all(d.path(), ec);
      continue;
    }
    Entry& e = files_[f.FileId()];
    e.identity = f;
    by_age.emplace_back(std::filesystem::last_write_time(d.path() / "identity", ec), f.FileId());
    for (const auto& c : std::filesystem::directory_iterator(d.path(), ec)) {
      const std::string name = c.path().filename().string();
      uint64_t index = 0;
      if (name.size() > 6 && name.ends_with(".chunk") &&
          absl::SimpleAtoi(name.substr(0, name.size() - 6), &index) && index < f.chunks()) {
        e.chunks.insert(index);
        used_ += f.ChunkBytes(index) + kHeaderBytes;
      } else if (name != "identity") {
        std::filesystem::remove(c.path(), ec);  // temporary files of an interrupted write
      }
    }
  }
  // Until they are used again, the files first written longest ago go first.
  std::sort(by_age.begin(), by_age.end());
  for (const auto& [when, id] : by_age) files_[id].last_used = ++clock_;
  spdlog::info("weights disk: {} file(s), {} bytes in {}", files_.size(), used_, dir_);
}

void ChunkDisk::SetKeep(std::function<bool(uint64_t)> keep) {
  absl::MutexLock lock(&mu_);
  keep_ = std::move(keep);
}

uint64_t ChunkDisk::evicted_files() {
  absl::MutexLock lock(&mu_);
  return evicted_files_;
}

void ChunkDisk::TouchLocked(uint64_t file_id) {
  if (auto it = files_.find(file_id); it != files_.end()) it->second.last_used = ++clock_;
}

bool ChunkDisk::MakeRoomLocked(uint64_t bytes, uint64_t writing) {
  if (used_ + bytes <= capacity_) return true;
  std::vector<std::pair<uint64_t, uint64_t>> candidates;  // last used, file id
  for (const auto& [id, e] : files_) {
    if (id != writing && !e.chunks.empty() && !(keep_ && keep_(id))) {
      candidates.emplace_back(e.last_used, id);
    }
  }
  std::sort(candidates.begin(), candidates.end());
  for (const auto& [last_used, id] : candidates) {
    if (used_ + bytes <= capacity_) break;
    const Entry& e = files_[id];
    spdlog::info("weights disk: evicting {} ({} chunks) to make room", e.identity.uri,
                 e.chunks.size());
    RemoveFileLocked(id);
    ++evicted_files_;
  }
  return used_ + bytes <= capacity_;
}

std::vector<FileIdentity> ChunkDisk::Files() {
  absl::MutexLock lock(&mu_);
  std::vector<FileIdentity> out;
  for (const auto& [id, e] : files_) out.push_back(e.identity);
  return out;
}

size_t ChunkDisk::ChunkCount(uint64_t file_id) {
  absl::MutexLock lock(&mu_);
  auto it = files_.find(file_id);
  return it == files_.end() ? 0 : it->second.chunks.size();
}

bool ChunkDisk::Has(uint64_t file_id, uint64_t index) {
  absl::MutexLock lock(&mu_);
  auto it = files_.find(file_id);
  return it != files_.end() && it->second.chunks.contains(index);
}

uint64_t ChunkDisk::used_bytes() {
  absl::MutexLock lock(&mu_);
  return used_;
}

void ChunkDisk::RemoveFileLocked(uint64_t file_id) {
  auto it = files_.find(file_id);
  if (it == files_.end()) return;
  for (uint64_t i : it->second.chunks) used_ -= it->second.identity.ChunkBytes(i) + kHeaderBytes;
  files_.erase(it);
  std::error_code ec;
  std::filesystem::remove_all(FileDir(file_id), ec);
}

absl::Status ChunkDisk::AddFileLocked(const FileIdentity& file) {
  const uint64_t id = file.FileId();
  if (files_.contains(id)) return absl::OkStatus();
  std::vector<uint64_t> older;
  for (const auto& [other, e] : files_) {
    if (e.identity.uri == file.uri) older.push_back(other);
  }
  for (uint64_t other : older) {
    spdlog::info("weights disk: {} changed at the origin; dropping the old version's chunks",
                 file.uri);
    RemoveFileLocked(other);
  }
  std::error_code ec;
  std::filesystem::create_directories(FileDir(id), ec);
  const std::string tmp = FileDir(id) + "/identity.tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << file.uri << '\n' << file.size << '\n' << file.version << '\n' << file.chunk_size << '\n';
    if (!out) {
      return absl::UnavailableError(absl::StrFormat("weights disk: cannot write %s", tmp));
    }
  }
  std::filesystem::rename(tmp, FileDir(id) + "/identity", ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrFormat("weights disk: cannot rename %s: %s", tmp, ec.message()));
  }
  files_[id].identity = file;
  return absl::OkStatus();
}

absl::Status ChunkDisk::Write(const FileIdentity& file, uint64_t index, const std::byte* data,
                              uint64_t length) {
  const uint64_t id = file.FileId();
  {
    absl::MutexLock lock(&mu_);
    if (auto it = files_.find(id); it != files_.end() && it->second.chunks.contains(index)) {
      TouchLocked(id);
      return absl::OkStatus();
    }
    if (!MakeRoomLocked(length + kHeaderBytes, id)) {
      return absl::ResourceExhaustedError(
          absl::StrFormat("weights disk: full (%d of %d bytes used by this file and pinned ones)",
                          used_, capacity_));
    }
    if (absl::Status s = AddFileLocked(file); !s.ok()) return s;
    TouchLocked(id);
  }
  const std::string path = ChunkPath(id, index);
  const std::string tmp = absl::StrFormat("%s.tmp.%d", path, gettid());
  const int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::UnavailableError(
        absl::StrFormat("weights disk: cannot create %s: %s", tmp, std::strerror(errno)));
  }
  Header h{};
  std::memcpy(h.magic, kMagic, 8);
  h.index = index;
  h.length = length;
  h.checksum = BlockChecksum(data, length);
  absl::Status s = WriteAll(fd, &h, sizeof h, tmp);
  if (s.ok()) s = WriteAll(fd, data, length, tmp);
  close(fd);
  if (s.ok() && rename(tmp.c_str(), path.c_str()) != 0) {
    s = absl::UnavailableError(
        absl::StrFormat("weights disk: cannot rename %s: %s", tmp, std::strerror(errno)));
  }
  if (!s.ok()) {
    unlink(tmp.c_str());
    return s;
  }
  absl::MutexLock lock(&mu_);
  auto it = files_.find(id);
  if (it == files_.end()) {  // a newer version replaced it meanwhile
    unlink(path.c_str());
    return absl::OkStatus();
  }
  if (it->second.chunks.insert(index).second) used_ += length + kHeaderBytes;
  return absl::OkStatus();
}

absl::Status ChunkDisk::Read(const FileIdentity& file, uint64_t index, std::byte* dst,
                             uint64_t length) {
  const uint64_t id = file.FileId();
  if (!Has(id, index)) {
    return absl::NotFoundError(absl::StrFormat("weights disk: no chunk %d of %s", index, file.uri));
  }
  const std::string path = ChunkPath(id, index);
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  absl::Status s;
  Header h{};
  if (fd < 0) {
    s = absl::DataLossError(
        absl::StrFormat("weights disk: cannot open %s: %s", path, std::strerror(errno)));
  } else {
    s = ReadAll(fd, &h, sizeof h, 0, path);
    if (s.ok() &&
        (std::memcmp(h.magic, kMagic, 8) != 0 || h.index != index || h.length != length)) {
      s = absl::DataLossError(absl::StrFormat("weights disk: %s has a bad header", path));
    }
    if (s.ok()) s = ReadAll(fd, dst, length, sizeof h, path);
    if (s.ok() && BlockChecksum(dst, length) != h.checksum) {
      s = absl::DataLossError(absl::StrFormat("weights disk: %s fails its checksum", path));
    }
    close(fd);
  }
  if (!s.ok()) {
    spdlog::warn("{}; removing it", std::string(s.message()));
    absl::MutexLock lock(&mu_);
    if (auto it = files_.find(id); it != files_.end() && it->second.chunks.erase(index) > 0) {
      used_ -= length + kHeaderBytes;
    }
    unlink(path.c_str());
    return s;
  }
  absl::MutexLock lock(&mu_);
  TouchLocked(id);
  return s;
}

}  // namespace kvtier
