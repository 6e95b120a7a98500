// The soak mode of kvtier-test-peer: random saves, loads, lookups, zero-copy reads and writes and
// drops against one daemon for a bounded time, checking every byte it reads.
//
// Every block's bytes are a function of its key (tests/support/soak_keys.h), so a process can
// check blocks that any other process saved, on any daemon of a cluster. The keys are chains of
// kSoakSoakChainBlocks blocks, the same for every worker.
//
// What fails the run (exit code, and a line on stderr naming the key):
//   10  a load or a zero-copy read returned bytes other than the key's;
//   11  a call failed with a code a healthy daemon never gives to a valid request (anything but
//       RESOURCE_EXHAUSTED when the cache is full, and UNAVAILABLE, DEADLINE_EXCEEDED or an
//       unknown namespace while a daemon is being restarted, which are counted as transient);
//   12  an answer inconsistent with its request (a longer prefix than the keys asked for).
// At the end it prints one line: "soak-result ops=... saves=... loads=... ..." (counts).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kvtier/client.h"
#include "tests/support/soak_keys.h"

namespace kvtier::testing {
namespace {

struct Counts {
  uint64_t ops = 0, saves = 0, saved_blocks = 0, loads = 0, loaded_blocks = 0, lookups = 0,
           drops = 0, reads = 0, read_blocks = 0, writes = 0, aborts = 0, full = 0, transient = 0,
           reregistered = 0,
           recovered = 0;  // successful ops after the first transient error
};

class Worker {
 public:
  Worker(std::string socket, uint64_t block_bytes, uint64_t chains, uint64_t seed)
      : socket_(std::move(socket)), block_bytes_(block_bytes), chains_(chains), rng_(seed) {}

  int Run(std::chrono::steady_clock::time_point deadline) {
    ClientOptions options;
    options.socket_path = socket_;
    options.timeout_ms = 3000;
    // A loaded machine may not let the first connect through: retry until the deadline.
    for (;;) {
      Status s = Client::Connect(options, &client_);
      if (s.ok()) break;
      if (Tolerate(s, "connect") != 0 || std::chrono::steady_clock::now() >= deadline) {
        std::fprintf(stderr, "soak: connect: %s\n", s.ToString().c_str());
        return 3;
      }
    }
    while (std::chrono::steady_clock::now() < deadline) {
      if (!registered_ && !Register()) continue;
      const uint64_t chain = rng_() % chains_;
      const size_t n = 1 + rng_() % kSoakChainBlocks;
      std::vector<BlockKey> keys;
      for (size_t i = 0; i < n; ++i) keys.push_back(SoakKey(chain, i));
      const uint32_t op = rng_() % 100;
      const uint64_t transient_before = c_.transient;
      int rc = 0;
      if (op < 30) {
        rc = Save(keys);
      } else if (op < 55) {
        rc = Load(keys);
      } else if (op < 70) {
        rc = Lookup(keys);
      } else if (op < 82) {
        rc = ZeroCopyRead(keys);
      } else if (op < 92) {
        rc = ZeroCopyWrite(keys);
      } else {
        rc = Drop(keys);
      }
      if (rc != 0) return rc;
      ++c_.ops;
      if (c_.transient > 0 && c_.transient == transient_before) ++c_.recovered;
    }
    std::printf(
        "soak-result ops=%llu saves=%llu saved_blocks=%llu loads=%llu loaded_blocks=%llu "
        "lookups=%llu reads=%llu read_blocks=%llu writes=%llu aborts=%llu drops=%llu full=%llu "
        "transient=%llu reregistered=%llu recovered=%llu mismatches=0\n",
        U(c_.ops), U(c_.saves), U(c_.saved_blocks), U(c_.loads), U(c_.loaded_blocks), U(c_.lookups),
        U(c_.reads), U(c_.read_blocks), U(c_.writes), U(c_.aborts), U(c_.drops), U(c_.full),
        U(c_.transient), U(c_.reregistered), U(c_.recovered));
    std::fflush(stdout);
    return 0;
  }

 private:
  static unsigned long long U(uint64_t v) { return v; }

  bool Register() {
    NamespaceLayout layout;
    layout.model_id = "soak";
    layout.block_bytes = block_bytes_;
    Status s = client_->RegisterNamespace(layout, &ns_);
    if (s.ok()) {
      registered_ = true;
      return true;
    }
    return Tolerate(s, "register") == 0;
  }

  // 0 when `s` is acceptable (counted), else the exit code.
  int Tolerate(const Status& s, const char* what) {
    using C = Status::Code;
    switch (s.code()) {
      case C::kOk:
        return 0;
      case C::kResourceExhausted:
        ++c_.full;
        return 0;
      case C::kUnavailable:
      case C::kDeadlineExceeded:
        if (c_.transient++ == 0) {
          std::fprintf(stderr, "soak: first transient error (%s): %s\n", what,
                       s.ToString().c_str());
        }
        return 0;
      case C::kNotFound:
        // A restarted daemon forgot the namespace (and every lease): register again.
        if (s.message().find("namespace") != std::string::npos) {
          registered_ = false;
          ++c_.reregistered;
          return 0;
        }
        // A lease ended by the daemon's restart.
        if (s.message().find("lease") != std::string::npos) {
          ++c_.transient;
          return 0;
        }
        break;
      default:
        break;
    }
    std::fprintf(stderr, "soak: %s failed: %s\n", what, s.ToString().c_str());
    return 11;
  }

