// The CPU GpuCopier, the copy-path rule and the backend choice. The CUDA copier is in
// cuda_copier.cc.
#include "cuda/gpu_copier.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "cuda/cpu_gather_scatter.h"
#include "cuda/gather_scatter.h"

namespace kvtier::cuda {
namespace {

// A copy that finished before the fence was made.
class DoneFence : public CopyFence {
 public:
  absl::Status Wait() override { return absl::OkStatus(); }
};

absl::Status CheckSlots(size_t num_ids, size_t num_slots, const void* const* slots) {
  if (num_ids != num_slots) {
    return absl::InvalidArgumentError(
        absl::StrCat("staging_blocks has ", num_slots, " entries for ", num_ids, " block ids"));
  }
  for (size_t i = 0; i < num_slots; ++i) {
    if (slots[i] == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("staging_blocks[", i, "] is null"));
    }
  }
  return absl::OkStatus();
}

class CpuCopier : public GpuCopier {
 public:
  const char* name() const override { return "cpu"; }

  absl::Status Gather(const PagedKv& src, std::span<const int32_t> block_ids,
                      std::span<std::byte* const> staging_blocks, void* /*stream*/,
                      std::vector<std::shared_ptr<CopyFence>>* layer_done) override {
    if (absl::Status s = CheckCopyArgs(src, block_ids, staging_blocks.size(),
                                       reinterpret_cast<const void* const*>(staging_blocks.data()),
                                       /*require_unique=*/false);
        !s.ok()) {
      return s;
    }
    for (size_t i = 0; i < block_ids.size(); ++i) {
      if (absl::Status s = GatherCpu(src, block_ids.subspan(i, 1), staging_blocks[i]); !s.ok()) {
        return s;
      }
    }
    FillDone(src, layer_done);
    return absl::OkStatus();
  }

  absl::Status Scatter(std::span<const std::byte* const> staging_blocks,
                       std::span<const int32_t> block_ids, const PagedKv& dst, void* /*stream*/,
                       std::vector<std::shared_ptr<CopyFence>>* layer_done) override {
    // Everything is checked before the first block is written, so an error writes nothing.
    if (absl::Status s = CheckCopyArgs(dst, block_ids, staging_blocks.size(),
                                       reinterpret_cast<const void* const*>(staging_blocks.data()),
                                       /*require_unique=*/true);
        !s.ok()) {
      return s;
    }
    for (size_t i = 0; i < block_ids.size(); ++i) {
      if (absl::Status s = ScatterCpu(staging_blocks[i], block_ids.subspan(i, 1), dst); !s.ok()) {
        return s;
      }
    }
    FillDone(dst, layer_done);
    return absl::OkStatus();
  }

  absl::Status ScatterFromDevice(std::span<const std::byte* const> staging_blocks,
                                 std::span<const int32_t> block_ids, const PagedKv& dst,
                                 void* stream,
                                 std::vector<std::shared_ptr<CopyFence>>* layer_done) override {
    return Scatter(staging_blocks, block_ids, dst, stream, layer_done);
  }

  absl::Status Synchronize(void* /*stream*/) override { return absl::OkStatus(); }

 private:
  void FillDone(const PagedKv& kv, std::vector<std::shared_ptr<CopyFence>>* layer_done) {
    if (layer_done == nullptr) return;
    layer_done->assign(static_cast<size_t>(kv.num_layers), done_);
  }

  std::shared_ptr<CopyFence> done_ = std::make_shared<DoneFence>();
};

}  // namespace

absl::Status CheckCopyArgs(const PagedKv& kv, std::span<const int32_t> block_ids, size_t num_slots,
                           const void* const* slots, bool require_unique) {
  if (absl::Status s = ValidatePagedKv(kv); !s.ok()) return s;
  if (absl::Status s = ValidateBlockIds(kv, block_ids, require_unique); !s.ok()) return s;
  return CheckSlots(block_ids.size(), num_slots, slots);
}

int64_t ContiguousRunBytes(const PagedKv& kv) {
  const int64_t piece = PieceBytes(kv);
  if (kv.layout == KvLayout::kContiguous && kv.kv_stride_bytes == piece &&
      kv.layer_stride_bytes == 2 * piece) {
    return StagingBlockBytes(kv);
  }
  if (PiecesPerLayer(kv.layout) == 2 && kv.kv_stride_bytes == piece) return 2 * piece;
  return piece;
}

CopyPath ChooseCopyPath(const PagedKv& kv) {
  return ContiguousRunBytes(kv) >= kMinCopyEngineRunBytes ? CopyPath::kCopyEngine
                                                          : CopyPath::kKernel;
}

int32_t KernelLayerGroup(const PagedKv& kv) {
  const int64_t layer_bytes = PiecesPerLayer(kv.layout) * PieceBytes(kv);
  if (kv.num_layers <= 0 || layer_bytes <= 0) return 1;
  const int64_t group = (kMinCopyEngineRunBytes + layer_bytes - 1) / layer_bytes;
  return static_cast<int32_t>(std::min<int64_t>(group, kv.num_layers));
}

std::unique_ptr<GpuCopier> MakeCpuCopier() { return std::make_unique<CpuCopier>(); }

std::unique_ptr<GpuCopier> MakeGpuCopier() {
  if (DeviceCount() > 0) {
    absl::StatusOr<std::unique_ptr<GpuCopier>> cuda = MakeCudaCopier();
    if (cuda.ok()) return *std::move(cuda);
  }
  return MakeCpuCopier();
}

}  // namespace kvtier::cuda
