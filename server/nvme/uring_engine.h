// UringEngine: asynchronous reads and writes on one file through one io_uring.
//
// Any thread may submit (submissions are serialised by a lock); one completion thread reaps and
// runs the callbacks, so callbacks must be short and must not submit-and-wait on this engine.
// At most `depth` operations are in flight; a submitter past that waits for a slot.
// When a fixed-buffer region is given (the DRAM arena) it is registered once, in pieces of at
// most 1 GiB (the kernel's limit per buffer), and reads into it use IORING_OP_READ_FIXED; if the
// kernel refuses the registration, the engine says so and uses plain reads.
#pragma once

#include <liburing.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace kvtier {

class UringEngine {
 public:
  // Bytes transferred, or -errno.
  using Callback = std::function<void(int result)>;

  static absl::StatusOr<std::unique_ptr<UringEngine>> Create(int fd, unsigned depth,
                                                             std::byte* fixed_base,
                                                             uint64_t fixed_bytes);
  ~UringEngine();  // waits for every operation in flight, then stops
  UringEngine(const UringEngine&) = delete;
  UringEngine& operator=(const UringEngine&) = delete;

  // Writes the iovecs (each 4 KiB aligned, as O_DIRECT needs) at `offset`. The memory they point
  // to must stay valid until `done` runs.
  void Writev(std::vector<iovec> iov, uint64_t offset, Callback done);
  // Reads `len` bytes at `offset` into `buf`.
  void Read(std::byte* buf, size_t len, uint64_t offset, Callback done);
  // Blocking forms, for start-up scans and tests.
  int ReadSync(std::byte* buf, size_t len, uint64_t offset);
  int WritevSync(std::vector<iovec> iov, uint64_t offset);

  bool fixed_buffers() const { return fixed_registered_; }
  uint64_t in_flight();

 private:
  struct Op;
  UringEngine(int fd, unsigned depth) : fd_(fd), depth_(depth) {}
  void Submit(Op* op);
  void Reap();

  int fd_;
  unsigned depth_;
  io_uring ring_{};
  bool fixed_registered_ = false;
  std::byte* fixed_base_ = nullptr;
  uint64_t fixed_bytes_ = 0;
  static constexpr uint64_t kFixedPiece = 1ULL << 30;

  absl::Mutex mu_;  // guards the submission queue and the in-flight count
  unsigned in_flight_ ABSL_GUARDED_BY(mu_) = 0;          // submitted, not yet completed
  unsigned running_callbacks_ ABSL_GUARDED_BY(mu_) = 0;  // completed, callback running
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread reaper_;
};

}  // namespace kvtier
