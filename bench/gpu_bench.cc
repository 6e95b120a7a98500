#include "bench/gpu_bench.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <random>

#include "absl/strings/str_cat.h"
#include "common/size.h"
#include "cuda/gather_scatter.h"
#include "kvtier/gpu.h"

#ifdef KVTIER_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace kvtier::bench {

bool GpuBenchHasDevice() { return cuda::DeviceCount() > 0; }

#ifndef KVTIER_HAVE_CUDA

absl::StatusOr<std::vector<Result>> RunGpuBench(const GpuBenchOptions&) {
  return absl::FailedPreconditionError("gpu: built without CUDA");
}

#else

namespace {

absl::Status Check(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorString(e)));
}

#define KVTIER_CUDA_RETURN(expr)                                     \
  do {                                                               \
    if (absl::Status s_ = Check((expr), #expr); !s_.ok()) return s_; \
  } while (0)

// Device allocations freed on scope exit (reverse order).
struct DeviceBuffers {
  std::vector<void*> ptrs;
  ~DeviceBuffers() {
    for (auto it = ptrs.rbegin(); it != ptrs.rend(); ++it) (void)cudaFree(*it);
  }
  absl::StatusOr<std::byte*> Alloc(size_t bytes) {
    void* p = nullptr;
    if (absl::Status s = Check(cudaMalloc(&p, bytes), "cudaMalloc"); !s.ok()) return s;
    ptrs.push_back(p);
    return static_cast<std::byte*>(p);
  }
};

}  // namespace

absl::StatusOr<std::vector<Result>> RunGpuBench(const GpuBenchOptions& o) {
  if (o.blocks <= 0 || o.rounds <= 0) {
    return absl::InvalidArgumentError("--blocks and --rounds must be > 0");
  }
  PagedKV kv;
  kv.layout = KvLayout::kFlash;
  kv.num_layers = 32;
  kv.num_blocks = o.blocks;
  kv.block_size = 16;
  kv.kv_heads = 8;
  kv.head_size = 128;
  kv.element_bytes = 2;
  kv.FillCompactStrides();
  const uint64_t block_bytes = kv.StagingBlockBytes();
  const uint64_t total = block_bytes * static_cast<uint64_t>(o.blocks);
  const size_t tensor_bytes = static_cast<size_t>(2 * kv.kv_stride_bytes);

  const uint64_t capacity = total * static_cast<uint64_t>(o.rounds) + (64ULL << 20);
  auto daemon = StartConnected({"--dram-capacity", std::to_string(capacity), "--log-level", "warn"},
                               "kvtier-bench-gpu", block_bytes, /*timeout_ms=*/30'000, o.socket);
  if (!daemon.ok()) return daemon.status();
  std::unique_ptr<Client>& client = daemon->client;
  const Namespace ns = daemon->ns;
  std::unique_ptr<GpuKv> gpu;
  if (Status s = GpuKv::Create(client.get(), GpuBackend::kCuda, &gpu); !s.ok()) return ToAbsl(s);

  cudaStream_t stream = nullptr;
  KVTIER_CUDA_RETURN(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  struct StreamGuard {
    cudaStream_t s;
    ~StreamGuard() { (void)cudaStreamDestroy(s); }
  } stream_guard{stream};

  // Source and destination caches (one tensor per layer), random source bytes.
  DeviceBuffers device;
  std::vector<std::byte> host_tensor(tensor_bytes);
  PagedKV src = kv, dst = kv;
  for (int l = 0; l < kv.num_layers; ++l) {
    auto s = device.Alloc(tensor_bytes);
    auto d = device.Alloc(tensor_bytes);
    if (!s.ok()) return s.status();
    if (!d.ok()) return d.status();
    FillRandom(host_tensor.data(), tensor_bytes, 1000 + l);
    KVTIER_CUDA_RETURN(cudaMemcpy(*s, host_tensor.data(), tensor_bytes, cudaMemcpyHostToDevice));
    src.layer_bases.push_back(*s);
    dst.layer_bases.push_back(*d);
  }
  std::vector<int32_t> ids(static_cast<size_t>(o.blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::mt19937_64 rng(7);
  std::shuffle(ids.begin(), ids.end(), rng);
  src.block_ids = ids;
  std::shuffle(ids.begin(), ids.end(), rng);
  dst.block_ids = ids;

  // Baseline: the same bytes, one cudaMemcpy each way, device buffer ⇄ pinned host buffer.
  auto flat = device.Alloc(total);
  if (!flat.ok()) return flat.status();
  void* pinned = nullptr;
  KVTIER_CUDA_RETURN(cudaMallocHost(&pinned, total));
  struct PinnedGuard {
    void* p;
    ~PinnedGuard() { (void)cudaFreeHost(p); }
  } pinned_guard{pinned};

  std::printf(
      "gpu: %d blocks of %s (%s) per call, flash layout 32x[2,%d,16,8,128] bf16, %d rounds, "
      "backend %s\n",
      o.blocks, FormatBytes(block_bytes).c_str(), FormatBytes(total).c_str(), o.blocks, o.rounds,
      gpu->backend());
  std::vector<double> save_s, load_s, d2h_s, h2d_s;
  for (int round = 0; round < o.rounds; ++round) {
    std::vector<int32_t> tokens(static_cast<size_t>(o.blocks) * 16);
    for (auto& t : tokens) t = static_cast<int32_t>(rng() % 100000);
    const std::vector<BlockKey> keys = PrefixHasher(ns.id, 16).HashTokens(tokens);

    auto t0 = Now();
    KVTIER_CUDA_RETURN(cudaMemcpy(pinned, *flat, total, cudaMemcpyDeviceToHost));
    d2h_s.push_back(Seconds(Now() - t0));
    t0 = Now();
    KVTIER_CUDA_RETURN(cudaMemcpy(*flat, pinned, total, cudaMemcpyHostToDevice));
    h2d_s.push_back(Seconds(Now() - t0));

    std::unique_ptr<KvTransfer> transfer;
    t0 = Now();
    if (Status s = gpu->SaveKv(ns, keys, src, stream, &transfer); !s.ok()) return ToAbsl(s);
    if (Status s = transfer->Wait(); !s.ok()) return ToAbsl(s);
    save_s.push_back(Seconds(Now() - t0));
    t0 = Now();
    if (Status s = gpu->LoadKv(ns, keys, dst, stream, &transfer); !s.ok()) return ToAbsl(s);
    for (size_t l = 0; l < transfer->num_layers(); ++l) {
      if (Status s = transfer->WaitLayer(l); !s.ok()) return ToAbsl(s);
    }
    if (Status s = transfer->Wait(); !s.ok()) return ToAbsl(s);
    load_s.push_back(Seconds(Now() - t0));
    for (BlockResult r : transfer->results()) {
      if (r != BlockResult::kDone) return absl::InternalError("gpu: a block did not load");
    }
  }

  // Check: piece (layer, src id i, k) == piece (layer, dst id i, k) for every block.
  const size_t piece = static_cast<size_t>(kv.block_stride_bytes);
  std::vector<std::byte> a(tensor_bytes), b(tensor_bytes);
  for (int l = 0; l < kv.num_layers; ++l) {
    KVTIER_CUDA_RETURN(
        cudaMemcpy(a.data(), src.layer_bases[l], tensor_bytes, cudaMemcpyDeviceToHost));
    KVTIER_CUDA_RETURN(
        cudaMemcpy(b.data(), dst.layer_bases[l], tensor_bytes, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < ids.size(); ++i) {
      for (size_t k = 0; k < 2; ++k) {
        const size_t sa = k * kv.kv_stride_bytes + src.block_ids[i] * piece;
        const size_t sb = k * kv.kv_stride_bytes + dst.block_ids[i] * piece;
        if (std::memcmp(a.data() + sa, b.data() + sb, piece) != 0) {
          return absl::DataLossError(absl::StrCat("gpu: layer ", l, " block ", i, " differs"));
        }
      }
    }
  }

  const double gb = static_cast<double>(total) / 1e9;
  std::vector<std::pair<std::string, std::string>> params = {{"blocks", std::to_string(o.blocks)},
                                                             {"block", FormatBytes(block_bytes)},
                                                             {"layout", "flash"}};
  Result save{"gpu_save",         params, gb / Median(save_s), "cudamemcpy_d2h_gbps",
              gb / Median(d2h_s), 0};
  save.ratio = save.ours / save.baseline;
  Result load{"gpu_load",         params, gb / Median(load_s), "cudamemcpy_h2d_gbps",
              gb / Median(h2d_s), 0};
  load.ratio = load.ours / load.baseline;
  return std::vector<Result>{save, load};
}

#endif  // KVTIER_HAVE_CUDA

}  // namespace kvtier::bench
