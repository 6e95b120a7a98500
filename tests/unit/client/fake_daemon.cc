#include "fake_daemon.h"

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "common/block_key.h"
#include "common/fd_passing.h"
#include "common/namespace_layout.h"
#include "grpcpp/grpcpp.h"
#include "kvtier/v1/kvtier.grpc.pb.h"

namespace kvtier::testing {
namespace {

constexpr uint64_t kExists = ~0ULL;
constexpr uint64_t kAlign = 4096;

struct Block {
  uint64_t offset = 0;
  uint64_t bytes = 0;
  bool ready = false;
  uint32_t readers = 0;
  uint64_t hits = 0;
};

struct Lease {
  bool write = false;
  uint64_t ns = 0;
  std::vector<Key128> keys;  // write: only the keys this lease allocated
};

struct NsInfo {
  NamespaceLayout layout;
  uint64_t block_bytes = 0;
};

grpc::Status Invalid(const std::string& m) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, m);
}

}  // namespace

class FakeDaemon::Impl final : public v1::KvTier::Service {
 public:
  Impl(std::string socket_path, uint64_t arena_bytes, uint64_t generation)
      : socket_path_(std::move(socket_path)), arena_bytes_(arena_bytes), generation_(generation) {}

  bool Start() {
    memfd_ = memfd_create("fake-kvtier-arena", MFD_CLOEXEC);
    if (memfd_ < 0 || ftruncate(memfd_, static_cast<off_t>(arena_bytes_)) != 0) return false;
    void* base = mmap(nullptr, arena_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, memfd_, 0);
    if (base == MAP_FAILED) return false;
    base_ = static_cast<unsigned char*>(base);

    ::unlink(socket_path_.c_str());
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + socket_path_, grpc::InsecureServerCredentials());
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
    if (server_ == nullptr) return false;

