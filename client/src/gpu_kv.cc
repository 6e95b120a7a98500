// GpuKv: SaveKv/LoadKv over the zero-copy leases and a cuda::GpuCopier. Why the leases: the arena
// slot is the staging block, so the copier writes (save) or reads (load) it directly and the
// bytes cross PCIe once. A lease lives in its KvTransfer until every copy touching its slots has
// finished, so the daemon never reuses a slot under an in-flight DMA.
#include <cstdio>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/src/hbm_segments.h"
#include "cuda/cpu_gather_scatter.h"
#include "cuda/gather_scatter.h"
#include "cuda/gpu_copier.h"
#include "kvtier/gpu.h"

namespace kvtier {
namespace {

namespace kc = ::kvtier::cuda;

static_assert(static_cast<int>(KvLayout::kFlash) == static_cast<int>(kc::KvLayout::kFlash));
static_assert(static_cast<int>(KvLayout::kFlashInfer) ==
              static_cast<int>(kc::KvLayout::kFlashInfer));
static_assert(static_cast<int>(KvLayout::kMla) == static_cast<int>(kc::KvLayout::kMla));
static_assert(static_cast<int>(KvLayout::kContiguous) ==
              static_cast<int>(kc::KvLayout::kContiguous));

Status FromAbsl(const absl::Status& s) {
  return Status(static_cast<Status::Code>(s.code()), std::string(s.message()));
}

Status Invalid(std::string message) {
  return Status(Status::Code::kInvalidArgument, std::move(message));
}

// The cuda description of `kv`; its layer_bases point into `bases`, which must outlive it.
kc::PagedKv ToCuda(const PagedKV& kv, std::vector<std::byte*>& bases) {
  bases.clear();
  for (void* p : kv.layer_bases) bases.push_back(static_cast<std::byte*>(p));
  kc::PagedKv out;
  out.layout = static_cast<kc::KvLayout>(kv.layout);
  out.layer_bases = bases;
  out.num_layers = kv.num_layers;
  out.num_blocks = kv.num_blocks;
  out.block_size = kv.block_size;
  out.kv_heads = kv.kv_heads;
  out.head_size = kv.head_size;
  out.element_bytes = kv.element_bytes;
  out.block_stride_bytes = kv.block_stride_bytes;
  out.kv_stride_bytes = kv.kv_stride_bytes;
  out.layer_stride_bytes = kv.layer_stride_bytes;
  return out;
}

// Checks that apply before any RPC: the description, ids, one id per key, the namespace's block
// size.
Status CheckRequest(const Namespace& ns, std::span<const BlockKey> keys, const PagedKV& kv,
                    const kc::PagedKv& desc, bool require_unique, const char* call) {
  if (absl::Status s = kc::ValidatePagedKv(desc); !s.ok()) {
    return Invalid(absl::StrCat(call, ": ", s.message()));
  }
  if (kv.block_ids.size() != keys.size()) {
    return Invalid(
        absl::StrCat(call, ": ", kv.block_ids.size(), " block ids for ", keys.size(), " keys"));
  }
  if (absl::Status s = kc::ValidateBlockIds(desc, kv.block_ids, require_unique); !s.ok()) {
    return Invalid(absl::StrCat(call, ": ", s.message()));
  }
  const auto staging = static_cast<uint64_t>(kc::StagingBlockBytes(desc));
  if (ns.block_bytes != staging) {
    return Invalid(absl::StrCat(call, ": namespace block_bytes ", ns.block_bytes,
                                " != the PagedKV's staging block bytes ", staging));
  }
  return Status();
}

// One copy call's blocks and completions. A transfer has one group (a save; a load from DRAM)
// or two (a load reading some blocks from DRAM and others from the HBM tier): the groups write
// disjoint blocks, so one group's failure leaves the other's results intact.
struct CopyGroup {
  std::vector<size_t> copied;                          // key indices whose blocks the fences cover
  std::vector<std::shared_ptr<kc::CopyFence>> fences;  // one per layer
  Status status;  // an error: every block of the group reports kFailed
};

class Transfer : public KvTransfer {
 public:
  Transfer(std::vector<BlockResult> results, std::vector<CopyGroup> groups, size_t num_layers,
           std::unique_ptr<WriteLease> write, std::unique_ptr<ReadLease> read)
      : results_(std::move(results)),
        groups_(std::move(groups)),
        num_layers_(num_layers),
        write_(std::move(write)),
        read_(std::move(read)),
        save_(write_ != nullptr) {}
  ~Transfer() override { (void)Wait(); }

