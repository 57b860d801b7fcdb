// The one mapping between absl::Status and grpc::Status.
//
// absl::StatusCode values are the gRPC codes, so the mapping keeps the code and
// the message. Used by every gRPC adapter (service handlers, gateway link,
// parleyctl). Thread-safe: pure functions.
#ifndef PARLEY_COMMON_GRPC_STATUS_H_
#define PARLEY_COMMON_GRPC_STATUS_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace parley {

// Converts an absl::Status to the grpc::Status with the same code and message.
grpc::Status ToGrpcStatus(const absl::Status& status);

// Converts a grpc::Status to the absl::Status with the same code and message.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace parley

#endif  // PARLEY_COMMON_GRPC_STATUS_H_
