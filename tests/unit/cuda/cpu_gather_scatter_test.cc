// GatherCpu/ScatterCpu against a naive element-by-element reference built from each layout's
// index formula, on random data (fresh per run; the seed is printed, KVTIER_TEST_SEED replays).
#include "cuda/cpu_gather_scatter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <iostream>
#include <random>
#include <string>
#include <tuple>
#include <vector>

namespace kvtier::cuda {
namespace {

using ::testing::HasSubstr;

constexpr std::byte kPoison{0xCD};
constexpr int64_t kGuardBytes = 64;

uint64_t TestSeed() {
  static const uint64_t seed = [] {
    const char* env = std::getenv("KVTIER_TEST_SEED");
    const uint64_t s = env != nullptr ? std::strtoull(env, nullptr, 10) : std::random_device{}();
    std::cout << "cuda_unit_test seed: " << s << " (replay with KVTIER_TEST_SEED=" << s << ")\n";
    return s;
  }();
  return seed;
}

// A paged cache in host memory with strides (in ELEMENTS, as a framework would report them)
// chosen by the test, optionally with padding between blocks, between K and V and between layers.
struct TestCache {
  KvLayout layout = KvLayout::kFlash;
  int32_t layers = 0, blocks = 0, block_size = 0, heads = 0, head_size = 0, elem = 0;
  int64_t block_stride_e = 0, kv_stride_e = 0, layer_stride_e = 0;  // elements
  std::vector<std::vector<std::byte>> buffers;  // one per layer, or one for kContiguous
  std::vector<std::byte*> bases;

  int64_t PieceElems() const { return int64_t{block_size} * heads * head_size; }
  int32_t Pieces() const { return layout == KvLayout::kMla ? 1 : 2; }

  // The layout's index formula, element by element: which buffer and which element.
  std::byte* Element(int32_t layer, int32_t kv, int32_t block, int32_t t, int32_t h, int32_t d) {
    const int64_t inner = (int64_t{t} * heads + h) * head_size + d;
    int64_t e = 0;
    switch (layout) {
      case KvLayout::kFlash:       // [2, blocks, bs, H, D]
      case KvLayout::kFlashInfer:  // [blocks, 2, bs, H, D]
        e = kv * kv_stride_e + block * block_stride_e + inner;
        break;
      case KvLayout::kMla:  // [blocks, bs, D]
        e = block * block_stride_e + inner;
        break;
      case KvLayout::kContiguous:  // [blocks, layers, 2, bs, H, D]
        e = block * block_stride_e + layer * layer_stride_e + kv * kv_stride_e + inner;
        return buffers[0].data() + e * elem;
    }
    return buffers[layer].data() + e * elem;
  }

  // Points `bases` at this object's own buffers.
  void Rebase() {
    bases.clear();
    for (auto& buffer : buffers) bases.push_back(buffer.data());
  }
  TestCache Copy() const {
    TestCache copy = *this;
    copy.Rebase();
    return copy;
  }