  size_t num_layers() const override { return num_layers_; }

  Status WaitLayer(size_t layer) override {
    if (layer >= num_layers_) {
      return Status(Status::Code::kOutOfRange,
                    absl::StrCat("WaitLayer(", layer, "): only ", num_layers_, " layers"));
    }
    if (finished_) return final_status_;
    Status first;
    for (CopyGroup& g : groups_) {
      if (g.status.ok() && layer < g.fences.size()) {
        if (absl::Status s = g.fences[layer]->Wait(); !s.ok()) g.status = FromAbsl(s);
      }
      if (!g.status.ok() && first.ok()) first = g.status;
    }
    return first;
  }

  Status Wait() override {
    if (finished_) return final_status_;
    Status first;
    for (CopyGroup& g : groups_) {
      for (const std::shared_ptr<kc::CopyFence>& fence : g.fences) {
        if (!g.status.ok()) break;
        if (absl::Status s = fence->Wait(); !s.ok()) g.status = FromAbsl(s);
      }
      // A failed fence can leave later copies in flight; the others have completed already.
      for (const std::shared_ptr<kc::CopyFence>& fence : g.fences) (void)fence->Wait();
      g.fences.clear();
      if (!g.status.ok() && first.ok()) first = g.status;
    }
    final_status_ = first;
    if (write_ != nullptr) {
      if (final_status_.ok()) {
        final_status_ = write_->Commit();
      } else {
        (void)write_->Abort();
      }
      write_.reset();
    }
    if (read_ != nullptr) {
      // The bytes were copied while pinned; a failed release only keeps the pin to its deadline.
      (void)read_->Release();
      read_.reset();
    }
    for (const CopyGroup& g : groups_) {
      // A save commits all or nothing: its blocks fail with the commit too.
      const bool ok = save_ ? final_status_.ok() : g.status.ok();
      for (size_t i : g.copied) results_[i] = ok ? BlockResult::kDone : BlockResult::kFailed;
    }
    finished_ = true;
    return final_status_;
  }

  std::span<const BlockResult> results() const override { return results_; }

 private:
  std::vector<BlockResult> results_;
  std::vector<CopyGroup> groups_;
  size_t num_layers_;
  std::unique_ptr<WriteLease> write_;
  std::unique_ptr<ReadLease> read_;
  const bool save_;
  Status final_status_;
  bool finished_ = false;
};

class GpuKvImpl : public GpuKv {
 public:
  GpuKvImpl(Client* client, std::unique_ptr<kc::GpuCopier> copier)
      : client_(client), copier_(std::move(copier)) {}

  const char* backend() const override { return copier_->name(); }

