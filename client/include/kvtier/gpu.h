// kvtier GPU save/load: moves KV blocks between an engine's paged KV cache (on a CUDA device, or
// in host memory) and the daemon's shared DRAM arena, gathering/scattering the engine's layout to
// and from kvtier's staging block format on the way. Built on Client's zero-copy leases
// (BeginWrite/AcquireRead): the bytes go device ⇄ arena slot directly (the arena mapping is
// pinned once per process), never through an extra host buffer.
//
// The pattern it serves is vLLM's KV connector: LoadKv returns once the copies are enqueued and
// the engine calls WaitLayer(i) before layer i's attention (wait_for_layer_load); SaveKv enqueues
// after the forward pass on the same stream and Wait() commits (wait_for_save).
//
// Backends: "cuda" when the library was built with CUDA and a device is present, else "cpu"
// (the "device" pointers are host pointers and the copies finish before SaveKv/LoadKv return; the
// handle API is the same).
//
// Self-contained: only the standard library (and kvtier/client.h).
//
// Thread-safety: a GpuKv may be used from many threads; a KvTransfer belongs to one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "kvtier/client.h"

namespace kvtier {

// KV-cache layouts; the same numbers and meaning as kvtier::cuda::KvLayout (cuda/kv_layout.h,
// where they are documented with their shapes and strides).
enum class KvLayout : int32_t {
  kFlash = 0,       // per layer [2, num_blocks, block_size, kv_heads, head_size]
  kFlashInfer = 1,  // per layer [num_blocks, 2, block_size, kv_heads, head_size]
  kMla = 2,         // per layer [num_blocks, block_size, head_size], kv_heads = 1
  kContiguous = 3,  // one tensor [num_blocks, num_layers, 2, block_size, kv_heads, head_size]
};

// An engine's paged KV cache and which of its blocks the keys of one call name. Does not own
// memory; everything must stay valid until the transfer's Wait() returns.
struct PagedKV {
  KvLayout layout = KvLayout::kFlash;
  // Each layer's tensor (device pointers with the cuda backend, host with cpu): num_layers
  // entries, or exactly one for kContiguous.
  std::vector<void*> layer_bases;
  int32_t num_layers = 0;
  int32_t num_blocks = 0;     // blocks per layer tensor
  int32_t block_size = 0;     // tokens per block
  int32_t kv_heads = 0;       // 1 for kMla
  int32_t head_size = 0;      // elements per head
  int32_t element_bytes = 0;  // 2 for bf16/fp16
  // Strides in BYTES between blocks, between K and V, between layers (kContiguous only; else 0).
  // FillCompactStrides() sets them for tensors of exactly the shapes above.
  int64_t block_stride_bytes = 0;
  int64_t kv_stride_bytes = 0;
  int64_t layer_stride_bytes = 0;
  // block_ids[i] is the cache block of keys[i]; unique within a LoadKv.
  std::vector<int32_t> block_ids;

  // Staging block bytes: num_layers * (1 for kMla, else 2) * block_size * kv_heads * head_size *
  // element_bytes. The namespace's block_bytes must equal it.
  uint64_t StagingBlockBytes() const;
  void FillCompactStrides();
};

// What happened to one key's block.
enum class BlockResult : uint8_t {
  kPending = 0,  // the transfer has not finished (Wait() not called yet)
  kDone = 1,     // saved into the cache / loaded into the engine's block
  kSkipped = 2,  // save: already cached, nothing written; load: not cached (a miss), untouched
  kFailed = 3,   // the copy failed: recompute (load) or it is not cached (save)
};

// An in-flight SaveKv or LoadKv. Destroying it waits for the copies (and commits a save whose
// copies all succeeded, like Wait()).
class KvTransfer {
 public:
  virtual ~KvTransfer() = default;
  virtual size_t num_layers() const = 0;
  // Blocks until layer `layer` of every block is copied: loaded into the engine's cache (load) or
  // read out of it (save: the engine may overwrite that layer). Errors as Wait().
  virtual Status WaitLayer(size_t layer) = 0;
  // Blocks until every copy finished; then a save commits (or aborts on a copy error) and a load
  // releases its pins. Idempotent. On a copy error every block the transfer was writing reports
  // kFailed: none is reported kDone half-written.
  virtual Status Wait() = 0;
  // One result per key. Final after Wait(); before it, blocks being copied read kPending.
  virtual std::span<const BlockResult> results() const = 0;
};

enum class GpuBackend : int { kAuto = 0, kCpu = 1, kCuda = 2 };

class GpuKv {
 public:
  // `client` must outlive the GpuKv and its transfers. kAuto: cuda when a device is present,
  // else cpu; kCuda without a device fails with FAILED_PRECONDITION "no device".
  static Status Create(Client* client, GpuBackend backend, std::unique_ptr<GpuKv>* out);
  virtual ~GpuKv() = default;

  // "cuda" or "cpu".
  virtual const char* backend() const = 0;

  // Saves kv.block_ids[i] under keys[i] (already cached keys are skipped). The gather is enqueued
  // on `stream` (a cudaStream_t, nullptr = default stream; ignored by cpu), after the engine's
  // work already there. *out is set on success; the save is committed by out->Wait().
  virtual Status SaveKv(const Namespace& ns, std::span<const BlockKey> keys, const PagedKV& kv,
                        void* stream, std::unique_ptr<KvTransfer>* out, BlockKey parent = {}) = 0;
  // Loads the longest cached prefix of keys into kv.block_ids[0..prefix); the rest report
  // kSkipped and their blocks are not touched. Returns once enqueued.
  virtual Status LoadKv(const Namespace& ns, std::span<const BlockKey> keys, const PagedKV& kv,
                        void* stream, std::unique_ptr<KvTransfer>* out) = 0;
};

}  // namespace kvtier
