#include "common/namespace_layout.h"

#include <xxhash.h>

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kvtier {

uint32_t DtypeBytes(const std::string& dtype) {
  if (dtype == "fp32" || dtype == "float32") return 4;
  if (dtype == "bf16" || dtype == "fp16" || dtype == "float16" || dtype == "bfloat16") return 2;
  if (dtype == "fp8_e4m3" || dtype == "fp8_e5m2" || dtype == "fp8" || dtype == "int8" ||
      dtype == "uint8")
    return 1;
  return 0;
}

namespace {

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
bool IsUtf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    const unsigned char c = *p;
    int len;
    uint32_t cp;
    if (c < 0x80) {
      ++p;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (end - p < len) return false;
    for (int i = 1; i < len; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    p += len;
  }
  return true;
}

// A value quoted back in an error: escaped, and cut at 64 bytes.
std::string Quoted(const std::string& v) {
  return absl::CHexEscape(absl::string_view(v.data(), std::min<size_t>(v.size(), 64)));
}

}  // namespace

absl::StatusOr<NamespaceLayout> NormalizeLayout(const NamespaceLayout& in) {
  if (!IsUtf8(in.model_id)) return absl::InvalidArgumentError("layout.model_id: not valid UTF-8");
  if (!IsUtf8(in.model_revision)) {
    return absl::InvalidArgumentError("layout.model_revision: not valid UTF-8");
  }
  NamespaceLayout l = in;
  if (l.tp_size == 0) l.tp_size = 1;
  if (l.pp_size == 0) l.pp_size = 1;
  if (l.tp_rank >= l.tp_size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("layout.tp_rank: %d is not below tp_size %d", l.tp_rank, l.tp_size));
  }
  if (l.pp_rank >= l.pp_size) {
    return absl::InvalidArgumentError(
        absl::StrFormat("layout.pp_rank: %d is not below pp_size %d", l.pp_rank, l.pp_size));
  }
  if (l.model_id.empty()) return absl::InvalidArgumentError("layout.model_id: must not be empty");
  if (l.model_id.size() > 512) return absl::InvalidArgumentError("layout.model_id: over 512 bytes");
  if (l.model_revision.size() > 256) {
    return absl::InvalidArgumentError("layout.model_revision: over 256 bytes");
  }
  const bool has_shape =
      l.num_layers || l.kv_heads || l.head_size || l.tokens_per_block || !l.dtype.empty();
  if (l.layout_tag.empty()) l.layout_tag = has_shape ? "flash" : "opaque";
  if (l.layout_tag == "opaque") {
    if (has_shape) {
      return absl::InvalidArgumentError(
          "layout.layout_tag: 'opaque' takes block_bytes only, not a shape");
    }
    if (l.block_bytes == 0) {
      return absl::InvalidArgumentError("layout.block_bytes: an opaque layout needs a size");
    }
  } else {
    if (l.layout_tag != "flash" && l.layout_tag != "flashinfer" && l.layout_tag != "mla" &&
        l.layout_tag != "contiguous") {
      return absl::InvalidArgumentError(
          absl::StrCat("layout.layout_tag: '", Quoted(l.layout_tag),
                       "' is not one of flash, flashinfer, mla, contiguous, opaque"));
    }
    if (l.num_layers == 0) return absl::InvalidArgumentError("layout.num_layers: must be > 0");
    if (l.kv_heads == 0) return absl::InvalidArgumentError("layout.kv_heads: must be > 0");
    if (l.head_size == 0) return absl::InvalidArgumentError("layout.head_size: must be > 0");
    if (l.tokens_per_block == 0) {
      return absl::InvalidArgumentError("layout.tokens_per_block: must be > 0");
    }
    if (DtypeBytes(l.dtype) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("layout.dtype: '", Quoted(l.dtype),
                       "' is not one of bf16, fp16, fp32, fp8_e4m3, fp8_e5m2, int8"));
    }
    // Computed in 128 bits so a silly shape is an error, not a wrapped size.
    unsigned __int128 bytes = static_cast<unsigned __int128>(l.num_layers) *
                              (l.layout_tag == "mla" ? 1 : 2) * l.tokens_per_block * l.kv_heads *
                              l.head_size * DtypeBytes(l.dtype);
    if (bytes > kMaxBlockBytes) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "layout: a block of this shape is over the %d-byte limit", kMaxBlockBytes));
    }
    if (l.block_bytes != 0 && l.block_bytes != static_cast<uint64_t>(bytes)) {
      return absl::InvalidArgumentError(
          absl::StrFormat("layout.block_bytes: %d does not match the shape's %d bytes",
                          l.block_bytes, static_cast<uint64_t>(bytes)));
    }
    l.block_bytes = static_cast<uint64_t>(bytes);
  }
  if (l.block_bytes > kMaxBlockBytes) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "layout.block_bytes: %d is over the limit of %d", l.block_bytes, kMaxBlockBytes));
  }
  return l;
}

uint64_t LayoutBlockBytes(const NamespaceLayout& layout) { return layout.block_bytes; }

uint64_t LayoutId(const NamespaceLayout& l) {
  // Length-prefixed strings so no two layouts share an encoding.
  std::string canon = absl::StrCat(
      "kvtier-ns-v1|", l.model_id.size(), ":", l.model_id, "|", l.model_revision.size(), ":",
      l.model_revision, "|", l.num_layers, "|", l.kv_heads, "|", l.head_size, "|", l.dtype, "|",
      l.tokens_per_block, "|", l.tp_rank, "/", l.tp_size, "|", l.pp_rank, "/", l.pp_size, "|",
      l.layout_tag, "|", l.block_bytes);
  uint64_t id = XXH3_64bits(canon.data(), canon.size());
  return id == 0 ? 1 : id;
}

}  // namespace kvtier
