// WeightDeviceReader: WeightClient::ReadSpans, each lent chunk copied host → device by
// cuda::HostToDevice (CUDA or CPU).
#include <utility>

#include "cuda/host_to_device.h"
#include "kvtier/weights_gpu.h"

namespace kvtier {
namespace {

namespace kc = ::kvtier::cuda;

// (wire.h's FromAbsl needs the generated proto headers, private to kvtier_client.)
Status FromAbsl(const absl::Status& s) {
  if (s.ok()) return Status();
  return Status(static_cast<Status::Code>(s.code()), std::string(s.message()));
}

class WeightDeviceReaderImpl final : public WeightDeviceReader {
 public:
  WeightDeviceReaderImpl(WeightClient* weights, std::unique_ptr<kc::HostToDevice> copy)
      : weights_(weights), copy_(std::move(copy)) {}

  const char* backend() const override { return copy_->name(); }

  Status ReadToDevice(const WeightFile& file, uint64_t offset, uint64_t length, void* device_dst,
                      void* stream, WeightReadStats* stats) override {
    if (device_dst == nullptr && length > 0) {
      return Status(Status::Code::kInvalidArgument, "device_dst: null");
    }
    auto* out = static_cast<std::byte*>(device_dst);
    return weights_->ReadSpans(
        file, offset, length,
        [this, out, offset, stream](uint64_t at, const void* data, uint64_t n) {
          // Waited for inside: the span is lent only until this returns.
          return FromAbsl(copy_->Copy(out + (at - offset), data, n, stream));
        },
        stats);
  }

 private:
  WeightClient* const weights_;
  const std::unique_ptr<kc::HostToDevice> copy_;
};

}  // namespace

Status WeightDeviceReader::Create(WeightClient* weights, GpuBackend backend,
                                  std::unique_ptr<WeightDeviceReader>* out) {
  if (weights == nullptr || out == nullptr) {
    return Status(Status::Code::kInvalidArgument,
                  "WeightDeviceReader::Create: null weights or out");
  }
  std::unique_ptr<kc::HostToDevice> copy;
  switch (backend) {
    case GpuBackend::kAuto: {
      absl::StatusOr<std::unique_ptr<kc::HostToDevice>> cuda = kc::MakeCudaHostToDevice();
      copy = cuda.ok() ? *std::move(cuda) : kc::MakeCpuHostToDevice();
      break;
    }
    case GpuBackend::kCpu:
      copy = kc::MakeCpuHostToDevice();
      break;
    case GpuBackend::kCuda: {
      absl::StatusOr<std::unique_ptr<kc::HostToDevice>> cuda = kc::MakeCudaHostToDevice();
      if (!cuda.ok()) return FromAbsl(cuda.status());
      copy = *std::move(cuda);
      break;
    }
    default:
      return Status(Status::Code::kInvalidArgument, "backend: unknown");
  }
  *out = std::make_unique<WeightDeviceReaderImpl>(weights, std::move(copy));
  return Status();
}

}  // namespace kvtier