    const std::string fd_path = socket_path_ + ".arena";
    ::unlink(fd_path.c_str());
    listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, fd_path.c_str(), sizeof(addr.sun_path) - 1);
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        listen(listen_fd_, 16) != 0) {
      return false;
    }
    fd_thread_ = std::thread([this] { ServeArenaFd(); });
    return true;
  }

  ~Impl() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
    if (listen_fd_ >= 0) {
      ::shutdown(listen_fd_, SHUT_RDWR);
      if (fd_thread_.joinable()) fd_thread_.join();
      ::close(listen_fd_);
    }
    ::unlink(socket_path_.c_str());
    ::unlink((socket_path_ + ".arena").c_str());
    if (base_ != nullptr) munmap(base_, arena_bytes_);
    if (memfd_ >= 0) ::close(memfd_);
  }

  size_t leases() {
    std::lock_guard<std::mutex> lock(mu_);
    return leases_.size();
  }
  const unsigned char* arena() const { return base_; }

  grpc::Status GetArenaInfo(grpc::ServerContext*, const v1::ArenaInfoRequest*,
                            v1::ArenaInfoResponse* out) override {
    out->set_fd_socket_path(socket_path_ + ".arena");
    out->set_arena_bytes(arena_bytes_);
    out->set_generation(generation_);
    out->set_node_id("fake-node");
    out->set_version("0.0.0-fake");
    return grpc::Status::OK;
  }

  grpc::Status RegisterNamespace(grpc::ServerContext*, const v1::RegisterNamespaceRequest* in,
                                 v1::RegisterNamespaceResponse* out) override {
    const auto& p = in->layout();
    NamespaceLayout l{p.model_id(),   p.model_revision(), p.num_layers(),       p.kv_heads(),
                      p.head_size(),  p.dtype(),          p.tokens_per_block(), p.tp_rank(),
                      p.tp_size(),    p.pp_rank(),        p.pp_size(),          p.layout_tag(),
                      p.block_bytes()};
    auto normalized = NormalizeLayout(l);
    if (!normalized.ok()) return Invalid(std::string(normalized.status().message()));
    const uint64_t id = LayoutId(*normalized);
    std::lock_guard<std::mutex> lock(mu_);
    out->set_created(namespaces_.count(id) == 0);
    namespaces_[id] = NsInfo{*normalized, LayoutBlockBytes(*normalized)};
    out->set_namespace_id(id);
    out->set_block_bytes(namespaces_[id].block_bytes);
    return grpc::Status::OK;
  }

  grpc::Status ListNamespaces(grpc::ServerContext*, const v1::ListNamespacesRequest*,
                              v1::ListNamespacesResponse* out) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, info] : namespaces_) {
      auto* ns = out->add_namespaces();
      ns->set_namespace_id(id);
      ns->mutable_layout()->set_model_id(info.layout.model_id);
      ns->mutable_layout()->set_layout_tag(info.layout.layout_tag);
      ns->set_block_bytes(info.block_bytes);
      for (const auto& [k, b] : blocks_) {
        if (k.first != id) continue;
        ns->set_blocks(ns->blocks() + 1);
        ns->set_bytes(ns->bytes() + b.bytes);
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status LookupPrefix(grpc::ServerContext*, const v1::LookupRequest* in,
                            v1::LookupResponse* out) override {
    auto keys = DecodeKeys(in->keys(), "keys");
    if (!keys.ok()) return Invalid(std::string(keys.status().message()));
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& key : *keys) {
      auto it = blocks_.find({in->namespace_id(), key});
      if (it == blocks_.end() || !it->second.ready) break;
      out->set_prefix_blocks(out->prefix_blocks() + 1);
      out->add_tiers(v1::TIER_DRAM);
    }
    return grpc::Status::OK;
  }

  grpc::Status Allocate(grpc::ServerContext*, const v1::AllocateRequest* in,
                        v1::AllocateResponse* out) override {
    auto keys = DecodeKeys(in->keys(), "keys");
    if (!keys.ok()) return Invalid(std::string(keys.status().message()));
    std::lock_guard<std::mutex> lock(mu_);
    auto ns = namespaces_.find(in->namespace_id());
    if (ns == namespaces_.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "namespace");
    const uint64_t bytes = ns->second.block_bytes;
    Lease lease{true, in->namespace_id(), {}};
    for (const auto& key : *keys) {
      auto [it, inserted] = blocks_.try_emplace({in->namespace_id(), key});
      if (!inserted) {
        out->add_offsets(kExists);
        continue;
      }
      const uint64_t slot = (bytes + kAlign - 1) / kAlign * kAlign;
      if (next_ + slot > arena_bytes_) {
        blocks_.erase(it);
        for (const auto& k : lease.keys) blocks_.erase({in->namespace_id(), k});
        return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "dram: no free slot");
      }
      it->second = Block{next_, bytes, false, 0, 0};
      next_ += slot;
      out->add_offsets(it->second.offset);
      lease.keys.push_back(key);
    }
    const uint64_t id = next_lease_++;
    leases_[id] = std::move(lease);
    out->set_lease_id(id);
    out->set_block_bytes(bytes);
    return grpc::Status::OK;
  }

  grpc::Status Commit(grpc::ServerContext*, const v1::CommitRequest* in,
                      v1::CommitResponse* out) override {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = leases_.find(in->lease_id());
    if (it == leases_.end() || !it->second.write) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such write lease");
    }
    for (const auto& key : it->second.keys) blocks_[{it->second.ns, key}].ready = true;
    out->set_committed(static_cast<uint32_t>(it->second.keys.size()));
    leases_.erase(it);
    return grpc::Status::OK;
  }

  grpc::Status Acquire(grpc::ServerContext*, const v1::AcquireRequest* in,
                       v1::AcquireResponse* out) override {
    auto keys = DecodeKeys(in->keys(), "keys");
    if (!keys.ok()) return Invalid(std::string(keys.status().message()));
    std::lock_guard<std::mutex> lock(mu_);
    Lease lease{false, in->namespace_id(), {}};
    for (const auto& key : *keys) {
      auto it = blocks_.find({in->namespace_id(), key});
      if (it == blocks_.end() || !it->second.ready) break;
      ++it->second.readers;
      ++it->second.hits;
      out->add_offsets(it->second.offset);
      out->set_block_bytes(it->second.bytes);
      lease.keys.push_back(key);
    }
    if (!lease.keys.empty()) {
      const uint64_t id = next_lease_++;
      leases_[id] = std::move(lease);
      out->set_lease_id(id);
    }
    return grpc::Status::OK;
  }

  grpc::Status Release(grpc::ServerContext*, const v1::ReleaseRequest* in,
                       v1::ReleaseResponse* out) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (uint64_t id : in->lease_ids()) {
      auto it = leases_.find(id);
      if (it == leases_.end()) continue;
      for (const auto& key : it->second.keys) {
        auto b = blocks_.find({it->second.ns, key});
        if (b == blocks_.end()) continue;
        if (it->second.write) {
          blocks_.erase(b);  // abort: the slot is not reused by this fake
        } else {
          --b->second.readers;
        }
      }
      leases_.erase(it);
      out->set_released(out->released() + 1);
    }
    return grpc::Status::OK;
  }

  grpc::Status Drop(grpc::ServerContext*, const v1::DropRequest* in,
                    v1::DropResponse* out) override {
    auto keys = DecodeKeys(in->keys(), "keys");
    if (!keys.ok()) return Invalid(std::string(keys.status().message()));
    if (in->all() && !keys->empty()) return Invalid("drop: all with keys");
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Key128> targets = *keys;
    if (in->all()) {
      for (const auto& [k, b] : blocks_) {
        if (k.first == in->namespace_id()) targets.push_back(k.second);
      }
    }
    for (const auto& key : targets) {
      auto it = blocks_.find({in->namespace_id(), key});
      if (it == blocks_.end()) {
        out->set_missing(out->missing() + 1);
      } else if (it->second.readers > 0 || !it->second.ready) {
        out->set_busy(out->busy() + 1);
      } else {
        blocks_.erase(it);
        out->set_dropped(out->dropped() + 1);
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status Stats(grpc::ServerContext*, const v1::StatsRequest*,
                     v1::StatsResponse* out) override {
    std::lock_guard<std::mutex> lock(mu_);
    out->set_node_id("fake-node");
    out->set_version("0.0.0-fake");
    out->set_uptime_ms(1234);
    auto* dram = out->add_tiers();
    dram->set_name("dram");
    dram->set_capacity_bytes(arena_bytes_);
    dram->set_used_bytes(next_);
    dram->set_blocks(blocks_.size());
    out->set_namespaces(namespaces_.size());
    out->set_leases(leases_.size());
    return grpc::Status::OK;
  }

  grpc::Status ListBlocks(grpc::ServerContext*, const v1::ListBlocksRequest* in,
                          v1::ListBlocksResponse* out) override {
    std::lock_guard<std::mutex> lock(mu_);
    const uint32_t limit = in->limit() == 0 ? 1000 : in->limit();
    for (const auto& [k, b] : blocks_) {
      if (in->namespace_id() != 0 && k.first != in->namespace_id()) continue;
      if (static_cast<uint32_t>(out->blocks_size()) == limit) {
        out->set_truncated(true);
        break;
      }
      auto* info = out->add_blocks();
      info->set_namespace_id(k.first);
      std::string key;
      AppendKey(k.second, &key);
      info->set_key(key);
      info->set_tier(v1::TIER_DRAM);
      info->set_bytes(b.bytes);
      info->set_state(b.ready ? "ready" : "writing");
      info->set_readers(b.readers);
      info->set_hits(b.hits);
    }
    return grpc::Status::OK;
  }

 private:
  void ServeArenaFd() {
    for (;;) {
      const int conn = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (conn < 0) return;  // shut down
      (void)SendFdWithWord(conn, memfd_, generation_);
      ::close(conn);
    }
  }

  struct KeyLess {
    bool operator()(const std::pair<uint64_t, Key128>& a,
                    const std::pair<uint64_t, Key128>& b) const {
      if (a.first != b.first) return a.first < b.first;
      if (a.second.hi != b.second.hi) return a.second.hi < b.second.hi;
      return a.second.lo < b.second.lo;
    }
  };

  const std::string socket_path_;
  const uint64_t arena_bytes_;
  const uint64_t generation_;
  int memfd_ = -1;
  unsigned char* base_ = nullptr;
  std::unique_ptr<grpc::Server> server_;
  int listen_fd_ = -1;
  std::thread fd_thread_;

  std::mutex mu_;
  std::map<uint64_t, NsInfo> namespaces_;
  std::map<std::pair<uint64_t, Key128>, Block, KeyLess> blocks_;
  std::map<uint64_t, Lease> leases_;
  uint64_t next_ = 0;
  uint64_t next_lease_ = 1;
};

std::unique_ptr<FakeDaemon> FakeDaemon::Start(const std::string& socket_path, uint64_t arena_bytes,
                                              uint64_t generation) {
  auto impl = std::make_unique<Impl>(socket_path, arena_bytes, generation);
  if (!impl->Start()) return nullptr;
  return std::unique_ptr<FakeDaemon>(new FakeDaemon(std::move(impl)));
}

FakeDaemon::FakeDaemon(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
FakeDaemon::~FakeDaemon() = default;
size_t FakeDaemon::leases() const { return impl_->leases(); }
const unsigned char* FakeDaemon::arena() const { return impl_->arena(); }

}  // namespace kvtier::testing