  Status SaveKv(const Namespace& ns, std::span<const BlockKey> keys, const PagedKV& kv,
                void* stream, std::unique_ptr<KvTransfer>* out, BlockKey parent) override {
    if (out == nullptr) return Invalid("SaveKv: out is null");
    std::vector<std::byte*> bases;
    const kc::PagedKv desc = ToCuda(kv, bases);
    if (Status s = CheckRequest(ns, keys, kv, desc, false, "SaveKv"); !s.ok()) return s;
    std::unique_ptr<WriteLease> lease;
    if (Status s = client_->BeginWrite(ns, keys, parent, &lease); !s.ok()) return s;

    std::vector<BlockResult> results(keys.size(), BlockResult::kSkipped);
    CopyGroup group;
    std::vector<int32_t> ids;
    std::vector<std::byte*> slots;
    for (size_t i = 0; i < keys.size(); ++i) {
      std::span<std::byte> slot = lease->block(i);
      if (slot.empty()) continue;  // already cached
      if (slot.size() != ns.block_bytes) {
        return Status(Status::Code::kInternal,
                      absl::StrCat("SaveKv: slot of ", slot.size(), " bytes for ", ns.block_bytes));
      }
      results[i] = BlockResult::kPending;
      group.copied.push_back(i);
      ids.push_back(kv.block_ids[i]);
      slots.push_back(slot.data());
    }
    if (absl::Status s = copier_->Gather(desc, ids, slots, stream, &group.fences); !s.ok()) {
      (void)copier_->Synchronize(stream);  // nothing in flight into the slots the abort frees
      return FromAbsl(s);
    }
    std::vector<CopyGroup> groups;
    groups.push_back(std::move(group));
    *out =
        std::make_unique<Transfer>(std::move(results), std::move(groups),
                                   static_cast<size_t>(kv.num_layers), std::move(lease), nullptr);
    return Status();
  }

  Status LoadKv(const Namespace& ns, std::span<const BlockKey> keys, const PagedKV& kv,
                void* stream, std::unique_ptr<KvTransfer>* out) override {
    if (out == nullptr) return Invalid("LoadKv: out is null");
    std::vector<std::byte*> bases;
    const kc::PagedKv desc = ToCuda(kv, bases);
    if (Status s = CheckRequest(ns, keys, kv, desc, true, "LoadKv"); !s.ok()) return s;
    std::shared_ptr<client_internal::HbmSegments> segments = Segments();
    std::unique_ptr<ReadLease> lease;
    Status acquired = segments != nullptr ? client_->AcquireReadTiered(ns, keys, &lease)
                                          : client_->AcquireRead(ns, keys, &lease);
    if (!acquired.ok()) return acquired;

    const size_t present = lease->size();
    std::vector<BlockResult> results(keys.size(), BlockResult::kSkipped);
    CopyGroup dram, hbm;
    std::vector<const std::byte*> dram_slots, hbm_slots;
    std::vector<int32_t> dram_ids, hbm_ids;
    for (size_t i = 0; i < present; ++i) {
      if (const HbmBlockRef ref = lease->hbm(i); ref.valid() && segments != nullptr) {
        absl::StatusOr<std::byte*> base = segments->Base(ref.segment);
        if (base.ok()) {
          results[i] = BlockResult::kPending;
          hbm.copied.push_back(i);
          hbm_ids.push_back(kv.block_ids[i]);
          hbm_slots.push_back(*base + ref.offset);
          continue;
        }
        if (lease->block(i).empty()) {
          // Held only in HBM and its segment cannot be opened here: stop asking for HBM and
          // read everything through DRAM (the daemon copies such blocks down for that read).
          DisableHbm(segments, base.status());
          lease.reset();
          return LoadKv(ns, keys, kv, stream, out);
        }
      }
      std::span<const std::byte> slot = lease->block(i);
      if (slot.size() != ns.block_bytes) {
        return Status(Status::Code::kInternal,
                      absl::StrCat("LoadKv: slot of ", slot.size(), " bytes for ", ns.block_bytes));
      }
      results[i] = BlockResult::kPending;
      dram.copied.push_back(i);
      dram_ids.push_back(kv.block_ids[i]);
      dram_slots.push_back(slot.data());
    }
    // Enqueue both; a group that fails to enqueue is waited out (part of it may be in flight)
    // and its blocks fail: never reported loaded half-written.
    absl::Status dram_s = copier_->Scatter(dram_slots, dram_ids, desc, stream, &dram.fences);
    absl::Status hbm_s = hbm_slots.empty() ? absl::OkStatus()
                                           : copier_->ScatterFromDevice(hbm_slots, hbm_ids, desc,
                                                                        stream, &hbm.fences);
    if (!dram_s.ok() || !hbm_s.ok()) {
      (void)copier_->Synchronize(stream);  // no DMA still reading the slots the release frees
      if (hbm_slots.empty() || (!dram_s.ok() && !hbm_s.ok())) {
        return FromAbsl(dram_s.ok() ? hbm_s : dram_s);
      }
      if (!dram_s.ok()) dram.status = FromAbsl(dram_s);
      if (!hbm_s.ok()) hbm.status = FromAbsl(hbm_s);
    }
    std::vector<CopyGroup> groups;
    groups.push_back(std::move(dram));
    if (!hbm_slots.empty()) groups.push_back(std::move(hbm));
    *out =
        std::make_unique<Transfer>(std::move(results), std::move(groups),
                                   static_cast<size_t>(kv.num_layers), nullptr, std::move(lease));
    return Status();
  }

