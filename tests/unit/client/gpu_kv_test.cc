// GpuKv (kvtier/gpu.h) with the CPU backend against FakeDaemon: host "device" caches in every
// layout, random data fresh per run, outputs poisoned first, odd block counts, non-contiguous
// block ids, save → load bit-exact, partial hits reported per block with untouched blocks intact.
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "fake_daemon.h"
#include "gtest/gtest.h"
#include "kvtier/client.h"
#include "kvtier/gpu.h"
#include "temp_dir.h"

namespace kvtier {
namespace {

constexpr uint64_t kArenaBytes = 8 << 20;
constexpr unsigned char kPoison = 0xA5;

// A host KV cache of one layout, with padding between blocks (never to be written).
struct HostCache {
  PagedKV kv;
  std::vector<std::vector<unsigned char>> tensors;

  HostCache(KvLayout layout, int32_t num_blocks, bool padded) {
    kv.layout = layout;
    kv.num_layers = 3;
    kv.num_blocks = num_blocks;
    kv.block_size = 4;
    kv.kv_heads = layout == KvLayout::kMla ? 1 : 2;
    kv.head_size = 8;
    kv.element_bytes = 2;
    kv.FillCompactStrides();
    const int64_t pad = padded ? 64 : 0;
    const int64_t piece = Piece();
    // Padding: blocks further apart; for kFlash also K and V halves further apart.
    switch (layout) {
      case KvLayout::kFlash:
        kv.block_stride_bytes = piece + pad;
        kv.kv_stride_bytes = num_blocks * kv.block_stride_bytes + pad;
        break;
      case KvLayout::kFlashInfer:
        kv.kv_stride_bytes = piece + pad;
        kv.block_stride_bytes = 2 * kv.kv_stride_bytes + pad;
        break;
      case KvLayout::kMla:
        kv.block_stride_bytes = piece + pad;
        break;
      case KvLayout::kContiguous:
        kv.kv_stride_bytes = piece + pad;
        kv.layer_stride_bytes = 2 * kv.kv_stride_bytes;
        kv.block_stride_bytes = kv.num_layers * kv.layer_stride_bytes + pad;
        break;
    }
    const int64_t bytes =
        layout == KvLayout::kFlash ? 2 * kv.kv_stride_bytes : num_blocks * kv.block_stride_bytes;
    const int tensors_needed = layout == KvLayout::kContiguous ? 1 : kv.num_layers;
    tensors.assign(tensors_needed, std::vector<unsigned char>(bytes, kPoison));
    for (auto& t : tensors) kv.layer_bases.push_back(t.data());
  }

  int64_t Piece() const {
    return static_cast<int64_t>(kv.block_size) * kv.kv_heads * kv.head_size * kv.element_bytes;
  }
  int Pieces() const { return kv.layout == KvLayout::kMla ? 1 : 2; }

  // The naive reference: address of piece (layer, block, k) from the documented formula.
  unsigned char* PieceAt(int32_t layer, int32_t block, int32_t k) {
    if (kv.layout == KvLayout::kContiguous) {
      return tensors[0].data() + block * kv.block_stride_bytes + layer * kv.layer_stride_bytes +
             k * kv.kv_stride_bytes;
    }
    return tensors[layer].data() + block * kv.block_stride_bytes + k * kv.kv_stride_bytes;
  }

  void FillRandom(std::mt19937_64& rng) {
    for (auto& t : tensors) {
      for (auto& b : t) b = static_cast<unsigned char>(rng());
    }
  }

  // The block's pieces in staging order.
  std::vector<unsigned char> Block(int32_t block) {
    std::vector<unsigned char> out;
    for (int32_t l = 0; l < kv.num_layers; ++l) {
      for (int32_t k = 0; k < Pieces(); ++k) {
        unsigned char* p = PieceAt(l, block, k);
        out.insert(out.end(), p, p + Piece());
      }
    }
    return out;
  }

  // Whether every byte of the block's pieces is the poison (never written).
  bool Untouched(int32_t block) {
    for (unsigned char b : Block(block)) {
      if (b != kPoison) return false;
    }
    return true;
  }

