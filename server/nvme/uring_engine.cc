#include "server/nvme/uring_engine.h"

#include <cerrno>
#include <cstring>
#include <future>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "spdlog/spdlog.h"

// The kernel hands each Op from the submitting thread to the completion thread through the ring,
// which ThreadSanitizer cannot see: tell it (TSan builds only).
#if defined(__SANITIZE_THREAD__)
#define KVTIER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define KVTIER_TSAN 1
#endif
#endif
#ifdef KVTIER_TSAN
#include <sanitizer/tsan_interface.h>
#define KVTIER_TSAN_RELEASE(p) __tsan_release(p)
#define KVTIER_TSAN_ACQUIRE(p) __tsan_acquire(p)
#else
#define KVTIER_TSAN_RELEASE(p)
#define KVTIER_TSAN_ACQUIRE(p)
#endif

namespace kvtier {

struct UringEngine::Op {
  enum Kind { kWritev, kRead, kStop } kind;
  std::vector<iovec> iov;  // kWritev
  std::byte* buf = nullptr;
  size_t len = 0;
  uint64_t offset = 0;
  Callback done;
};

absl::StatusOr<std::unique_ptr<UringEngine>> UringEngine::Create(int fd, unsigned depth,
                                                                 std::byte* fixed_base,
                                                                 uint64_t fixed_bytes) {
  auto engine = std::unique_ptr<UringEngine>(new UringEngine(fd, depth));
  if (int err = io_uring_queue_init(depth * 2, &engine->ring_, 0); err < 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "io_uring_queue_init: %s (is io_uring disabled on this kernel?)", std::strerror(-err)));
  }
  if (fixed_base != nullptr && fixed_bytes > 0) {
    std::vector<iovec> pieces;
    for (uint64_t off = 0; off < fixed_bytes; off += kFixedPiece) {
      pieces.push_back({fixed_base + off, std::min(kFixedPiece, fixed_bytes - off)});
    }
    int err = io_uring_register_buffers(&engine->ring_, pieces.data(),
                                        static_cast<unsigned>(pieces.size()));
    if (err == 0) {
      engine->fixed_registered_ = true;
      engine->fixed_base_ = fixed_base;
      engine->fixed_bytes_ = fixed_bytes;
    } else {
      spdlog::warn(
          "io_uring: registering the DRAM arena as fixed buffers failed ({}); using plain "
          "reads",
          std::strerror(-err));
    }
  }
  engine->reaper_ = std::thread([e = engine.get()] { e->Reap(); });
  return engine;
}

UringEngine::~UringEngine() {
  {
    absl::MutexLock lock(&mu_);
    // Callbacks may use what the owner destroys after us: wait for them too.
    mu_.Await(absl::Condition(
        +[](UringEngine* e) ABSL_NO_THREAD_SAFETY_ANALYSIS {
          return e->in_flight_ == 0 && e->running_callbacks_ == 0;
        },
        this));
    stopping_ = true;
  }
  Submit(new Op{Op::kStop, {}, nullptr, 0, 0, nullptr});
  reaper_.join();
  io_uring_queue_exit(&ring_);
}

void UringEngine::Submit(Op* op) {
  absl::MutexLock lock(&mu_);
  if (op->kind != Op::kStop) {
    mu_.Await(absl::Condition(
        +[](UringEngine* e) ABSL_NO_THREAD_SAFETY_ANALYSIS { return e->in_flight_ < e->depth_; },
        this));
    ++in_flight_;
  }
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {  // the SQ is sized 2 x depth, so this only waits for the kernel
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  switch (op->kind) {
    case Op::kWritev:
      io_uring_prep_writev(sqe, fd_, op->iov.data(), static_cast<unsigned>(op->iov.size()),
                           op->offset);
      break;
    case Op::kRead: {
      const bool fixed = fixed_registered_ && op->buf >= fixed_base_ &&
                         op->buf + op->len <= fixed_base_ + fixed_bytes_ &&
                         (op->buf - fixed_base_) / kFixedPiece ==
                             (op->buf + op->len - 1 - fixed_base_) / kFixedPiece;
      if (fixed) {
        io_uring_prep_read_fixed(sqe, fd_, op->buf, static_cast<unsigned>(op->len), op->offset,
                                 static_cast<int>((op->buf - fixed_base_) / kFixedPiece));
      } else {
        io_uring_prep_read(sqe, fd_, op->buf, static_cast<unsigned>(op->len), op->offset);
      }
      break;
    }
    case Op::kStop:
      io_uring_prep_nop(sqe);
      break;
  }
  io_uring_sqe_set_data(sqe, op);
  KVTIER_TSAN_RELEASE(op);
  io_uring_submit(&ring_);
}

void UringEngine::Reap() {
  for (;;) {
    io_uring_cqe* cqe = nullptr;
    int err = io_uring_wait_cqe(&ring_, &cqe);
    if (err == -EINTR) continue;
    if (err < 0) {
      spdlog::error("io_uring_wait_cqe: {}", std::strerror(-err));
      return;
    }
    std::unique_ptr<Op> op(static_cast<Op*>(io_uring_cqe_get_data(cqe)));
    KVTIER_TSAN_ACQUIRE(op.get());
    const int result = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    if (op->kind == Op::kStop) return;
    // The device slot is free now: let the next operation go out while this callback runs
    // (it checksums the block and answers the client, which would otherwise idle the queue).
    {
      absl::MutexLock lock(&mu_);
      --in_flight_;
      ++running_callbacks_;
    }
    op->done(result);
    absl::MutexLock lock(&mu_);
    --running_callbacks_;
  }
}

void UringEngine::Writev(std::vector<iovec> iov, uint64_t offset, Callback done) {
  Submit(new Op{Op::kWritev, std::move(iov), nullptr, 0, offset, std::move(done)});
}

void UringEngine::Read(std::byte* buf, size_t len, uint64_t offset, Callback done) {
  Submit(new Op{Op::kRead, {}, buf, len, offset, std::move(done)});
}

int UringEngine::ReadSync(std::byte* buf, size_t len, uint64_t offset) {
  std::promise<int> p;
  Read(buf, len, offset, [&p](int r) { p.set_value(r); });
  return p.get_future().get();
}

int UringEngine::WritevSync(std::vector<iovec> iov, uint64_t offset) {
  std::promise<int> p;
  Writev(std::move(iov), offset, [&p](int r) { p.set_value(r); });
  return p.get_future().get();
}

uint64_t UringEngine::in_flight() {
  absl::MutexLock lock(&mu_);
  return in_flight_;
}

}  // namespace kvtier
