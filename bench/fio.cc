#include "bench/fio.h"

#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/local_daemon.h"

namespace kvtier::bench {

absl::StatusOr<std::string> FindFio() {
  const char* path = std::getenv("PATH");
  const std::string dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  for (absl::string_view dir : absl::StrSplit(absl::string_view(dirs), ':')) {
    if (dir.empty()) continue;
    const std::string candidate = absl::StrCat(dir, "/fio");
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return absl::NotFoundError(
      "fio not found on $PATH (scripts/deps installs it: apt-get install fio)");
}

absl::StatusOr<FioResult> RunFio(const FioJob& job) {
  if (job.filename.empty() || job.size_bytes == 0 || job.block_bytes == 0 || job.iodepth == 0) {
    return absl::InvalidArgumentError("fio: filename, size, block size and iodepth must be set");
  }
  auto fio = FindFio();
  if (!fio.ok()) return fio.status();
  // JSON goes to a file of its own: fio's warnings on stdout/stderr cannot garble it.
  const std::string json_path = job.filename + ".fio.json";
  std::vector<std::string> argv = {*fio,
                                   "--name=kvtier",
                                   "--filename=" + job.filename,
                                   absl::StrCat("--size=", job.size_bytes),
                                   "--ioengine=" + job.ioengine,
                                   job.direct ? "--direct=1" : "--direct=0",
                                   "--rw=" + job.rw,
                                   absl::StrCat("--bs=", job.block_bytes),
                                   absl::StrCat("--iodepth=", job.iodepth),
                                   "--numjobs=1",
                                   absl::StrCat("--runtime=", job.max_runtime_s),
                                   "--output-format=json",
                                   "--output=" + json_path};
  if (job.fixed_buffers) argv.push_back("--fixedbufs");
  argv.insert(argv.end(), job.extra_args.begin(), job.extra_args.end());
  FioResult result;
  result.command = absl::StrJoin(argv, " ");

  const std::filesystem::path parent = std::filesystem::path(job.filename).parent_path();
  const std::string dir = parent.empty() ? std::string(".") : parent.string();
  const absl::StatusOr<DiskSample> disk_before = SampleDisk(dir);
  // Laying out a file for a read job comes on top of the runtime: allow for it.
  const ProcessResult run = RunProgram(argv, job.max_runtime_s + 60);
  const absl::StatusOr<DiskSample> disk_after = SampleDisk(dir);
  std::ifstream in(json_path);
  std::stringstream text;
  text << in.rdbuf();
  std::error_code ec;
  std::filesystem::remove(json_path, ec);
  if (run.exit_code != 0) {
    return absl::InternalError(absl::StrCat("fio exited with ", run.exit_code, ": ", run.output,
                                            " (", result.command, ")"));
  }
  nlohmann::json j = nlohmann::json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.contains("jobs") || !j["jobs"].is_array() || j["jobs"].empty()) {
    return absl::InternalError(
        absl::StrCat("fio: no JSON job results in ", json_path, "; fio said: ", run.output));
  }
  const nlohmann::json& r = j["jobs"][0];
  if (r.value("error", 0) != 0) {
    return absl::InternalError(absl::StrCat("fio job error ", r.value("error", 0), ": ",
                                            r.value("error_str", std::string())));
  }
  double bw = 0;
  for (const char* dir : {"read", "write"}) {
    if (!r.contains(dir)) continue;
    bw += r[dir].value("bw_bytes", 0.0);
    result.io_bytes += r[dir].value("io_bytes", uint64_t{0});
  }
  if (bw <= 0) return absl::InternalError("fio: job moved no bytes (" + result.command + ")");
  result.gbps = bw / 1e9;
  result.runtime_s = r.value("job_runtime", 0.0) / 1e3;
  if (disk_before.ok() && disk_after.ok()) {
    result.disk = Between(*disk_before, *disk_after, result.runtime_s);
  }
  return result;
}

absl::StatusOr<std::unique_ptr<ScratchDir>> ScratchDir::Create(const std::string& parent,
                                                               const std::string& prefix,
                                                               const std::string& flag) {
  const std::string base = parent.empty() ? "." : parent;
  struct statfs st;
  if (statfs(base.c_str(), &st) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(flag, ": cannot stat '", base, "'"));
  }
  if (st.f_type == TMPFS_MAGIC || st.f_type == RAMFS_MAGIC) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, ": '", base, "' is in memory (tmpfs), not on a disk; give a directory on one"));
  }
  std::string tmpl =
      (std::filesystem::absolute(base).lexically_normal() / (prefix + "-XXXXXX")).string();
  if (mkdtemp(tmpl.data()) == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": cannot create a directory in '", base, "': ", std::strerror(errno)));
  }
  return std::unique_ptr<ScratchDir>(new ScratchDir(tmpl));
}

ScratchDir::~ScratchDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

absl::StatusOr<DiskSample> SampleDisk(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return absl::NotFoundError(absl::StrCat("stat ", path));
  const unsigned want_major = major(st.st_dev), want_minor = minor(st.st_dev);
  std::ifstream in("/proc/diskstats");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    unsigned maj = 0, min = 0;
    std::string name;
    // reads, merged, sectors, ms; writes, merged, sectors, ms; in progress, ms busy, weighted ms
    uint64_t v[11] = {};
    fields >> maj >> min >> name;
    for (uint64_t& x : v) fields >> x;
    if (!fields || maj != want_major || min != want_minor) continue;
    DiskSample s;
    s.read_requests = v[0];
    s.read_sectors = v[2];
    s.write_requests = v[4];
    s.write_sectors = v[6];
    s.weighted_ms = v[10];
    return s;
  }
  return absl::NotFoundError(absl::StrCat(path, ": its device is not in /proc/diskstats"));
}

DiskActivity Between(const DiskSample& a, const DiskSample& b, double seconds) {
  DiskActivity d;
  const double requests = static_cast<double>(b.read_requests - a.read_requests) +
                          static_cast<double>(b.write_requests - a.write_requests);
  d.bytes = 512.0 * (static_cast<double>(b.read_sectors - a.read_sectors) +
                     static_cast<double>(b.write_sectors - a.write_sectors));
  if (requests > 0) d.request_kib = d.bytes / requests / 1024;
  if (seconds > 0)
    d.requests_in_flight = static_cast<double>(b.weighted_ms - a.weighted_ms) / 1e3 / seconds;
  return d;
}

}  // namespace kvtier::bench