  // Bytes outside every piece of every block (padding) are still poison.
  bool PaddingUntouched() {
    std::vector<std::vector<bool>> in_piece(tensors.size());
    for (size_t t = 0; t < tensors.size(); ++t) in_piece[t].assign(tensors[t].size(), false);
    for (int32_t l = 0; l < kv.num_layers; ++l) {
      const size_t t = kv.layout == KvLayout::kContiguous ? 0 : l;
      for (int32_t b = 0; b < kv.num_blocks; ++b) {
        for (int32_t k = 0; k < Pieces(); ++k) {
          const size_t off = PieceAt(l, b, k) - tensors[t].data();
          for (int64_t i = 0; i < Piece(); ++i) in_piece[t][off + i] = true;
        }
      }
    }
    for (size_t t = 0; t < tensors.size(); ++t) {
      for (size_t i = 0; i < tensors[t].size(); ++i) {
        if (!in_piece[t][i] && tensors[t][i] != kPoison) return false;
      }
    }
    return true;
  }
};

struct Param {
  KvLayout layout;
  bool padded;
};

std::string ParamName(const ::testing::TestParamInfo<Param>& info) {
  static const char* kNames[] = {"Flash", "FlashInfer", "Mla", "Contiguous"};
  return std::string(kNames[static_cast<int>(info.param.layout)]) +
         (info.param.padded ? "Padded" : "Compact");
}

class GpuKvTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    daemon_ = testing::FakeDaemon::Start(socket_, kArenaBytes, 1);
    ASSERT_NE(daemon_, nullptr);
    ClientOptions options;
    options.socket_path = socket_;
    options.timeout_ms = 2000;
    Status s = Client::Connect(options, &client_);
    ASSERT_TRUE(s.ok()) << s.ToString();
    s = GpuKv::Create(client_.get(), GpuBackend::kCpu, &gpu_);
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_STREQ(gpu_->backend(), "cpu");

    const uint64_t seed = std::random_device{}();
    SCOPED_TRACE(seed);
    rng_.seed(seed);
    NamespaceLayout layout;
    layout.model_id = "gpu-kv-test";
    layout.layout_tag = "opaque";
    layout.block_bytes = HostCache(GetParam().layout, 1, false).kv.StagingBlockBytes();
    s = client_->RegisterNamespace(layout, &ns_);
    ASSERT_TRUE(s.ok()) << s.ToString();
    std::vector<int32_t> tokens(4 * 5);
    for (auto& t : tokens) t = static_cast<int32_t>(rng_() % 50000);
    keys_ = PrefixHasher(ns_.id, 4).HashTokens(tokens);
    ASSERT_EQ(keys_.size(), 5u);
  }

  HostCache Cache(int32_t num_blocks = 11) {
    return HostCache(GetParam().layout, num_blocks, GetParam().padded);
  }

  testing::TempDir dir_;
  std::string socket_ = dir_.File("kvtier.sock");
  std::unique_ptr<testing::FakeDaemon> daemon_;
  std::unique_ptr<Client> client_;
  std::unique_ptr<GpuKv> gpu_;
  Namespace ns_;
  std::vector<BlockKey> keys_;
  std::mt19937_64 rng_;
};

TEST_P(GpuKvTest, SaveThenLoadIsBitExactPerLayer) {
  HostCache src = Cache();
  src.FillRandom(rng_);
  src.kv.block_ids = {7, 2, 9, 0, 5};  // odd count, not contiguous, not sorted
  std::unique_ptr<KvTransfer> save;
  Status s = gpu_->SaveKv(ns_, keys_, src.kv, nullptr, &save);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_EQ(save->num_layers(), 3u);
  for (size_t l = 0; l < save->num_layers(); ++l) ASSERT_TRUE(save->WaitLayer(l).ok());
  s = save->Wait();
  ASSERT_TRUE(s.ok()) << s.ToString();
  for (BlockResult r : save->results()) EXPECT_EQ(r, BlockResult::kDone);

  HostCache dst = Cache(13);
  dst.kv.block_ids = {1, 12, 3, 6, 10};
  std::unique_ptr<KvTransfer> load;
  s = gpu_->LoadKv(ns_, keys_, dst.kv, nullptr, &load);
  ASSERT_TRUE(s.ok()) << s.ToString();
  for (size_t l = 0; l < load->num_layers(); ++l) ASSERT_TRUE(load->WaitLayer(l).ok());
  ASSERT_TRUE(load->Wait().ok());
  EXPECT_FALSE(load->WaitLayer(3).ok());  // out of range
  for (size_t i = 0; i < keys_.size(); ++i) {
    EXPECT_EQ(load->results()[i], BlockResult::kDone) << i;
    EXPECT_EQ(dst.Block(dst.kv.block_ids[i]), src.Block(src.kv.block_ids[i])) << "key " << i;
  }
  for (int32_t b : {0, 2, 4, 5, 7, 8, 9, 11}) EXPECT_TRUE(dst.Untouched(b)) << "block " << b;
  EXPECT_TRUE(dst.PaddingUntouched());
  EXPECT_EQ(daemon_->leases(), 0u);
}