 private:
  // The HBM tier's segments for this client's daemon, when this backend can read them: cuda
  // reads a cuda pool device-to-device, cpu reads a cpu pool's shared memory. Null: DRAM only.
  std::shared_ptr<client_internal::HbmSegments> Segments() {
    HbmTierInfo info;
    if (!client_->HbmTier(&info).ok() || !info.present || info.backend != copier_->name()) {
      return nullptr;
    }
    absl::MutexLock lock(&mu_);
    if (disabled_generation_ == info.generation) return nullptr;
    if (segments_ == nullptr || segments_->info().generation != info.generation) {
      segments_ = std::make_shared<client_internal::HbmSegments>(info);
    }
    return segments_;
  }

  void DisableHbm(const std::shared_ptr<client_internal::HbmSegments>& segments,
                  const absl::Status& why) {
    absl::MutexLock lock(&mu_);
    disabled_generation_ = segments->info().generation;
    disabled_reason_ = std::string(why.message());
    std::fprintf(stderr, "kvtier: HBM tier not readable here (%s); loading through DRAM\n",
                 disabled_reason_.c_str());
  }

  Client* client_;
  std::unique_ptr<kc::GpuCopier> copier_;
  absl::Mutex mu_;
  std::shared_ptr<client_internal::HbmSegments> segments_ ABSL_GUARDED_BY(mu_);
  uint64_t disabled_generation_ ABSL_GUARDED_BY(mu_) = 0;
  std::string disabled_reason_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

uint64_t PagedKV::StagingBlockBytes() const {
  std::vector<std::byte*> bases;
  return static_cast<uint64_t>(kc::StagingBlockBytes(ToCuda(*this, bases)));
}

void PagedKV::FillCompactStrides() {
  std::vector<std::byte*> bases;
  kc::PagedKv desc = ToCuda(*this, bases);
  kc::SetCompactStrides(desc);
  block_stride_bytes = desc.block_stride_bytes;
  kv_stride_bytes = desc.kv_stride_bytes;
  layer_stride_bytes = desc.layer_stride_bytes;
}

Status GpuKv::Create(Client* client, GpuBackend backend, std::unique_ptr<GpuKv>* out) {
  if (client == nullptr || out == nullptr) return Invalid("GpuKv::Create: null client or out");
  std::unique_ptr<kc::GpuCopier> copier;
  switch (backend) {
    case GpuBackend::kAuto:
      copier = kc::MakeGpuCopier();
      break;
    case GpuBackend::kCpu:
      copier = kc::MakeCpuCopier();
      break;
    case GpuBackend::kCuda: {
      absl::StatusOr<std::unique_ptr<kc::GpuCopier>> cuda = kc::MakeCudaCopier();
      if (!cuda.ok()) return FromAbsl(cuda.status());
      copier = *std::move(cuda);
      break;
    }
    default:
      return Invalid("GpuKv::Create: unknown backend");
  }
  *out = std::make_unique<GpuKvImpl>(client, std::move(copier));
  return Status();
}

}  // namespace kvtier
