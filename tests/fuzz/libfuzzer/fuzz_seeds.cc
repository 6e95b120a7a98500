// Writes the seed corpora of the libFuzzer targets: valid messages of each request type (and a
// valid NVMe region), so fuzzing starts from requests that reach the store, not from bytes that
// fail at the first field. Run at build time: fuzz_seeds OUT_DIR makes OUT_DIR/<target>/seed-<n>.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/block_key.h"
#include "common/namespace_layout.h"
#include "kvtier/v1/kvtier.pb.h"
#include "kvtier/v1/peer.pb.h"
#include "server/nvme/nvme_format.h"
#include "tests/fuzz/libfuzzer/service_harness.h"

namespace kvtier::fuzz {
namespace {

std::filesystem::path out_dir;

void Write(const std::string& target, const std::vector<std::string>& seeds) {
  const std::filesystem::path dir = out_dir / target;
  std::filesystem::create_directories(dir);
  for (size_t i = 0; i < seeds.size(); ++i) {
    std::ofstream(dir / ("seed-" + std::to_string(i)), std::ios::binary) << seeds[i];
  }
}

template <typename... Messages>
std::vector<std::string> Serialize(const Messages&... m) {
  return {m.SerializeAsString()...};
}

std::string Keys(uint64_t from, uint64_t n) {
  std::string s;
  for (uint64_t i = 0; i < n; ++i) AppendKey(Key128{from + i, 7}, &s);
  return s;
}

void PeerHeader(v1::PeerHeader* h) {
  h->set_roster_version(kRosterVersion);
  h->set_from_id("peer-a");
}

std::string NvmeRegion(bool torn_tail) {
  // Flags 0 (the checksums are right already), then the first bytes of each page.
  using nvme::kPage;
  constexpr uint64_t kPages = 16;
  std::vector<std::string> pages(kPages, std::string(sizeof(nvme::RecordHeader), '\0'));
  nvme::RegionHeader rh;
  rh.seq = 5;
  rh.region_bytes = kPages * kPage;
  rh.checksum = nvme::HeaderChecksum(rh);
  std::memcpy(pages[0].data(), &rh, sizeof(rh));
  uint64_t at = kPage;
  for (uint64_t bytes : {4096ULL, 10000ULL, 100ULL}) {
    nvme::RecordHeader h;
    h.region_seq = 5;
    h.ns = 42;
    h.key_lo = at;
    h.key_hi = 7;
    h.bytes = bytes;
    h.payload_checksum = 1234;
    h.checksum = nvme::HeaderChecksum(h);
    if (torn_tail && bytes == 100) h.checksum ^= 1;
    std::memcpy(pages[at / kPage].data(), &h, sizeof(h));
    at += nvme::RecordBytes(bytes);
  }
  std::string out(1, '\0');
  for (const std::string& p : pages) out += p;
  return out;
}

void WriteAll() {
  const uint64_t ns = LayoutId(*NormalizeLayout(BaselineLayout()));

  Write("fieldless", {std::string("\0", 1), "\x01", "\x02", "\x03"});

  v1::RegisterNamespaceRequest opaque, shaped;
  opaque.mutable_layout()->set_model_id("fuzz-model");
  opaque.mutable_layout()->set_block_bytes(kBlockBytes);
  auto* l = shaped.mutable_layout();
  l->set_model_id("llama");
  l->set_model_revision("r1");
  l->set_num_layers(4);
  l->set_kv_heads(2);
  l->set_head_size(64);
  l->set_dtype("bf16");
  l->set_tokens_per_block(16);
  l->set_tp_size(2);
  l->set_tp_rank(1);
  l->set_layout_tag("flash");
  Write("register_namespace", Serialize(opaque, shaped));

  v1::LookupRequest lookup_hit, lookup_partial;
  lookup_hit.set_namespace_id(ns);
  lookup_hit.set_keys(Keys(0, 24));
  lookup_partial.set_namespace_id(ns);
  lookup_partial.set_keys(Keys(20, 8));
  Write("lookup_prefix", Serialize(lookup_hit, lookup_partial));

  v1::AllocateRequest fresh, present, chained;
  fresh.set_namespace_id(ns);
  fresh.set_keys(Keys(200, 4));
  present.set_namespace_id(ns);
  present.set_keys(Keys(0, 4));
  chained.set_namespace_id(ns);
  chained.set_keys(Keys(300, 2));
  chained.set_parent_key(Keys(23, 1));
  chained.set_lease_ms(500);
  Write("allocate", Serialize(fresh, present, chained));

  v1::CommitRequest commit_all, commit_some;
  commit_all.set_lease_id(1);  // alias of the harness's open write lease
  commit_some.set_lease_id(1);
  commit_some.set_keys(Keys(100, 2));
  commit_some.add_checksums(99);
  commit_some.add_checksums(0);
  Write("commit", Serialize(commit_all, commit_some));

  v1::AcquireRequest acquire, acquire_partial;
  acquire.set_namespace_id(ns);
  acquire.set_keys(Keys(0, 10));
  acquire_partial.set_namespace_id(ns);
  acquire_partial.set_keys(Keys(22, 4));
  acquire_partial.set_lease_ms(100);
  Write("acquire", Serialize(acquire, acquire_partial));

  v1::PrefetchRequest prefetch;
  prefetch.set_namespace_id(ns);
  prefetch.set_keys(Keys(0, 6));
  Write("prefetch", Serialize(prefetch));

  v1::ReleaseRequest release;
  release.add_lease_ids(1);
  release.add_lease_ids(2);
  release.add_lease_ids(12345);
  Write("release", Serialize(release));

  v1::DropRequest drop_some, drop_all;
  drop_some.set_namespace_id(ns);
  drop_some.set_keys(Keys(4, 6));  // 4..7 are pinned (busy), 8..9 go
  drop_all.set_namespace_id(ns);
  drop_all.set_all(true);
  Write("drop", Serialize(drop_some, drop_all));

  v1::ListBlocksRequest list_all, list_ns;
  list_ns.set_namespace_id(ns);
  list_ns.set_tier(v1::TIER_DRAM);
  list_ns.set_limit(5);
  Write("list_blocks", Serialize(list_all, list_ns));

  v1::HelloRequest hello;
  PeerHeader(hello.mutable_header());
  hello.set_incarnation(1234);
  Write("hello", Serialize(hello));

  v1::UpdateDirectoryRequest update;
  PeerHeader(update.mutable_header());
  auto* gained = update.add_gained();
  gained->set_namespace_id(ns);
  gained->set_keys(Keys(500, 3));
  auto* lost = update.add_lost();
  lost->set_namespace_id(ns);
  lost->set_keys(Keys(501, 1));
  Write("update_directory", Serialize(update));

  v1::LookupDirectoryRequest lookup_dir;
  PeerHeader(lookup_dir.mutable_header());
  lookup_dir.set_namespace_id(ns);
  lookup_dir.set_keys(Keys(0, 5));
  Write("lookup_directory", Serialize(lookup_dir));

  v1::PinRequest pin;
  PeerHeader(pin.mutable_header());
  pin.set_namespace_id(ns);
  pin.set_keys(Keys(0, 4));
  pin.set_lease_ms(1000);
  Write("pin", Serialize(pin));

  v1::UnpinRequest unpin;
  PeerHeader(unpin.mutable_header());
  unpin.add_lease_ids(2);
  unpin.add_lease_ids(777);
  Write("unpin", Serialize(unpin));

  Write("nvme_format", {NvmeRegion(false), NvmeRegion(true)});
}

}  // namespace
}  // namespace kvtier::fuzz

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: fuzz_seeds OUT_DIR\n");
    return 2;
  }
  kvtier::fuzz::out_dir = argv[1];
  kvtier::fuzz::WriteAll();
  return 0;
}
