#include "server/dram/arena.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <random>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/huge_map.h"
#include "common/size.h"

namespace kvtier {
namespace {

constexpr char kShmemThpPath[] = "/sys/kernel/mm/transparent_hugepage/shmem_enabled";

// The bracketed word of the kernel's shmem THP setting ("never", "advise", ...); "" if unreadable.
std::string ShmemThpSetting() {
  std::ifstream in(kShmemThpPath);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t open = text.find('['), close = text.find(']');
  if (open == std::string::npos || close == std::string::npos || close < open) return "";
  return text.substr(open + 1, close - open - 1);
}

bool ShmemThpPossible(const std::string& setting) {
  return setting == "advise" || setting == "always" || setting == "within_size" ||
         setting == "force";
}

// Free reserved huge pages, in bytes, when the default huge page size is 2 MiB (else 0).
uint64_t FreeHugeTlbBytes() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  uint64_t free_pages = 0, page_kb = 0;
  while (std::getline(in, line)) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (f.size() < 2) continue;
    if (f[0] == "HugePages_Free:") (void)absl::SimpleAtoi(f[1], &free_pages);
    if (f[0] == "Hugepagesize:") (void)absl::SimpleAtoi(f[1], &page_kb);
  }
  return page_kb * 1024 == Arena::kHugePage ? free_pages * Arena::kHugePage : 0;
}

// Bytes of the mapping at `base` that the kernel maps with 2 MiB entries (smaps' ShmemPmdMapped).
uint64_t PmdMappedBytes(const void* base) {
  std::ifstream in("/proc/self/smaps");
  std::string line;
  bool in_vma = false;
  const uint64_t want = reinterpret_cast<uintptr_t>(base);
  while (std::getline(in, line)) {
    // A VMA header: "start-end perms offset dev inode path".
    const size_t dash = line.find('-');
    if (dash != std::string::npos && dash > 0 && line.find(':') > dash &&
        std::isxdigit(static_cast<unsigned char>(line[0]))) {
      uint64_t start = 0;
      in_vma = absl::SimpleHexAtoi(line.substr(0, dash), &start) && start == want;
      continue;
    }
    if (!in_vma) continue;
    absl::string_view rest = line;
    if (absl::ConsumePrefix(&rest, "ShmemPmdMapped:") ||
        absl::ConsumePrefix(&rest, "FilePmdMapped:")) {
      uint64_t kb = 0;
      (void)absl::SimpleAtoi(absl::StripSuffix(absl::StripAsciiWhitespace(rest), " kB"), &kb);
      if (kb > 0) return kb * 1024;
    }
  }
  return 0;
}

struct Mapped {
  int fd = -1;
  std::byte* base = nullptr;
  uint64_t size = 0;
  ArenaPages pages = ArenaPages::kSmall;
  std::string detail;
};

absl::Status Reserve(int fd, uint64_t size, const char* kind) {
  if (int err = posix_fallocate(fd, 0, static_cast<off_t>(size)); err != 0) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("--dram-capacity: cannot reserve %s of %s: %s", FormatBytes(size), kind,
                        std::strerror(err)));
  }
  return absl::OkStatus();
}

// 4 KiB pages: reserved by fallocate, mapped with MAP_POPULATE.
absl::StatusOr<Mapped> MapSmall(uint64_t size, const std::string& name, std::string detail) {
  Mapped m;
  m.fd = memfd_create(name.c_str(), MFD_CLOEXEC);
  if (m.fd < 0)
    return absl::InternalError(absl::StrFormat("memfd_create: %s", std::strerror(errno)));
  if (absl::Status s = Reserve(m.fd, size, "shared memory"); !s.ok()) {
    close(m.fd);
    return s;
  }
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, m.fd, 0);
  if (p == MAP_FAILED) {
    const int err = errno;
    close(m.fd);
    return absl::ResourceExhaustedError(
        absl::StrFormat("mmap of the %s arena: %s", FormatBytes(size), std::strerror(err)));
  }
  madvise(p, size, MADV_NOHUGEPAGE);  // advisory; failure is harmless
  m.base = static_cast<std::byte*>(p);
  m.size = size;
  m.pages = ArenaPages::kSmall;
  m.detail = std::move(detail);
  return m;
}

// Reserved huge pages: fallocate fails at once when too few are reserved.
absl::StatusOr<Mapped> MapHugeTlb(uint64_t capacity, const std::string& name) {
  const uint64_t size = capacity / Arena::kHugePage * Arena::kHugePage;
  if (size == 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "--dram-capacity: %d bytes is below one 2 MiB huge page (--arena-pages hugetlb)",
        capacity));
  }
  Mapped m;
  m.fd = memfd_create(name.c_str(), MFD_CLOEXEC | MFD_HUGETLB);
  if (m.fd < 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "--arena-pages hugetlb: memfd_create(MFD_HUGETLB): %s", std::strerror(errno)));
  }
  if (int err = posix_fallocate(m.fd, 0, static_cast<off_t>(size)); err != 0) {
    close(m.fd);
    return absl::ResourceExhaustedError(absl::StrFormat(
        "--arena-pages hugetlb: cannot reserve %s of huge pages (%s free; reserve more with "
        "sysctl vm.nr_hugepages=N): %s",
        FormatBytes(size), FormatBytes(FreeHugeTlbBytes()), std::strerror(err)));
  }
  void* p = MapSharedHugeAligned(m.fd, size, MAP_POPULATE);
  if (p == MAP_FAILED) {
    const int err = errno;
    close(m.fd);
    return absl::ResourceExhaustedError(
        absl::StrFormat("mmap of the %s arena: %s", FormatBytes(size), std::strerror(err)));
  }
  m.base = static_cast<std::byte*>(p);
  m.size = size;
  m.pages = ArenaPages::kHugeTlb;
  m.detail = "2 MiB (hugetlb)";
  return m;
}

