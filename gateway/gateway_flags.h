// The gateway's command-line flags (each overridable by PARLEY_<FLAG> in the
// environment, see common/config.h) and their conversion into the options of
// each component, validated once at start.
//
//   parley::ParseConfig(argc, argv, usage);
//   absl::StatusOr<GatewayConfig> config = GatewayConfigFromFlags();
//
// Thread-compatible: call from main() before starting threads.
#ifndef PARLEY_GATEWAY_GATEWAY_FLAGS_H_
#define PARLEY_GATEWAY_GATEWAY_FLAGS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gateway/upstream_link.h"
#include "gateway/ws_server.h"

namespace parley::gateway {

struct GatewayConfig {
  WsServerOptions server;
  UpstreamLinkOptions upstream;
  // Total time SIGTERM may take: closing clients, then flushing upstream.
  absl::Duration drain_timeout = absl::Seconds(10);
  // host:port of the HTTP listener for /metrics (and /healthz), apart from
  // the public client port; empty: no metrics listener.
  std::string metrics_address = "127.0.0.1:9402";
};

// Reads every gateway flag; INVALID_ARGUMENT naming the flag on bad values.
absl::StatusOr<GatewayConfig> GatewayConfigFromFlags();

}  // namespace parley::gateway

#endif  // PARLEY_GATEWAY_GATEWAY_FLAGS_H_
