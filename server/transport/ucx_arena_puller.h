// UcxTransport as the cluster layer's ArenaPuller.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "server/transport/arena_puller.h"
#include "server/transport/ucx_transport.h"

namespace kvtier {

class UcxArenaPuller final : public ArenaPuller {
 public:
  explicit UcxArenaPuller(std::unique_ptr<transport::UcxTransport> ucx) : ucx_(std::move(ucx)) {}

  const std::string& LocalInfo() const override { return ucx_->LocalInfo(); }
  std::string Mode() const override { return ucx_->Mode(); }
  void Pull(const std::string& peer_info, std::vector<PullOp> ops, int deadline_ms,
            std::function<void(absl::Status)> done) override {
    std::vector<transport::PullOp> converted;
    converted.reserve(ops.size());
    for (const PullOp& op : ops) {
      converted.push_back({op.remote_offset, op.local_offset, op.bytes});
    }
    ucx_->Pull(peer_info, std::move(converted), deadline_ms, std::move(done));
  }
  transport::UcxTransport& ucx() { return *ucx_; }

 private:
  std::unique_ptr<transport::UcxTransport> ucx_;
};

}  // namespace kvtier
