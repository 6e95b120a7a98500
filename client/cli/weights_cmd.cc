#include "weights_cmd.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "cli_format.h"
#include "common/uri.h"
#include "table.h"

namespace kvtier::cli {
namespace {

using Clock = std::chrono::steady_clock;

Status Errno(const std::string& what, const std::string& path) {
  return Status(Status::Code::kFailedPrecondition, what + " " + path + ": " + std::strerror(errno));
}

void DrawProgress(std::ostream& out, uint64_t done, uint64_t total, double seconds) {
  constexpr int kWidth = 30;
  const double frac = total == 0 ? 1.0 : static_cast<double>(done) / static_cast<double>(total);
  const int filled = static_cast<int>(frac * kWidth);
  const double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0;
  std::string eta = "--";
  if (rate > 0 && done < total) {
    eta = FormatDuration(static_cast<uint64_t>(static_cast<double>(total - done) / rate * 1000));
  } else if (done >= total) {
    eta = "0s";
  }
  out << "\r[" << std::string(filled, '#') << std::string(kWidth - filled, ' ') << "] "
      << static_cast<int>(frac * 100) << "% " << FormatSize(done) << "/" << FormatSize(total) << " "
      << FormatSize(static_cast<uint64_t>(rate)) << "/s ETA " << eta << "   " << std::flush;
}

// The copy under its temporary name. Bytes go to the file straight from the daemon's arena: with
// O_DIRECT where the file system takes it (no copy in this process and none into the page cache;
// on a 2-core host the pulls' two copies per byte, arena to buffer to page cache, took more CPU
// than the daemons' whole fan-out), else through the page cache.
// What is written is flushed as the pull goes (a background fdatasync whenever there is more):
// data written with O_DIRECT still waits in the device's write cache (on a VM, the host's page
// cache), and one flush of four 100 MB copies at their end took 0.25 s, during which the other
// pulls' last writes waited too. Flushed as it goes, the final fsync waits for the last chunks.
class CopyFile {
 public:
  ~CopyFile() {
    StopFlusher();
    if (direct_fd_ >= 0) close(direct_fd_);
    if (fd_ >= 0) close(fd_);
  }

  Status Create(const std::string& path, uint64_t size) {
    path_ = path;
    fd_ = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd_ < 0) return Errno("--to: cannot create", path);
    // The file's blocks at once (fewer, larger extents; direct writes then fill, not extend),
    // and a full disk said now rather than after the pull. A file system without fallocate
    // allocates as the writes come.
    if (size > 0 && fallocate(fd_, 0, 0, static_cast<off_t>(size)) != 0 && errno == ENOSPC) {
      return Errno("--to: no room for " + std::to_string(size) + " bytes in", path);
    }
    direct_fd_ = open(path.c_str(), O_WRONLY | O_DIRECT | O_CLOEXEC);
    flusher_ = std::thread([this] { FlushLoop(); });
    return Status();
  }

  // Writes [at, at + len) of the file from `data`.
  Status Write(uint64_t at, const std::byte* data, uint64_t len) {
    // O_DIRECT wants the memory, the offset and the length aligned (to the device's logical
    // block; 4 KiB covers every common one). Arena slots are 4 KiB aligned and pieces start at
    // chunk boundaries, so only a file's unaligned tail goes through the page cache.
    if (direct_fd_ >= 0 && direct_ok_.load(std::memory_order_relaxed) && at % kAlign == 0 &&
        reinterpret_cast<uintptr_t>(data) % kAlign == 0) {
      const uint64_t aligned = len / kAlign * kAlign;
      uint64_t written = 0;
      while (written < aligned) {
        const ssize_t w =
            pwrite(direct_fd_, data + written, aligned - written, static_cast<off_t>(at + written));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0 && errno == EINVAL) {  // the file system refuses direct IO here after all
          direct_ok_.store(false, std::memory_order_relaxed);
          break;
        }
        if (w < 0) return Errno("--to: cannot write", path_);
        written += static_cast<uint64_t>(w);
        if (written % kAlign != 0) break;  // a short write left the rest unaligned
      }
      at += written;
      data += written;
      len -= written;
    }
    if (len == 0) {
      Wrote();
      return Status();
    }
    uint64_t written = 0;
    while (written < len) {
      const ssize_t w =
          pwrite(fd_, data + written, len - written, static_cast<off_t>(at + written));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return Errno("--to: cannot write", path_);
      written += static_cast<uint64_t>(w);
    }
    // Start writing it back now, so the fsync at the end waits for the last pieces only.
    (void)sync_file_range(fd_, static_cast<off_t>(at), static_cast<off_t>(len),
                          SYNC_FILE_RANGE_WRITE);
    Wrote();
    return Status();
  }