  int Mismatch(const char* what, const BlockKey& key, long at) {
    std::fprintf(stderr, "soak: %s of key %016llx%016llx returned wrong bytes (first at %ld)\n",
                 what, U(key.hi), U(key.lo), at);
    return 10;
  }

  int Save(const std::vector<BlockKey>& keys) {
    std::vector<std::vector<std::byte>> data(keys.size(), std::vector<std::byte>(block_bytes_));
    std::vector<const void*> src;
    for (size_t i = 0; i < keys.size(); ++i) {
      FillSoakBytes(keys[i], data[i].data(), block_bytes_);
      src.push_back(data[i].data());
    }
    size_t saved = 0;
    Status s = client_->Save(ns_, keys, src, &saved);
    ++c_.saves;
    c_.saved_blocks += saved;
    return Tolerate(s, "save");
  }

  int Load(const std::vector<BlockKey>& keys) {
    std::vector<std::vector<std::byte>> out(keys.size(), std::vector<std::byte>(block_bytes_));
    std::vector<void*> dst;
    for (auto& o : out) dst.push_back(o.data());
    size_t loaded = 0;
    Status s = client_->Load(ns_, keys, dst, &loaded);
    ++c_.loads;
    if (int rc = Tolerate(s, "load"); rc != 0 || !s.ok()) return rc;
    if (loaded > keys.size()) return 12;
    for (size_t i = 0; i < loaded; ++i) {
      if (long at = FirstWrongSoakByte(keys[i], out[i].data(), block_bytes_); at >= 0) {
        return Mismatch("load", keys[i], at);
      }
    }
    c_.loaded_blocks += loaded;
    return 0;
  }

  int Lookup(const std::vector<BlockKey>& keys) {
    LookupResult r;
    Status s = client_->Lookup(ns_.id, keys, &r);
    ++c_.lookups;
    if (int rc = Tolerate(s, "lookup"); rc != 0 || !s.ok()) return rc;
    if (r.prefix_blocks > keys.size() || r.tiers.size() != r.prefix_blocks) {
      std::fprintf(stderr, "soak: lookup of %zu keys answered a prefix of %zu with %zu tiers\n",
                   keys.size(), r.prefix_blocks, r.tiers.size());
      return 12;
    }
    return 0;
  }

  int ZeroCopyRead(const std::vector<BlockKey>& keys) {
    std::unique_ptr<ReadLease> lease;
    Status s = client_->AcquireRead(ns_, keys, &lease);
    ++c_.reads;
    if (int rc = Tolerate(s, "acquire"); rc != 0 || !s.ok()) return rc;
    for (size_t i = 0; i < lease->size(); ++i) {
      std::span<const std::byte> b = lease->block(i);
      if (b.size() != block_bytes_) return Mismatch("acquire (size)", keys[i], 0);
      if (long at = FirstWrongSoakByte(keys[i], b.data(), b.size()); at >= 0) {
        return Mismatch("acquire", keys[i], at);
      }
    }
    c_.read_blocks += lease->size();
    return Tolerate(lease->Release(), "release");
  }

  int ZeroCopyWrite(const std::vector<BlockKey>& keys) {
    std::unique_ptr<WriteLease> lease;
    Status s = client_->BeginWrite(ns_, keys, {}, &lease);
    ++c_.writes;
    if (int rc = Tolerate(s, "begin write"); rc != 0 || !s.ok()) return rc;
    for (size_t i = 0; i < lease->size(); ++i) {
      std::span<std::byte> slot = lease->block(i);
      if (!slot.empty()) FillSoakBytes(keys[i], slot.data(), slot.size());
    }
    // One in four is abandoned: its reserved slots must come back.
    if (rng_() % 4 == 0) {
      ++c_.aborts;
      return Tolerate(lease->Abort(), "abort");
    }
    return Tolerate(lease->Commit(), "commit");
  }

  int Drop(const std::vector<BlockKey>& keys) {
    // The chain's tail only: its head stays for the others to find.
    std::vector<BlockKey> tail(keys.begin() + static_cast<long>(keys.size() / 2), keys.end());
    DropResult r;
    Status s = client_->Drop(ns_.id, tail, &r);
    ++c_.drops;
    return Tolerate(s, "drop");
  }

  std::string socket_;
  uint64_t block_bytes_;
  uint64_t chains_;
  std::mt19937_64 rng_;
  std::unique_ptr<Client> client_;
  Namespace ns_;
  bool registered_ = false;
  Counts c_;
};

}  // namespace

// kvtier-test-peer soak SOCKET BLOCK_BYTES SECONDS SEED CHAINS
int RunSoak(int argc, char** argv) {
  if (argc != 7) {
    std::fprintf(stderr, "usage: kvtier-test-peer soak SOCKET BLOCK_BYTES SECONDS SEED CHAINS\n");
    return 2;
  }
  const uint64_t block_bytes = std::strtoull(argv[3], nullptr, 10);
  const double seconds = std::strtod(argv[4], nullptr);
  const uint64_t seed = std::strtoull(argv[5], nullptr, 10);
  const uint64_t chains = std::strtoull(argv[6], nullptr, 10);
  if (block_bytes == 0 || chains == 0 || seconds <= 0 || seconds > 600) return 2;
  std::printf("soak-started\n");
  std::fflush(stdout);
  Worker worker(argv[2], block_bytes, chains, seed);
  return worker.Run(std::chrono::steady_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000)));
}

}  // namespace kvtier::testing