TEST_P(GpuKvTest, PartialHitLoadsThePrefixAndLeavesTheRest) {
  HostCache src = Cache();
  src.FillRandom(rng_);
  src.kv.block_ids = {4, 1};
  std::unique_ptr<KvTransfer> save;
  Status s = gpu_->SaveKv(ns_, std::span(keys_).first(2), src.kv, nullptr, &save);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(save->Wait().ok());

  HostCache dst = Cache();
  dst.kv.block_ids = {10, 3, 8, 0, 6};
  std::unique_ptr<KvTransfer> load;
  s = gpu_->LoadKv(ns_, keys_, dst.kv, nullptr, &load);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(load->Wait().ok());
  const std::vector<BlockResult> want = {BlockResult::kDone, BlockResult::kDone,
                                         BlockResult::kSkipped, BlockResult::kSkipped,
                                         BlockResult::kSkipped};
  ASSERT_EQ(std::vector<BlockResult>(load->results().begin(), load->results().end()), want);
  EXPECT_EQ(dst.Block(10), src.Block(4));
  EXPECT_EQ(dst.Block(3), src.Block(1));
  for (int32_t b = 0; b < dst.kv.num_blocks; ++b) {
    if (b != 10 && b != 3) {
      EXPECT_TRUE(dst.Untouched(b)) << "block " << b;
    }
  }
  EXPECT_TRUE(dst.PaddingUntouched());
}

TEST_P(GpuKvTest, SavingCachedKeysSkipsThem) {
  HostCache src = Cache();
  src.FillRandom(rng_);
  src.kv.block_ids = {3, 3, 5, 6, 0};  // a save may read one block twice
  std::unique_ptr<KvTransfer> save;
  ASSERT_TRUE(gpu_->SaveKv(ns_, std::span(keys_).first(3), {}, nullptr, &save).code() ==
              Status::Code::kInvalidArgument);  // empty description
  src.kv.block_ids.resize(3);
  ASSERT_TRUE(gpu_->SaveKv(ns_, std::span(keys_).first(3), src.kv, nullptr, &save).ok());
  ASSERT_TRUE(save->Wait().ok());
  src.kv.block_ids = {3, 3, 5, 6, 0};
  ASSERT_TRUE(gpu_->SaveKv(ns_, keys_, src.kv, nullptr, &save).ok());
  ASSERT_TRUE(save->Wait().ok());
  const std::vector<BlockResult> want = {BlockResult::kSkipped, BlockResult::kSkipped,
                                         BlockResult::kSkipped, BlockResult::kDone,
                                         BlockResult::kDone};
  EXPECT_EQ(std::vector<BlockResult>(save->results().begin(), save->results().end()), want);
}

TEST_P(GpuKvTest, RejectsBadRequestsBeforeTouchingAnything) {
  HostCache dst = Cache();
  std::unique_ptr<KvTransfer> load;
  dst.kv.block_ids = {1, 2, 1, 4, 5};  // a load may not write one block twice
  EXPECT_EQ(gpu_->LoadKv(ns_, keys_, dst.kv, nullptr, &load).code(),
            Status::Code::kInvalidArgument);
  dst.kv.block_ids = {1, 2, 3};  // fewer ids than keys
  EXPECT_EQ(gpu_->LoadKv(ns_, keys_, dst.kv, nullptr, &load).code(),
            Status::Code::kInvalidArgument);
  dst.kv.block_ids = {1, 2, 3, 4, 11};  // out of range
  EXPECT_EQ(gpu_->LoadKv(ns_, keys_, dst.kv, nullptr, &load).code(),
            Status::Code::kInvalidArgument);
  dst.kv.block_ids = {1, 2, 3, 4, 5};
  dst.kv.head_size *= 2;  // staging block no longer the namespace's
  EXPECT_EQ(gpu_->LoadKv(ns_, keys_, dst.kv, nullptr, &load).code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(load, nullptr);
  dst.kv.head_size /= 2;
  for (int32_t b = 0; b < dst.kv.num_blocks; ++b) EXPECT_TRUE(dst.Untouched(b));
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, GpuKvTest,
    ::testing::Values(Param{KvLayout::kFlash, false}, Param{KvLayout::kFlash, true},
                      Param{KvLayout::kFlashInfer, false}, Param{KvLayout::kFlashInfer, true},
                      Param{KvLayout::kMla, false}, Param{KvLayout::kMla, true},
                      Param{KvLayout::kContiguous, false}, Param{KvLayout::kContiguous, true}),
    ParamName);

}  // namespace
}  // namespace kvtier