  // Everything written is on stable storage once this returns OK.
  Status Sync() {
    StopFlusher();
    if (fsync(fd_) != 0) return Errno("--to: cannot sync", path_);
    return Status();
  }

 private:
  static constexpr uint64_t kAlign = 4096;

  void Wrote() {
    std::lock_guard<std::mutex> lock(flush_mu_);
    ++writes_;
    flush_cv_.notify_one();
  }

  // Errors are left to the final fsync, which reports them.
  void FlushLoop() {
    uint64_t flushed = 0;
    std::unique_lock<std::mutex> lock(flush_mu_);
    for (;;) {
      flush_cv_.wait(lock, [&] { return stop_ || writes_ != flushed; });
      if (stop_) return;
      flushed = writes_;
      lock.unlock();
      (void)fdatasync(fd_);
      lock.lock();
    }
  }

  void StopFlusher() {
    {
      std::lock_guard<std::mutex> lock(flush_mu_);
      stop_ = true;
      flush_cv_.notify_one();
    }
    if (flusher_.joinable()) flusher_.join();
  }

  std::string path_;
  int fd_ = -1;
  int direct_fd_ = -1;  // -1: no O_DIRECT on this file system
  std::atomic<bool> direct_ok_{true};
  std::mutex flush_mu_;
  std::condition_variable flush_cv_;
  uint64_t writes_ = 0;  // Write calls so far
  bool stop_ = false;
  std::thread flusher_;
};

}  // namespace

