#include "bench/dram_bench.h"

#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <cstring>
#include <random>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/size.h"
#include "kvtier/v1/kvtier.grpc.pb.h"

namespace kvtier::bench {
namespace {

std::vector<BlockKey> FreshKeys(size_t n, std::mt19937_64& rng) {
  std::vector<BlockKey> keys(n);
  for (BlockKey& k : keys) k = {rng(), rng()};
  return keys;
}

// Lookup of 1024 present keys against a plain unary call on the same socket (the gRPC floor),
// interleaved. Returns {lookup p50 us, lookup p99 us, echo p50 us}.
absl::StatusOr<std::array<double, 3>> MeasureLookup(Client& client, const std::string& socket,
                                                    int iterations, std::mt19937_64& rng) {
  constexpr size_t kKeys = 1024;
  NamespaceLayout layout;
  layout.model_id = "kvtier-bench-lookup";
  layout.block_bytes = 4096;
  Namespace ns;
  if (Status s = client.RegisterNamespace(layout, &ns); !s.ok()) return ToAbsl(s);
  auto keys = FreshKeys(kKeys, rng);
  std::vector<std::byte> block(4096);
  std::vector<const void*> src(kKeys, block.data());
  if (Status s = client.Save(ns, keys, src); !s.ok()) return ToAbsl(s);

  auto channel = grpc::CreateChannel("unix:" + socket, grpc::InsecureChannelCredentials());
  auto stub = v1::KvTier::NewStub(channel);
  std::vector<double> lookup_us, echo_us;
  for (int i = 0; i < iterations; ++i) {
    auto t0 = Now();
    LookupResult result;
    if (Status s = client.Lookup(ns.id, keys, &result); !s.ok()) return ToAbsl(s);
    auto t1 = Now();
    if (result.prefix_blocks != kKeys) return absl::InternalError("lookup missed saved keys");
    grpc::ClientContext ctx;
    v1::ArenaInfoRequest req;
    v1::ArenaInfoResponse resp;
    if (!stub->GetArenaInfo(&ctx, req, &resp).ok()) return absl::InternalError("echo failed");
    auto t2 = Now();
    if (i >= iterations / 10) {  // the first tenth warms up
      lookup_us.push_back(Seconds(t1 - t0) * 1e6);
      echo_us.push_back(Seconds(t2 - t1) * 1e6);
    }
  }
  DropResult dropped;
  (void)client.DropAll(ns.id, &dropped);
  return std::array<double, 3>{Percentile(lookup_us, 50), Percentile(lookup_us, 99),
                               Percentile(echo_us, 50)};
}

}  // namespace

absl::StatusOr<std::vector<Result>> RunDramBench(const DramBenchOptions& o) {
  if (o.block_bytes == 0 || o.blocks == 0 || o.batch == 0 || o.rounds <= 0) {
    return absl::InvalidArgumentError("--block-size, --blocks, --batch and --rounds must be > 0");
  }
  const uint64_t slot = (o.block_bytes + 4095) / 4096 * 4096;
  const uint64_t capacity = o.blocks * slot + (64ULL << 20);
  auto daemon = StartConnected({"--dram-capacity", std::to_string(capacity), "--log-level", "warn"},
                               "kvtier-bench-dram", o.block_bytes, /*timeout_ms=*/30'000, o.socket);
  if (!daemon.ok()) return daemon.status();
  std::unique_ptr<Client>& client = daemon->client;
  const Namespace ns = daemon->ns;
  const Target* target = &daemon->target;

  const uint64_t total = o.blocks * o.block_bytes;
  std::printf("dram: %llu blocks of %s (%s), batch %u, %d rounds, daemon %s\n",
              static_cast<unsigned long long>(o.blocks), FormatBytes(o.block_bytes).c_str(),
              FormatBytes(total).c_str(), o.batch, o.rounds,
              o.socket.empty() ? "started here" : o.socket.c_str());
  std::vector<std::byte> src(total), dst(total);
  FillRandom(src.data(), total, 42);
  Touch(dst);
  std::vector<const void*> src_ptrs(o.blocks);
  std::vector<void*> dst_ptrs(o.blocks);
  for (uint64_t i = 0; i < o.blocks; ++i) {
    src_ptrs[i] = src.data() + i * o.block_bytes;
    dst_ptrs[i] = dst.data() + i * o.block_bytes;
  }

  std::mt19937_64 rng(std::random_device{}());
  std::vector<double> ratios, ours_gbps, memcpy_gbps, save_gbps, load_gbps;
  for (int round = 0; round < o.rounds; ++round) {
    // Baseline: one single-thread memcpy of the same bytes, in blocks.
    auto b0 = Now();
    for (uint64_t i = 0; i < o.blocks; ++i) {
      std::memcpy(dst_ptrs[i], src_ptrs[i], o.block_bytes);
    }
    const double base = static_cast<double>(total) / Seconds(Now() - b0) / 1e9;
    std::memset(dst.data(), 0xA5, total);  // poison: a load that copies nothing fails the check

    // Ours: save every block, then load every block, `batch` keys per call.
    auto keys = FreshKeys(o.blocks, rng);
    auto t0 = Now();
    for (uint64_t i = 0; i < o.blocks; i += o.batch) {
      const size_t n = std::min<uint64_t>(o.batch, o.blocks - i);
      size_t saved = 0;
      Status s = client->Save(ns, {keys.data() + i, n}, {src_ptrs.data() + i, n}, &saved,
                              i == 0 ? BlockKey{} : keys[i - 1]);
      if (!s.ok()) return ToAbsl(s);
      if (saved != n) return absl::InternalError("save wrote fewer blocks than asked");
    }
    auto t1 = Now();
    for (uint64_t i = 0; i < o.blocks; i += o.batch) {
      const size_t n = std::min<uint64_t>(o.batch, o.blocks - i);
      size_t loaded = 0;
      Status s = client->Load(ns, {keys.data() + i, n}, {dst_ptrs.data() + i, n}, &loaded);
      if (!s.ok()) return ToAbsl(s);
      if (loaded != n) return absl::InternalError("load found fewer blocks than saved");
    }
    auto t2 = Now();
    if (std::memcmp(src.data(), dst.data(), total) != 0) {
      return absl::DataLossError("loaded bytes differ from saved bytes");
    }
    DropResult dropped;
    if (Status s = client->DropAll(ns.id, &dropped); !s.ok()) return ToAbsl(s);

    const double save = static_cast<double>(total) / Seconds(t1 - t0) / 1e9;
    const double load = static_cast<double>(total) / Seconds(t2 - t1) / 1e9;
    const double ours = 2.0 * static_cast<double>(total) / Seconds(t2 - t0) / 1e9;
    std::printf(
        "  round %d: memcpy %.2f GB/s | save %.2f GB/s, load %.2f GB/s, save+load %.2f "
        "GB/s = %.2fx memcpy (all bytes checked)\n",
        round + 1, base, save, load, ours, ours / base);
    ratios.push_back(ours / base);
    ours_gbps.push_back(ours);
    memcpy_gbps.push_back(base);
    save_gbps.push_back(save);
    load_gbps.push_back(load);
  }
  std::printf("dram: median save %.2f GB/s, load %.2f GB/s\n", Median(save_gbps),
              Median(load_gbps));

  auto lookup = MeasureLookup(*client, target->socket, o.lookups, rng);
  if (!lookup.ok()) return lookup.status();
  std::printf("lookup 1024 keys: p50 %.0f us, p99 %.0f us; plain gRPC call p50 %.0f us\n",
              (*lookup)[0], (*lookup)[1], (*lookup)[2]);

  std::vector<Result> results;
  results.push_back({"lookup",
                     {{"keys", "1024"},
                      {"unit", "us_p50"},
                      {"p99_us", absl::StrCat(static_cast<int>((*lookup)[1]))}},
                     (*lookup)[0],
                     "grpc_echo",
                     (*lookup)[2],
                     (*lookup)[2] / (*lookup)[0]});
  const std::string block = o.block_bytes % (1 << 20) == 0
                                ? absl::StrCat(o.block_bytes >> 20, "MiB")
                                : absl::StrCat(o.block_bytes >> 10, "KiB");
  results.push_back({"dram_save_load",
                     {{"block", block}},
                     Median(ours_gbps),
                     "memcpy",
                     Median(memcpy_gbps),
                     Median(ratios)});
  return results;
}

}  // namespace kvtier::bench
