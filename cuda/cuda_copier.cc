// The CUDA GpuCopier: device KV ⇄ pinned host slots on the caller's stream. Why two paths: a
// piece of a paged cache is often small (16 tokens x 8 heads x 128 x bf16 = 32 KiB), so the copy
// engine would pay its per-copy issue cost per piece; where runs are that small the kernel packs
// them in HBM and large DMAs cross PCIe: one per block and group of layers, so layers complete
// group by group (kernelLayerGroup below), not all at the end. Where
// the cache keeps large runs contiguous (a whole cross-layer block, or big pieces) the copy engine
// moves them straight into the slot, layer by layer, with no kernel and no scratch memory. See
// ChooseCopyPath (gpu_copier.h).
#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "cuda/gather_scatter.h"
#include "cuda/gpu_copier.h"
#include "cuda/pinned_host.h"

#ifdef KVTIER_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace kvtier::cuda {

#ifdef KVTIER_HAVE_CUDA
namespace {

absl::Status CudaError(cudaError_t error, const char* what) {
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorString(error)));
}

// A recorded event; destroyed with the last fence sharing it.
class EventFence : public CopyFence {
 public:
  explicit EventFence(cudaEvent_t event) : event_(event) {}
  ~EventFence() override { (void)cudaEventDestroy(event_); }
  absl::Status Wait() override {
    const cudaError_t error = cudaEventSynchronize(event_);
    return error == cudaSuccess ? absl::OkStatus() : CudaError(error, "cudaEventSynchronize");
  }

 private:
  cudaEvent_t event_;
};

absl::StatusOr<std::shared_ptr<CopyFence>> Record(cudaStream_t stream) {
  cudaEvent_t event = nullptr;
  if (cudaError_t e = cudaEventCreateWithFlags(&event, cudaEventDisableTiming); e != cudaSuccess) {
    return CudaError(e, "cudaEventCreateWithFlags");
  }
  auto fence = std::make_shared<EventFence>(event);  // owns the event from here
  if (cudaError_t e = cudaEventRecord(event, stream); e != cudaSuccess) {
    return CudaError(e, "cudaEventRecord");
  }
  return fence;
}

// Accumulates copies and merges one into the previous when both its source and destination
// continue the previous run, so consecutive block ids landing in consecutive slots cost one copy.
class RunBatch {
 public:
  explicit RunBatch(cudaStream_t stream) : stream_(stream) {}
  //   dst, src: [bytes] device or pinned host memory (UVA: cudaMemcpyDefault)
  absl::Status Add(std::byte* dst, const std::byte* src, int64_t bytes) {
    if (bytes_ > 0 && dst == dst_ + bytes_ && src == src_ + bytes_) {
      bytes_ += bytes;
      return absl::OkStatus();
    }
    if (absl::Status s = Flush(); !s.ok()) return s;
    dst_ = dst;
    src_ = src;
    bytes_ = bytes;
    return absl::OkStatus();
  }
  absl::Status Flush() {
    if (bytes_ == 0) return absl::OkStatus();
    const cudaError_t e =
        cudaMemcpyAsync(dst_, src_, static_cast<size_t>(bytes_), cudaMemcpyDefault, stream_);
    bytes_ = 0;
    return e == cudaSuccess ? absl::OkStatus() : CudaError(e, "cudaMemcpyAsync");
  }

 private:
  cudaStream_t stream_;
  std::byte* dst_ = nullptr;
  const std::byte* src_ = nullptr;
  int64_t bytes_ = 0;
};

std::byte* Base(const PagedKv& kv, int32_t layer) {
  return kv.layout == KvLayout::kContiguous ? kv.layer_bases[0] : kv.layer_bases[layer];
}

class CudaCopier : public GpuCopier {
 public:
  const char* name() const override { return "cuda"; }

  absl::Status Gather(const PagedKv& src, std::span<const int32_t> block_ids,
                      std::span<std::byte* const> staging_blocks, void* stream,
                      std::vector<std::shared_ptr<CopyFence>>* layer_done) override {
    const auto* slots = reinterpret_cast<const void* const*>(staging_blocks.data());
    if (absl::Status s = CheckCopyArgs(src, block_ids, staging_blocks.size(), slots, false);
        !s.ok()) {
      return s;
    }
    return Copy(src, block_ids, const_cast<std::byte* const*>(staging_blocks.data()),
                /*to_staging=*/true, static_cast<cudaStream_t>(stream), layer_done);
  }