  PagedKv Describe() const {
    PagedKv kv;
    kv.layout = layout;
    kv.layer_bases = bases;
    kv.num_layers = layers;
    kv.num_blocks = blocks;
    kv.block_size = block_size;
    kv.kv_heads = heads;
    kv.head_size = head_size;
    kv.element_bytes = elem;
    kv.block_stride_bytes = block_stride_e * elem;
    kv.kv_stride_bytes = kv_stride_e * elem;
    kv.layer_stride_bytes = layer_stride_e * elem;
    return kv;
  }
};

TestCache MakeCache(KvLayout layout, int32_t elem, bool padded, std::mt19937_64& rng) {
  TestCache c;
  c.layout = layout;
  c.layers = 3;
  c.blocks = 9;
  c.block_size = 4;
  c.heads = layout == KvLayout::kMla ? 1 : 2;
  c.head_size = layout == KvLayout::kMla ? 24 : 8;
  c.elem = elem;
  const int64_t p = c.PieceElems();
  const int64_t block_pad = padded ? 5 : 0, kv_pad = padded ? 3 : 0, layer_pad = padded ? 7 : 0;
  int64_t buffer_elems = 0;
  switch (layout) {
    case KvLayout::kFlash:
      c.block_stride_e = p + block_pad;
      c.kv_stride_e = c.blocks * c.block_stride_e + kv_pad;
      buffer_elems = c.kv_stride_e + c.blocks * c.block_stride_e;
      break;
    case KvLayout::kFlashInfer:
      c.kv_stride_e = p + kv_pad;
      c.block_stride_e = c.kv_stride_e + p + block_pad;
      buffer_elems = c.blocks * c.block_stride_e;
      break;
    case KvLayout::kMla:
      c.block_stride_e = p + block_pad;
      buffer_elems = c.blocks * c.block_stride_e;
      break;
    case KvLayout::kContiguous:
      c.kv_stride_e = p + kv_pad;
      c.layer_stride_e = c.kv_stride_e + p + layer_pad;
      c.block_stride_e = c.layers * c.layer_stride_e + block_pad;
      buffer_elems = c.blocks * c.block_stride_e;
      break;
  }
  c.buffers.resize(layout == KvLayout::kContiguous ? 1 : c.layers);
  for (auto& buffer : c.buffers) {
    buffer.resize(buffer_elems * elem);
    for (auto& b : buffer) b = static_cast<std::byte>(rng());
  }
  c.Rebase();
  return c;
}

int64_t StagingElement(const TestCache& c, int64_t i, int32_t layer, int32_t kv, int32_t t,
                       int32_t h, int32_t d) {
  return (((i * c.layers + layer) * c.Pieces() + kv) * c.PieceElems() +
          (int64_t{t} * c.heads + h) * c.head_size + d) *
         c.elem;
}

// Calls fn(element in cache, element offset in staging) for every element of the named blocks.
template <typename Fn>
void ForEachElement(TestCache& c, const std::vector<int32_t>& ids, Fn fn) {
  for (size_t i = 0; i < ids.size(); ++i) {
    for (int32_t layer = 0; layer < c.layers; ++layer) {
      for (int32_t kv = 0; kv < c.Pieces(); ++kv) {
        for (int32_t t = 0; t < c.block_size; ++t) {
          for (int32_t h = 0; h < c.heads; ++h) {
            for (int32_t d = 0; d < c.head_size; ++d) {
              fn(c.Element(layer, kv, ids[i], t, h, d), StagingElement(c, i, layer, kv, t, h, d));
            }
          }
        }
      }
    }
  }
}

std::vector<std::byte> ReferenceGather(TestCache& c, const std::vector<int32_t>& ids) {
  std::vector<std::byte> out(ids.size() * c.layers * c.Pieces() * c.PieceElems() * c.elem, kPoison);
  ForEachElement(c, ids, [&](std::byte* e, int64_t s) { std::memcpy(&out[s], e, c.elem); });
  return out;
}

void ReferenceScatter(const std::vector<std::byte>& staging, const std::vector<int32_t>& ids,
                      TestCache& c) {
  ForEachElement(c, ids, [&](std::byte* e, int64_t s) { std::memcpy(e, &staging[s], c.elem); });
}

using Param = std::tuple<KvLayout, int32_t /*element_bytes*/, bool /*padded*/>;

class GatherScatterCpuTest : public ::testing::TestWithParam<Param> {
 protected:
  GatherScatterCpuTest() : rng_(TestSeed() ^ std::hash<std::string>{}(Name())) {}

  static std::string Name() {
    return ::testing::UnitTest::GetInstance()->current_test_info()->name();
  }
  TestCache Make() {
    return MakeCache(std::get<0>(GetParam()), std::get<1>(GetParam()), std::get<2>(GetParam()),
                     rng_);
  }

