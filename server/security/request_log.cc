#include "server/security/request_log.h"

#include <grpcpp/server_context.h>

#include <chrono>
#include <random>

#include "absl/strings/str_format.h"
#include "common/log.h"

namespace kvtier {
namespace {

using grpc::experimental::InterceptionHookPoints;

std::string NewRequestId() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return absl::StrFormat("%016x", rng());
}

bool UsableRequestId(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    if (c < 0x21 || c > 0x7E) return false;
  }
  return true;
}

class RequestLogInterceptor final : public grpc::experimental::Interceptor {
 public:
  RequestLogInterceptor(grpc::experimental::ServerRpcInfo* info, RequestLogOptions options)
      : info_(info), options_(options), start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      grpc::ServerContextBase* ctx = info_->server_context();
      std::string id;
      const auto& metadata = ctx->client_metadata();
      if (auto it = metadata.find(kRequestIdHeader); it != metadata.end()) {
        std::string_view sent(it->second.data(), it->second.size());
        if (UsableRequestId(sent)) id = std::string(sent);
      }
      if (id.empty()) id = NewRequestId();
      methods->GetSendTrailingMetadata()->emplace(kRequestIdHeader, id);
      const grpc::Status status = methods->GetSendStatus();
      const auto elapsed = std::chrono::steady_clock::now() - start_;
      const int64_t ms = std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count();
      const bool slow = options_.slow_ms >= 0 && ms >= options_.slow_ms;
      if (!status.ok() || slow) {
        const double precise_ms =
            std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count() / 1000.0;
        LogFields fields = {
            {"request_id", id},
            {"method", info_->method()},
            {"status", std::string(GrpcCodeName(status.error_code()))},
            {"duration_ms", absl::StrFormat("%.3f", precise_ms), /*number=*/true},
            {"peer", ctx->peer()},
        };
        if (!status.ok()) fields.push_back({"error", status.error_message()});
        const bool severe = status.error_code() == grpc::StatusCode::INTERNAL ||
                            status.error_code() == grpc::StatusCode::UNKNOWN ||
                            status.error_code() == grpc::StatusCode::DATA_LOSS;
        LogEvent(severe ? spdlog::level::err : spdlog::level::warn,
                 status.ok() ? "slow request" : "request failed", fields);
      }
    }
    methods->Proceed();
  }

 private:
  grpc::experimental::ServerRpcInfo* info_;
  RequestLogOptions options_;
  std::chrono::steady_clock::time_point start_;
};

class RequestLogFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RequestLogFactory(RequestLogOptions options) : options_(options) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new RequestLogInterceptor(info, options_);
  }

 private:
  RequestLogOptions options_;
};

}  // namespace

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeRequestLogFactory(
    RequestLogOptions options) {
  return std::make_unique<RequestLogFactory>(options);
}

std::string_view GrpcCodeName(int code) {
  static constexpr std::string_view kNames[] = {"OK",
                                                "CANCELLED",
                                                "UNKNOWN",
                                                "INVALID_ARGUMENT",
                                                "DEADLINE_EXCEEDED",
                                                "NOT_FOUND",
                                                "ALREADY_EXISTS",
                                                "PERMISSION_DENIED",
                                                "RESOURCE_EXHAUSTED",
                                                "FAILED_PRECONDITION",
                                                "ABORTED",
                                                "OUT_OF_RANGE",
                                                "UNIMPLEMENTED",
                                                "INTERNAL",
                                                "UNAVAILABLE",
                                                "DATA_LOSS",
                                                "UNAUTHENTICATED"};
  if (code < 0 || code >= static_cast<int>(std::size(kNames))) return "UNKNOWN";
  return kNames[code];
}

}  // namespace kvtier
