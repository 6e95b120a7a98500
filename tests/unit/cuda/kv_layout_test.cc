#include "cuda/kv_layout.h"

#include <gtest/gtest.h>

namespace kvtier::cuda {
namespace {

PagedKv Shape(KvLayout layout) {
  PagedKv kv;
  kv.layout = layout;
  kv.num_layers = 3;
  kv.num_blocks = 5;
  kv.block_size = 16;
  kv.kv_heads = layout == KvLayout::kMla ? 1 : 8;
  kv.head_size = 128;
  kv.element_bytes = 2;
  SetCompactStrides(kv);
  return kv;
}

TEST(KvLayoutTest, StagingBlockBytesIsLayersTimesPieces) {
  const int64_t piece = 16 * 8 * 128 * 2;
  EXPECT_EQ(PieceBytes(Shape(KvLayout::kFlash)), piece);
  EXPECT_EQ(StagingBlockBytes(Shape(KvLayout::kFlash)), 3 * 2 * piece);
  EXPECT_EQ(StagingBlockBytes(Shape(KvLayout::kFlashInfer)), 3 * 2 * piece);
  EXPECT_EQ(StagingBlockBytes(Shape(KvLayout::kContiguous)), 3 * 2 * piece);
  EXPECT_EQ(StagingBlockBytes(Shape(KvLayout::kMla)), 3 * 16 * 128 * 2);
}

TEST(KvLayoutTest, CompactStridesMatchTheDocumentedShapes) {
  const int64_t piece = 16 * 8 * 128 * 2;
  const PagedKv flash = Shape(KvLayout::kFlash);  // [2, num_blocks, ...]
  EXPECT_EQ(PieceOffset(flash, 2, 3, 1), 5 * piece + 3 * piece);
  const PagedKv infer = Shape(KvLayout::kFlashInfer);  // [num_blocks, 2, ...]
  EXPECT_EQ(PieceOffset(infer, 2, 3, 1), 3 * 2 * piece + piece);
  const PagedKv contiguous = Shape(KvLayout::kContiguous);  // [num_blocks, layers, 2, ...]
  EXPECT_EQ(PieceOffset(contiguous, 2, 3, 1), 3 * 3 * 2 * piece + 2 * 2 * piece + piece);
  const PagedKv mla = Shape(KvLayout::kMla);  // [num_blocks, block_size, head_size]
  EXPECT_EQ(PieceOffset(mla, 2, 3, 0), 3 * PieceBytes(mla));
}

TEST(KvLayoutTest, StagingPieceOffsetIsLayerMajorKThenV) {
  const PagedKv flash = Shape(KvLayout::kFlash);
  const int64_t piece = PieceBytes(flash);
  EXPECT_EQ(StagingPieceOffset(flash, 0, 0, 0), 0);
  EXPECT_EQ(StagingPieceOffset(flash, 0, 0, 1), piece);
  EXPECT_EQ(StagingPieceOffset(flash, 0, 1, 0), 2 * piece);
  EXPECT_EQ(StagingPieceOffset(flash, 2, 1, 1), 2 * StagingBlockBytes(flash) + 3 * piece);
}

TEST(KvLayoutTest, NamesAreStable) {
  EXPECT_STREQ(KvLayoutName(KvLayout::kFlash), "flash");
  EXPECT_STREQ(KvLayoutName(KvLayout::kFlashInfer), "flashinfer");
  EXPECT_STREQ(KvLayoutName(KvLayout::kMla), "mla");
  EXPECT_STREQ(KvLayoutName(KvLayout::kContiguous), "contiguous");
  EXPECT_STREQ(KvLayoutName(static_cast<KvLayout>(99)), "unknown");
}

}  // namespace
}  // namespace kvtier::cuda
