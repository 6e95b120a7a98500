// Request ids and the log of slow or failed gRPC calls: a server interceptor on every call of
// kvtierd's services. Each call gets an id: the client's `x-request-id` metadata when it sent a
// usable one (1-128 printable ASCII characters), else 16 random hex digits. The id goes back to
// the client in the trailing metadata `x-request-id`. A call that fails, or takes longer than
// slow_ms, is logged (LogEvent) with its request_id, method, status (the gRPC code name),
// duration_ms, peer and, when it failed, the error message.
#pragma once

#include <grpcpp/support/server_interceptor.h>

#include <memory>
#include <string>
#include <string_view>

namespace kvtier {

inline constexpr char kRequestIdHeader[] = "x-request-id";

struct RequestLogOptions {
  int64_t slow_ms = 1000;  // calls at least this long are logged; < 0: never as slow
};

// The interceptors to install with ServerBuilder::experimental().SetInterceptorCreators.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> MakeRequestLogFactory(
    RequestLogOptions options);

// The gRPC code's name as in the gRPC docs ("PERMISSION_DENIED").
std::string_view GrpcCodeName(int code);

}  // namespace kvtier