  std::mt19937_64 rng_;
};

// Block counts 1, 3, 7; out of order, non-contiguous.
const std::vector<std::vector<int32_t>>& IdLists() {
  static const auto* lists =
      new std::vector<std::vector<int32_t>>{{5}, {5, 0, 3}, {8, 1, 6, 2, 7, 0, 4}};
  return *lists;
}

TEST_P(GatherScatterCpuTest, GatherMatchesReference) {
  TestCache cache = Make();
  const PagedKv kv = cache.Describe();
  for (const auto& ids : IdLists()) {
    SCOPED_TRACE(testing::PrintToString(ids));
    const int64_t bytes = static_cast<int64_t>(ids.size()) * StagingBlockBytes(kv);
    std::vector<std::byte> staging(bytes + kGuardBytes, kPoison);
    ASSERT_TRUE(GatherCpu(kv, ids, staging.data()).ok());
    std::vector<std::byte> want = ReferenceGather(cache, ids);
    ASSERT_EQ(static_cast<int64_t>(want.size()), bytes);
    want.resize(bytes + kGuardBytes, kPoison);  // the guard stays poisoned
    EXPECT_TRUE(staging == want);
  }
}

TEST_P(GatherScatterCpuTest, GatherAllowsRepeatedIds) {
  TestCache cache = Make();
  const std::vector<int32_t> ids = {2, 2, 7};
  std::vector<std::byte> staging(ids.size() * StagingBlockBytes(cache.Describe()), kPoison);
  ASSERT_TRUE(GatherCpu(cache.Describe(), ids, staging.data()).ok());
  EXPECT_TRUE(staging == ReferenceGather(cache, ids));
}

TEST_P(GatherScatterCpuTest, ScatterMatchesReference) {
  for (const auto& ids : IdLists()) {
    SCOPED_TRACE(testing::PrintToString(ids));
    TestCache got = Make();
    TestCache want = got.Copy();  // same random contents
    std::vector<std::byte> staging(ids.size() * StagingBlockBytes(got.Describe()));
    for (auto& b : staging) b = static_cast<std::byte>(rng_());
    ASSERT_TRUE(ScatterCpu(staging.data(), ids, got.Describe()).ok());
    ReferenceScatter(staging, ids, want);
    EXPECT_TRUE(got.buffers == want.buffers);
  }
}

TEST_P(GatherScatterCpuTest, ScatterOfGatherRoundTripsAndLeavesTheRestAlone) {
  TestCache src = Make();
  for (const auto& ids : IdLists()) {
    SCOPED_TRACE(testing::PrintToString(ids));
    TestCache dst = Make();  // different random contents, same shape and strides
    const auto dst_before = dst.buffers;
    std::vector<std::byte> staging(ids.size() * StagingBlockBytes(src.Describe()), kPoison);
    ASSERT_TRUE(GatherCpu(src.Describe(), ids, staging.data()).ok());
    ASSERT_TRUE(ScatterCpu(staging.data(), ids, dst.Describe()).ok());

    // Touched blocks equal the source, element by element.
    int64_t mismatches = 0;
    for (size_t i = 0; i < ids.size(); ++i) {
      for (int32_t layer = 0; layer < src.layers; ++layer) {
        for (int32_t kv = 0; kv < src.Pieces(); ++kv) {
          for (int32_t t = 0; t < src.block_size; ++t) {
            for (int32_t h = 0; h < src.heads; ++h) {
              for (int32_t d = 0; d < src.head_size; ++d) {
                mismatches += std::memcmp(src.Element(layer, kv, ids[i], t, h, d),
                                          dst.Element(layer, kv, ids[i], t, h, d), src.elem) != 0;
              }
            }
          }
        }
      }
    }
    EXPECT_EQ(mismatches, 0);

    // Every other byte of dst (other blocks, padding) is bit-identical to before.
    TestCache expected = dst.Copy();
    expected.buffers = dst_before;
    expected.Rebase();
    ReferenceScatter(staging, ids, expected);
    EXPECT_TRUE(dst.buffers == expected.buffers);
  }
}

class BadArgumentsTest : public ::testing::Test {
 protected:
  BadArgumentsTest() : rng_(TestSeed()), cache_(MakeCache(KvLayout::kFlash, 2, true, rng_)) {}

  // Both directions must reject `kv`, with a message containing `what`, and write nothing.
  void ExpectRejected(const PagedKv& kv, const std::vector<int32_t>& ids, const std::string& what) {
    const auto before = cache_.buffers;
    std::vector<std::byte> staging(64 << 10, kPoison);
    const absl::Status gather = GatherCpu(kv, ids, staging.data());
    EXPECT_EQ(gather.code(), absl::StatusCode::kInvalidArgument) << gather;
    EXPECT_THAT(std::string(gather.message()), HasSubstr(what));
    EXPECT_TRUE(staging == std::vector<std::byte>(64 << 10, kPoison));
    const absl::Status scatter = ScatterCpu(staging.data(), ids, kv);
    EXPECT_EQ(scatter.code(), absl::StatusCode::kInvalidArgument) << scatter;
    EXPECT_THAT(std::string(scatter.message()), HasSubstr(what));
    EXPECT_TRUE(cache_.buffers == before);
  }