  absl::Status Scatter(std::span<const std::byte* const> staging_blocks,
                       std::span<const int32_t> block_ids, const PagedKv& dst, void* stream,
                       std::vector<std::shared_ptr<CopyFence>>* layer_done) override {
    const auto* slots = reinterpret_cast<const void* const*>(staging_blocks.data());
    if (absl::Status s = CheckCopyArgs(dst, block_ids, staging_blocks.size(), slots, true);
        !s.ok()) {
      return s;
    }
    return Copy(dst, block_ids, const_cast<std::byte* const*>(staging_blocks.data()),
                /*to_staging=*/false, static_cast<cudaStream_t>(stream), layer_done);
  }

  absl::Status ScatterFromDevice(std::span<const std::byte* const> staging_blocks,
                                 std::span<const int32_t> block_ids, const PagedKv& dst,
                                 void* stream,
                                 std::vector<std::shared_ptr<CopyFence>>* layer_done) override {
    const auto* slots = reinterpret_cast<const void* const*>(staging_blocks.data());
    if (absl::Status s = CheckCopyArgs(dst, block_ids, staging_blocks.size(), slots, true);
        !s.ok()) {
      return s;
    }
    return Copy(dst, block_ids, const_cast<std::byte* const*>(staging_blocks.data()),
                /*to_staging=*/false, static_cast<cudaStream_t>(stream), layer_done,
                /*slots_on_device=*/true);
  }

  absl::Status Synchronize(void* stream) override {
    const cudaError_t e = cudaStreamSynchronize(static_cast<cudaStream_t>(stream));
    return e == cudaSuccess ? absl::OkStatus() : CudaError(e, "cudaStreamSynchronize");
  }

 private:
  //   slots: [n] pointers, [StagingBlockBytes(kv)] bytes each: pinned host memory, or device
  //          memory when slots_on_device
  absl::Status Copy(const PagedKv& kv, std::span<const int32_t> ids, std::byte* const* slots,
                    bool to_staging, cudaStream_t stream,
                    std::vector<std::shared_ptr<CopyFence>>* layer_done,
                    bool slots_on_device = false) {
    if (!slots_on_device) {
      if (absl::Status s =
              pins_.EnsurePinned(reinterpret_cast<const void* const*>(slots), ids.size());
          !s.ok()) {
        return s;
      }
    }
    std::vector<std::shared_ptr<CopyFence>> fences;
    fences.reserve(static_cast<size_t>(kv.num_layers));
    const int64_t run = ContiguousRunBytes(kv);
    absl::Status s;
    if (ChooseCopyPath(kv) == CopyPath::kKernel) {
      s = CopyWithKernel(kv, ids, slots, to_staging, stream, &fences);
    } else if (run == StagingBlockBytes(kv)) {
      // A whole block is one run: every layer completes with the last copy.
      RunBatch batch(stream);
      for (size_t i = 0; i < ids.size() && s.ok(); ++i) {
        std::byte* cache = Base(kv, 0) + PieceOffset(kv, 0, ids[i], 0);
        s = to_staging ? batch.Add(slots[i], cache, run) : batch.Add(cache, slots[i], run);
      }
      if (s.ok()) s = batch.Flush();
    } else {
      // Layer by layer, so an engine can use layer l (load) or reuse it (save) before the rest.
      const int32_t runs_per_layer =
          static_cast<int32_t>(PiecesPerLayer(kv.layout) * PieceBytes(kv) / run);
      RunBatch batch(stream);
      for (int32_t layer = 0; layer < kv.num_layers && s.ok(); ++layer) {
        for (size_t i = 0; i < ids.size() && s.ok(); ++i) {
          for (int32_t k = 0; k < runs_per_layer && s.ok(); ++k) {
            std::byte* cache = Base(kv, layer) + PieceOffset(kv, layer, ids[i], k);
            std::byte* slot = slots[i] + StagingPieceOffset(kv, 0, layer, k);
            s = to_staging ? batch.Add(slot, cache, run) : batch.Add(cache, slot, run);
          }
        }
        if (s.ok()) s = batch.Flush();
        if (!s.ok()) break;
        absl::StatusOr<std::shared_ptr<CopyFence>> fence = Record(stream);
        if (!fence.ok()) return fence.status();
        fences.push_back(*std::move(fence));
      }
    }
    if (!s.ok()) return s;
    if (fences.empty()) {  // one completion for every layer
      absl::StatusOr<std::shared_ptr<CopyFence>> fence = Record(stream);
      if (!fence.ok()) return fence.status();
      fences.assign(static_cast<size_t>(kv.num_layers), *fence);
    }
    if (layer_done != nullptr) *layer_done = std::move(fences);
    return absl::OkStatus();
  }

