// Disk baselines for the benchmarks: a scratch directory on a disk, fio (one job, JSON output
// parsed, bandwidth back), and the block device's own counters (/proc/diskstats), which tell
// what queue depth and request size the device really saw during a measurement.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace kvtier::bench {

struct FioJob {
  std::string filename;  // created (and laid out for reads) by fio when missing
  std::string rw;        // fio --rw: "read", "write", "randread", "randwrite"
  uint64_t size_bytes = 0;
  uint64_t block_bytes = 1 << 20;
  unsigned iodepth = 32;
  int max_runtime_s = 15;  // fio --runtime: a size-bound job stops here at the latest
  std::string ioengine = "io_uring";
  bool direct = true;
  bool fixed_buffers = false;           // io_uring registered buffers (--fixedbufs)
  std::vector<std::string> extra_args;  // more fio options, "--name=value"
};

// A fresh directory `<parent>/<prefix>-XXXXXX` for device files, removed with everything in it
// on destruction. `parent` empty: the current directory. Refuses a parent in memory (tmpfs: no
// O_DIRECT, and no disk to measure); errors name `flag`.
class ScratchDir {
 public:
  static absl::StatusOr<std::unique_ptr<ScratchDir>> Create(const std::string& parent,
                                                            const std::string& prefix,
                                                            const std::string& flag);
  ~ScratchDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  explicit ScratchDir(std::string path) : path_(std::move(path)) {}
  std::string path_;
};

// Counters of one block device, read at one instant.
struct DiskSample {
  uint64_t read_requests = 0, read_sectors = 0;
  uint64_t write_requests = 0, write_sectors = 0;
  uint64_t weighted_ms = 0;  // sum over requests of their time in the device queue
};
// The device holding `path` (its partition, when on one). NOT_FOUND when it is not a block
// device listed in /proc/diskstats (tmpfs, overlay, network file systems).
absl::StatusOr<DiskSample> SampleDisk(const std::string& path);

// What the device saw between two samples.
struct DiskActivity {
  double requests_in_flight = 0;  // mean, over `seconds` (pass the measured interval)
  double request_kib = 0;         // mean request size, reads and writes together
  double bytes = 0;
};
DiskActivity Between(const DiskSample& a, const DiskSample& b, double seconds);

struct FioResult {
  double gbps = 0;        // bytes per second / 1e9 (read + write bandwidth of the job)
  double runtime_s = 0;   // fio's job_runtime
  uint64_t io_bytes = 0;  // bytes moved
  std::string command;    // the command line, for the printed details
  // What the device under the file saw during fio's runtime (when SampleDisk can read it).
  std::optional<DiskActivity> disk;
};

// Full path of the fio executable on $PATH, or NOT_FOUND saying how to get it.
absl::StatusOr<std::string> FindFio();

// Runs one fio job (`--numjobs=1 --output-format=json`) and returns its bandwidth. Errors carry
// fio's own message.
absl::StatusOr<FioResult> RunFio(const FioJob& job);

}  // namespace kvtier::bench