Status RunWeightsPull(WeightClient& client, const WeightsPullArgs& args, std::ostream& out,
                      std::ostream& progress) {
  const std::string name = UriBaseName(args.uri);
  if (name.empty() || name == "." || name == "..") {
    return Status(Status::Code::kInvalidArgument,
                  "uri: '" + args.uri + "' has no file name to write under --to");
  }
  const auto started = Clock::now();
  WeightFile file;
  if (Status s = client.OpenFile(args.uri, &file); !s.ok()) return s;
  const std::string path = args.dir + "/" + name;
  const std::string tmp = args.dir + "/." + name + ".kvtier-partial." + std::to_string(getpid());
  CopyFile copy;
  if (Status s = copy.Create(tmp, file.size); !s.ok()) {
    unlink(tmp.c_str());
    return s;
  }

  // Streams take the next chunk in order, so the daemon's readahead stays ahead, and each chunk
  // is written as soon as it is there (not held back by a slower neighbour).
  const uint64_t piece = file.chunk_size;
  const uint64_t pieces = file.size == 0 ? 0 : (file.size + piece - 1) / piece;
  std::atomic<uint64_t> next{0}, done_bytes{0};
  std::mutex mu;
  Status error;
  WeightReadStats stats;
  auto work = [&] {
    WeightReadStats mine;
    for (;;) {
      {
        std::lock_guard<std::mutex> lock(mu);
        if (!error.ok()) break;
      }
      const uint64_t p = next.fetch_add(1);
      if (p >= pieces) break;
      const uint64_t at = p * piece;
      const uint64_t len = std::min(piece, file.size - at);
      Status s = client.ReadSpans(
          file, at, len,
          [&](uint64_t offset, const void* data, uint64_t n) {
            Status w = copy.Write(offset, static_cast<const std::byte*>(data), n);
            if (w.ok()) done_bytes.fetch_add(n);
            return w;
          },
          &mine);
      if (!s.ok()) {
        std::lock_guard<std::mutex> lock(mu);
        if (error.ok()) error = s;
        break;
      }
    }
    std::lock_guard<std::mutex> lock(mu);
    stats.origin_bytes += mine.origin_bytes;
    stats.peer_bytes += mine.peer_bytes;
    stats.local_bytes += mine.local_bytes;
  };
  std::vector<std::thread> streams;
  for (int i = 0; i < std::max(1, args.streams); ++i) streams.emplace_back(work);
  std::atomic<bool> finished{false};
  std::thread drawer;
  if (args.progress) {
    drawer = std::thread([&] {
      while (!finished.load()) {
        DrawProgress(progress, done_bytes.load(), file.size,
                     std::chrono::duration<double>(Clock::now() - started).count());
        for (int i = 0; i < 5 && !finished.load(); ++i) {
          std::this_thread::sleep_for(std::chrono::milliseconds(40));
        }
      }
    });
  }
  for (std::thread& t : streams) t.join();
  finished.store(true);
  if (drawer.joinable()) {
    drawer.join();
    if (error.ok()) {
      DrawProgress(progress, done_bytes.load(), file.size,
                   std::chrono::duration<double>(Clock::now() - started).count());
    }
    progress << "\n" << std::flush;
  }
  // The origin once more: a file rewritten in place while a response was on the wire can carry
  // the old version's headers with new bytes, which no range GET can tell. A version that moved
  // during the pull fails it (the copy could mix the two).
  if (error.ok()) {
    WeightFile again;
    Status s = client.OpenFile(args.uri, &again);
    if (!s.ok()) {
      error = s;
    } else if (again.version != file.version || again.size != file.size) {
      error =
          Status(Status::Code::kFailedPrecondition,
                 "origin changed during the pull: " + args.uri + " is now " +
                     std::to_string(again.size) + " bytes, " + again.version + " (was " +
                     std::to_string(file.size) + " bytes, " + file.version + "); pull it again");
    }
  }
  if (error.ok()) error = copy.Sync();
  if (error.ok() && rename(tmp.c_str(), path.c_str()) != 0) {
    error = Errno("--to: cannot rename the pulled file to", path);
  }
  if (!error.ok()) {
    unlink(tmp.c_str());
    return error;
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
  if (args.json) {
    nlohmann::json j = {{"uri", args.uri},
                        {"path", path},
                        {"size", file.size},
                        {"chunks", file.chunks},
                        {"seconds", seconds},
                        {"origin_bytes", stats.origin_bytes},
                        {"peer_bytes", stats.peer_bytes},
                        {"local_bytes", stats.local_bytes}};
    out << j.dump() << '\n';
  }
  return Status();
}

Status RunWeightsList(WeightClient& client, bool json, std::ostream& out) {
  WeightListing l;
  if (Status s = client.ListFiles(&l); !s.ok()) return s;
  if (json) {
    nlohmann::json files = nlohmann::json::array();
    for (const WeightFileInfo& f : l.files) {
      files.push_back({{"uri", f.file.uri},
                       {"size", f.file.size},
                       {"version", f.file.version},
                       {"file_id", f.file.file_id},
                       {"chunks", f.file.chunks},
                       {"cached_chunks", {{"dram", f.dram_chunks}, {"nvme", f.nvme_chunks}}},
                       {"pinned", f.pinned},
                       {"holders", f.holders},
                       {"holders_unknown", f.holders_unknown},
                       {"origin_bytes", f.origin_bytes},
                       {"peer_bytes", f.peer_bytes}});
    }
    out << nlohmann::json{{"files", files},
                          {"chunk_size", l.chunk_size},
                          {"capacity_bytes", l.capacity_bytes},
                          {"pinned_bytes", l.pinned_bytes}}
               .dump()
        << '\n';
    return Status();
  }
  Table t({{"URI"},
           {"SIZE", Table::Align::kRight},
           {"CHUNKS", Table::Align::kRight},
           {"DRAM", Table::Align::kRight},
           {"NVME", Table::Align::kRight},
           {"PINNED"},
           {"HOLDERS"}});
  for (const WeightFileInfo& f : l.files) {
    std::string holders;
    for (const auto& [h, n] : f.holders) {
      holders += (holders.empty() ? "" : ",") + h + ":" + std::to_string(n);
    }
    // A directory that did not answer: say so rather than list fewer holders.
    if (f.holders_unknown > 0) {
      holders +=
          (holders.empty() ? "" : ",") + std::string("?:") + std::to_string(f.holders_unknown);
    }
    t.AddRow({f.file.uri, FormatSize(f.file.size), std::to_string(f.file.chunks),
              std::to_string(f.dram_chunks), std::to_string(f.nvme_chunks), f.pinned ? "yes" : "no",
              holders.empty() ? "-" : holders});
  }
  t.Print(out);
  out << "chunk size " << FormatSize(l.chunk_size) << ", weight DRAM held "
      << FormatSize(l.pinned_bytes) << " of " << FormatSize(l.capacity_bytes) << '\n';
  return Status();
}

Status RunWeightsPrefetch(WeightClient& client, const std::string& uri, bool json,
                          std::ostream& out) {
  WeightFile f;
  if (Status s = client.Prefetch(uri, &f); !s.ok()) return s;
  if (json) {
    out << nlohmann::json{{"uri", uri}, {"file_id", f.file_id}, {"chunks", f.chunks}}.dump()
        << '\n';
  } else {
    out << "prefetching " << f.chunks << " chunks of " << uri << '\n';
  }
  return Status();
}

Status RunWeightsPin(WeightClient& client, const std::string& uri, bool unpin, bool json,
                     std::ostream& out) {
  if (Status s = client.Pin(uri, unpin); !s.ok()) return s;
  if (json) {
    out << nlohmann::json{{"uri", uri}, {"pinned", !unpin}}.dump() << '\n';
  } else {
    out << (unpin ? "unpinned " : "pinned ") << uri << '\n';
  }
  return Status();
}

}  // namespace kvtier::cli