  // Kernel path: the cache ⇄ a stream-ordered device scratch region of n staging blocks, and
  // DMAs between scratch and slots. Layers go in groups (KernelLayerGroup): per group, one
  // launch and one DMA per block of that group's part of the block (contiguous in the staging
  // format), then an event that completes every layer of the group. So a load's first layers
  // are usable while later groups still cross PCIe, and a save's first layers may be
  // overwritten early. The scratch is freed on the stream after use.
  //   slots: [n] pinned host (or device) pointers, [StagingBlockBytes(kv)] bytes each
  //   fences: receives one fence per layer
  absl::Status CopyWithKernel(const PagedKv& kv, std::span<const int32_t> ids,
                              std::byte* const* slots, bool to_staging, cudaStream_t stream,
                              std::vector<std::shared_ptr<CopyFence>>* fences) {
    if (ids.empty()) return absl::OkStatus();
    const int64_t block_bytes = StagingBlockBytes(kv);
    const int64_t layer_bytes = PiecesPerLayer(kv.layout) * PieceBytes(kv);
    const int32_t group = KernelLayerGroup(kv);
    const size_t n = ids.size();
    void* scratch = nullptr;
    void* device_ids = nullptr;
    if (cudaError_t e = cudaMallocAsync(&scratch, n * static_cast<size_t>(block_bytes), stream);
        e != cudaSuccess) {
      return CudaError(e, "cudaMallocAsync(scratch)");
    }
    absl::Status s;
    if (cudaError_t e = cudaMallocAsync(&device_ids, n * sizeof(int32_t), stream);
        e != cudaSuccess) {
      s = CudaError(e, "cudaMallocAsync(ids)");
    }
    // Pageable source: cudaMemcpyAsync returns once `ids` is copied out, so it may die after.
    if (s.ok()) {
      if (cudaError_t e = cudaMemcpyAsync(device_ids, ids.data(), n * sizeof(int32_t),
                                          cudaMemcpyHostToDevice, stream);
          e != cudaSuccess) {
        s = CudaError(e, "cudaMemcpyAsync(ids)");
      }
    }
    auto* staging = static_cast<std::byte*>(scratch);
    const auto* dev_ids = static_cast<const int32_t*>(device_ids);
    for (int32_t first = 0; first < kv.num_layers && s.ok(); first += group) {
      const int32_t count = std::min(group, kv.num_layers - first);
      const LayerRange layers{first, count};
      const int64_t part = first * layer_bytes;  // this group's bytes inside a staging block
      const int64_t part_bytes = count * layer_bytes;
      RunBatch batch(stream);
      if (to_staging) {
        s = GatherDevice(kv, dev_ids, static_cast<int32_t>(n), staging, stream, layers);
        for (size_t i = 0; i < n && s.ok(); ++i) {
          s = batch.Add(slots[i] + part, staging + i * block_bytes + part, part_bytes);
        }
        if (s.ok()) s = batch.Flush();
      } else {
        for (size_t i = 0; i < n && s.ok(); ++i) {
          s = batch.Add(staging + i * block_bytes + part, slots[i] + part, part_bytes);
        }
        if (s.ok()) s = batch.Flush();
        if (s.ok()) {
          s = ScatterDevice(staging, dev_ids, static_cast<int32_t>(n), kv, stream, layers);
        }
      }
      if (!s.ok()) break;
      absl::StatusOr<std::shared_ptr<CopyFence>> fence = Record(stream);
      if (!fence.ok()) {
        s = fence.status();
        break;
      }
      for (int32_t l = 0; l < count; ++l) fences->push_back(*fence);
    }
    // Freed in reverse order, after whatever was enqueued.
    if (device_ids != nullptr) {
      if (cudaError_t e = cudaFreeAsync(device_ids, stream); e != cudaSuccess && s.ok()) {
        s = CudaError(e, "cudaFreeAsync(ids)");
      }
    }
    if (cudaError_t e = cudaFreeAsync(scratch, stream); e != cudaSuccess && s.ok()) {
      s = CudaError(e, "cudaFreeAsync(scratch)");
    }
    if (!s.ok()) fences->clear();
    return s;
  }

  HostPinRegistry pins_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<GpuCopier>> MakeCudaCopier() {
  if (DeviceCount() == 0) return absl::FailedPreconditionError("CUDA copier: no device");
  return std::unique_ptr<GpuCopier>(std::make_unique<CudaCopier>());
}

#else  // !KVTIER_HAVE_CUDA

absl::StatusOr<std::unique_ptr<GpuCopier>> MakeCudaCopier() {
  return absl::FailedPreconditionError("CUDA copier: no device (built without CUDA)");
}

#endif  // KVTIER_HAVE_CUDA

}  // namespace kvtier::cuda
