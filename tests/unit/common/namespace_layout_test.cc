#include "common/namespace_layout.h"

#include <gtest/gtest.h>

namespace kvtier {
namespace {

NamespaceLayout Llama() {
  NamespaceLayout l;
  l.model_id = "meta-llama/Llama-3.1-8B";
  l.num_layers = 32;
  l.kv_heads = 8;
  l.head_size = 128;
  l.dtype = "bf16";
  l.tokens_per_block = 16;
  return l;
}

TEST(NamespaceLayoutTest, ComputesBlockBytesPerLayoutTag) {
  auto flash = NormalizeLayout(Llama());
  ASSERT_TRUE(flash.ok()) << flash.status();
  EXPECT_EQ(flash->layout_tag, "flash");
  EXPECT_EQ(flash->block_bytes, 32u * 2 * 16 * 8 * 128 * 2);  // 2 MiB
  NamespaceLayout mla = Llama();
  mla.layout_tag = "mla";
  EXPECT_EQ(NormalizeLayout(mla)->block_bytes, 32u * 16 * 8 * 128 * 2);
}

TEST(NamespaceLayoutTest, IdIsStableAndSeparatesLayouts) {
  auto a = *NormalizeLayout(Llama());
  EXPECT_EQ(LayoutId(a), LayoutId(*NormalizeLayout(Llama())));
  NamespaceLayout other = Llama();
  other.tp_size = 2;
  other.tp_rank = 1;
  EXPECT_NE(LayoutId(a), LayoutId(*NormalizeLayout(other)));
  NamespaceLayout rev = Llama();
  rev.model_revision = "v2";
  EXPECT_NE(LayoutId(a), LayoutId(*NormalizeLayout(rev)));
}

TEST(NamespaceLayoutTest, OpaqueLayoutsTakeASizeOnly) {
  NamespaceLayout l;
  l.model_id = "bench";
  l.block_bytes = 1 << 20;
  auto n = NormalizeLayout(l);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->layout_tag, "opaque");
  EXPECT_EQ(n->block_bytes, 1u << 20);
}

TEST(NamespaceLayoutTest, ErrorsNameTheField) {
  struct Case {
    std::function<void(NamespaceLayout&)> mutate;
    std::string field;
  };
  std::vector<Case> cases = {
      {[](NamespaceLayout& l) { l.model_id.clear(); }, "layout.model_id"},
      {[](NamespaceLayout& l) { l.model_id = "llama\xff"; }, "layout.model_id"},
      {[](NamespaceLayout& l) { l.model_revision = "\xc0\xaf"; }, "layout.model_revision"},
      {[](NamespaceLayout& l) { l.dtype = "fp64"; }, "layout.dtype"},
      {[](NamespaceLayout& l) { l.num_layers = 0; }, "layout.num_layers"},
      {[](NamespaceLayout& l) { l.tp_rank = 3; }, "layout.tp_rank"},
      {[](NamespaceLayout& l) { l.layout_tag = "weird"; }, "layout.layout_tag"},
      {[](NamespaceLayout& l) { l.block_bytes = 12345; }, "layout.block_bytes"},
      {[](NamespaceLayout& l) { l.head_size = 1u << 30; }, "layout:"},
  };
  for (const Case& c : cases) {
    NamespaceLayout l = Llama();
    c.mutate(l);
    auto r = NormalizeLayout(l);
    ASSERT_FALSE(r.ok()) << c.field;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(c.field), std::string::npos) << r.status();
  }
}

}  // namespace
}  // namespace kvtier
