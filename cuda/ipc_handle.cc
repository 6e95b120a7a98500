// NOT RUN ON A GPU YET: compiled only (docs/architecture.md, Status).
#include "cuda/ipc_handle.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "cuda/gather_scatter.h"

#ifdef KVTIER_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace kvtier::cuda {

#ifdef KVTIER_HAVE_CUDA

absl::StatusOr<std::byte*> OpenIpcMemory(const unsigned char* handle, size_t handle_bytes) {
  if (DeviceCount() == 0) return absl::FailedPreconditionError("CUDA IPC: no device");
  if (handle == nullptr || handle_bytes != sizeof(cudaIpcMemHandle_t)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CUDA IPC: a handle of ", handle_bytes, " bytes (want ", sizeof(cudaIpcMemHandle_t), ")"));
  }
  cudaIpcMemHandle_t h;
  std::memcpy(&h, handle, sizeof(h));
  void* p = nullptr;
  if (cudaError_t e = cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess);
      e != cudaSuccess) {
    (void)cudaGetLastError();
    return absl::FailedPreconditionError(
        absl::StrCat("cudaIpcOpenMemHandle: ", cudaGetErrorString(e)));
  }
  return static_cast<std::byte*>(p);
}

void CloseIpcMemory(std::byte* device_ptr) {
  if (device_ptr != nullptr) (void)cudaIpcCloseMemHandle(device_ptr);
}

int CurrentDevice() {
  if (DeviceCount() == 0) return -1;
  int device = -1;
  if (cudaGetDevice(&device) != cudaSuccess) return -1;
  return device;
}

#else  // !KVTIER_HAVE_CUDA

absl::StatusOr<std::byte*> OpenIpcMemory(const unsigned char*, size_t) {
  return absl::FailedPreconditionError("CUDA IPC: no device (built without CUDA)");
}
void CloseIpcMemory(std::byte*) {}
int CurrentDevice() { return -1; }

#endif  // KVTIER_HAVE_CUDA

}  // namespace kvtier::cuda