// Transparent huge pages: asked for on the mapping, then allocated through it (fallocate has no
// mapping to read the advice from, so it would allocate 4 KiB pages).
absl::StatusOr<Mapped> MapTransparent(uint64_t size, const std::string& name,
                                      const std::string& setting) {
  Mapped m;
  m.fd = memfd_create(name.c_str(), MFD_CLOEXEC);
  if (m.fd < 0)
    return absl::InternalError(absl::StrFormat("memfd_create: %s", std::strerror(errno)));
  if (ftruncate(m.fd, static_cast<off_t>(size)) != 0) {
    const int err = errno;
    close(m.fd);
    return absl::ResourceExhaustedError(
        absl::StrFormat("--dram-capacity: ftruncate: %s", std::strerror(err)));
  }
  void* p = MapSharedHugeAligned(m.fd, size, 0);  // advised MADV_HUGEPAGE
  if (p == MAP_FAILED) {
    const int err = errno;
    close(m.fd);
    return absl::ResourceExhaustedError(
        absl::StrFormat("mmap of the %s arena: %s", FormatBytes(size), std::strerror(err)));
  }
  if (const int err = PopulateWrite(p, size); err != 0) {
    if (err != EINVAL) {  // EINVAL: a kernel before 5.14; the pages come at first touch instead
      munmap(p, size);
      close(m.fd);
      return absl::ResourceExhaustedError(
          absl::StrFormat("--dram-capacity: cannot allocate %s of shared memory: %s",
                          FormatBytes(size), std::strerror(err)));
    }
  }
  m.base = static_cast<std::byte*>(p);
  m.size = size;
  const uint64_t huge = PmdMappedBytes(p);
  if (huge == 0) {
    m.pages = ArenaPages::kSmall;
    m.detail = absl::StrFormat("4 KiB (thp declined by the kernel; %s is %s)", kShmemThpPath,
                               setting.empty() ? "unreadable" : setting);
  } else {
    m.pages = ArenaPages::kTransparent;
    m.detail = huge >= size ? "2 MiB (thp)"
                            : absl::StrFormat("2 MiB (thp) for %s of %s, 4 KiB for the rest",
                                              FormatBytes(huge), FormatBytes(size));
  }
  return m;
}

}  // namespace

absl::StatusOr<ArenaPages> ParseArenaPages(absl::string_view text) {
  if (text == "auto") return ArenaPages::kAuto;
  if (text == "4k") return ArenaPages::kSmall;
  if (text == "thp") return ArenaPages::kTransparent;
  if (text == "hugetlb") return ArenaPages::kHugeTlb;
  return absl::InvalidArgumentError(
      absl::StrFormat("--arena-pages: '%s' is not one of auto, 4k, thp, hugetlb", text));
}

absl::StatusOr<std::unique_ptr<Arena>> Arena::Create(uint64_t capacity, const std::string& name,
                                                     ArenaPages pages) {
  const uint64_t size = capacity / kAlign * kAlign;
  if (size == 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("--dram-capacity: %d bytes is below one 4 KiB page", capacity));
  }
  absl::StatusOr<Mapped> mapped;
  const std::string setting = ShmemThpSetting();
  switch (pages) {
    case ArenaPages::kSmall:
      mapped = MapSmall(size, name, "4 KiB");
      break;
    case ArenaPages::kHugeTlb:
      mapped = MapHugeTlb(capacity, name);
      break;
    case ArenaPages::kTransparent:
      mapped = MapTransparent(size, name, setting);
      break;
    case ArenaPages::kAuto:
      if (capacity >= kHugePage && FreeHugeTlbBytes() >= capacity / kHugePage * kHugePage) {
        mapped = MapHugeTlb(capacity, name);
        if (mapped.ok()) break;
      }
      if (ShmemThpPossible(setting)) {
        mapped = MapTransparent(size, name, setting);
      } else {
        mapped = MapSmall(
            size, name,
            absl::StrFormat("4 KiB (no reserved huge pages; thp for shared memory is %s: echo "
                            "advise > %s for 2 MiB pages)",
                            setting.empty() ? "unavailable" : setting, kShmemThpPath));
      }
      break;
  }
  if (!mapped.ok()) return mapped.status();
  std::random_device rd;
  uint64_t generation =
      (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ static_cast<uint64_t>(getpid());
  if (generation == 0) generation = 1;
  return std::unique_ptr<Arena>(new Arena(mapped->fd, mapped->base, mapped->size, generation,
                                          mapped->pages, std::move(mapped->detail)));
}

Arena::~Arena() {
  munmap(base_, size_);
  close(fd_);
}

}  // namespace kvtier