  std::mt19937_64 rng_;
  TestCache cache_;
};

TEST_F(BadArgumentsTest, BlockIdOutOfRange) {
  ExpectRejected(cache_.Describe(), {0, 9}, "block_ids[1] = 9 is out of range [0, 9)");
  ExpectRejected(cache_.Describe(), {-1}, "block_ids[0] = -1");
}

TEST_F(BadArgumentsTest, NullPointers) {
  std::vector<std::byte> staging(StagingBlockBytes(cache_.Describe()));
  EXPECT_THAT(std::string(GatherCpu(cache_.Describe(), std::vector<int32_t>{1}, nullptr).message()),
              HasSubstr("staging is null"));
  EXPECT_THAT(
      std::string(ScatterCpu(nullptr, std::vector<int32_t>{1}, cache_.Describe()).message()),
      HasSubstr("staging is null"));
  cache_.bases[1] = nullptr;
  ExpectRejected(cache_.Describe(), {1}, "layer_bases[1] is null");
}

TEST_F(BadArgumentsTest, ZeroSizes) {
  const std::vector<std::pair<int32_t PagedKv::*, std::string>> fields = {
      {&PagedKv::num_layers, "num_layers"}, {&PagedKv::num_blocks, "num_blocks"},
      {&PagedKv::block_size, "block_size"}, {&PagedKv::kv_heads, "kv_heads"},
      {&PagedKv::head_size, "head_size"},   {&PagedKv::element_bytes, "element_bytes"}};
  for (const auto& [field, name] : fields) {
    PagedKv kv = cache_.Describe();
    kv.*field = 0;
    SCOPED_TRACE(name);
    ExpectRejected(kv, {1}, "PagedKv." + name + " = 0");
  }
}

TEST_F(BadArgumentsTest, WrongNumberOfBases) {
  PagedKv kv = cache_.Describe();
  kv.layer_bases = kv.layer_bases.first(2);
  ExpectRejected(kv, {1}, "layer_bases.size() = 2: must equal num_layers");
  kv = cache_.Describe();
  kv.layout = KvLayout::kContiguous;
  kv.layer_stride_bytes = kv.kv_stride_bytes;
  ExpectRejected(kv, {1}, "layer_bases.size() = 3: must be 1 for the contiguous layout");
}

TEST_F(BadArgumentsTest, StridesSmallerThanAPiece) {
  PagedKv kv = cache_.Describe();
  kv.block_stride_bytes = PieceBytes(kv) - 1;
  ExpectRejected(kv, {1}, "block_stride_bytes");
  kv = cache_.Describe();
  kv.kv_stride_bytes = 0;
  ExpectRejected(kv, {1}, "kv_stride_bytes");
  kv = cache_.Describe();
  kv.layer_stride_bytes = 8;
  ExpectRejected(kv, {1}, "layer_stride_bytes");
}

TEST_F(BadArgumentsTest, MlaNeedsOneHeadAndUnknownLayoutIsRejected) {
  PagedKv kv = cache_.Describe();
  kv.layout = KvLayout::kMla;
  kv.kv_stride_bytes = 0;
  ExpectRejected(kv, {1}, "kv_heads = 2: must be 1 for the mla layout");
  kv = cache_.Describe();
  kv.layout = static_cast<KvLayout>(7);
  ExpectRejected(kv, {1}, "layout = 7");
}

TEST_F(BadArgumentsTest, ScatterRejectsRepeatedIds) {
  const auto before = cache_.buffers;
  std::vector<std::byte> staging(3 * StagingBlockBytes(cache_.Describe()), kPoison);
  const absl::Status s =
      ScatterCpu(staging.data(), std::vector<int32_t>{4, 1, 4}, cache_.Describe());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("block_ids[2] = 4 repeats"));
  EXPECT_TRUE(cache_.buffers == before);
}

TEST_F(BadArgumentsTest, EmptyBlockListIsANoOp) {
  const auto before = cache_.buffers;
  EXPECT_TRUE(GatherCpu(cache_.Describe(), {}, nullptr).ok());
  EXPECT_TRUE(ScatterCpu(nullptr, {}, cache_.Describe()).ok());
  EXPECT_TRUE(cache_.buffers == before);
}

std::string ParamName(const testing::TestParamInfo<Param>& info) {
  return std::string(KvLayoutName(std::get<0>(info.param))) + "_e" +
         std::to_string(std::get<1>(info.param)) +
         (std::get<2>(info.param) ? "_padded" : "_compact");
}

INSTANTIATE_TEST_SUITE_P(AllLayouts, GatherScatterCpuTest,
                         testing::Combine(testing::Values(KvLayout::kFlash, KvLayout::kFlashInfer,
                                                          KvLayout::kMla, KvLayout::kContiguous),
                                          testing::Values(1, 2, 4), testing::Bool()),
                         ParamName);

}  // namespace
}  // namespace kvtier::cuda
