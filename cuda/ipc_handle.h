// CUDA IPC of device memory between processes on one node: how an engine opens a segment of the
// daemon's HBM pool (the daemon exports it with cudaIpcGetMemHandle, server/hbm/). Compiles and
// links without CUDA; then every call answers FailedPrecondition "no device".
//
// Semantics (CUDA runtime): the handle names a whole cudaMalloc allocation; opening it maps that
// allocation into the calling thread's current device context (peer access between the pool's
// device and the current one is enabled lazily when the devices differ and can reach each
// other); a process cannot open a handle it exported itself; memory opened must be closed with
// CloseIpcMemory before the exporter frees it.
#pragma once

#include <cstddef>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace kvtier::cuda {

// Opens a cudaIpcMemHandle_t (64 bytes) exported by another process.
//   handle: [handle_bytes] bytes, handle_bytes must be 64
[[nodiscard]] absl::StatusOr<std::byte*> OpenIpcMemory(const unsigned char* handle,
                                                       size_t handle_bytes);
// Closes what OpenIpcMemory returned (errors are logged nowhere and ignored: nothing to do).
void CloseIpcMemory(std::byte* device_ptr);
// The calling thread's current CUDA device (-1 without CUDA or a device).
int CurrentDevice();

}  // namespace kvtier::cuda
