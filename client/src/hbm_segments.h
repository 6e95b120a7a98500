// HbmSegments: this process's view of the daemon's HBM tier segments, opened on first use and
// kept open (a cache per segment): cuda backend, cudaIpcOpenMemHandle of the segment's handle
// (a device pointer in the calling thread's current device); cpu backend, a read-only shared
// mapping of the segment's memfd. Both come from the daemon's `<socket>.hbm` (common/hbm_wire.h).
//
// Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "kvtier/client.h"

namespace kvtier::client_internal {

class HbmSegments {
 public:
  // `info` as Client::HbmTier answered it (present).
  explicit HbmSegments(HbmTierInfo info);
  ~HbmSegments();  // closes / unmaps every opened segment
  HbmSegments(const HbmSegments&) = delete;
  HbmSegments& operator=(const HbmSegments&) = delete;

  const HbmTierInfo& info() const { return info_; }
  // Base address of `segment` (device pointer for cuda, host for cpu). FailedPrecondition when it
  // cannot be opened here (another daemon answered, no device, IPC refused, ...).
  absl::StatusOr<std::byte*> Base(uint32_t segment);
  // Segments opened so far.
  size_t opened() const;

 private:
  absl::StatusOr<std::byte*> Open(uint32_t segment);

  const HbmTierInfo info_;
  mutable absl::Mutex mu_;
  std::vector<std::byte*> bases_ ABSL_GUARDED_BY(mu_);  // null: not opened yet
};

}  // namespace kvtier::client_internal
