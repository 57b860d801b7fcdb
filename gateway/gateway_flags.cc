#include "gateway/gateway_flags.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"

ABSL_FLAG(std::string, listen_address, "127.0.0.1:8080",
          "host:port for WebSocket and HTTP clients; port 0 picks a free "
          "port. Default 127.0.0.1:8080.");
ABSL_FLAG(std::string, service_address, "127.0.0.1:7400",
          "parley-service's GatewayLink: a comma-separated list of host:port "
          "(IPv6 in brackets); every address a host resolves to is one "
          "replica, and sessions are spread over the replicas that are up. "
          "Default 127.0.0.1:7400.");
ABSL_FLAG(absl::Duration, service_resolve_interval, absl::Seconds(5),
          "How often --service_address is resolved again, so added replicas "
          "get streams and removed ones are dropped (duration). Default 5s.");
ABSL_FLAG(std::string, gateway_id, "",
          "This gateway's id, unique among gateways. Default (empty): "
          "<hostname>:<bound port>.");
ABSL_FLAG(std::string, web_root, "",
          "Directory whose files are served at /. Default empty: none.");
ABSL_FLAG(int32_t, upstream_streams, 1,
          "GatewayLink streams to each service replica, multiplexing its "
          "sessions (count, 1..64). Default 1.");
ABSL_FLAG(absl::Duration, handshake_timeout, absl::Seconds(5),
          "Deadline for a client's opening handshake (duration). Default 5s.");
ABSL_FLAG(absl::Duration, close_timeout, absl::Seconds(5),
          "Deadline for a closing handshake before the TCP connection is cut "
          "(duration). Default 5s.");
ABSL_FLAG(absl::Duration, auth_timeout, absl::Seconds(10),
          "Deadline for a connection to authenticate, else close 4008 "
          "(duration). Default 10s.");
ABSL_FLAG(int64_t, max_message_bytes, 64 * 1024,
          "Largest client message (bytes); larger closes with 1009. Default "
          "65536.");
ABSL_FLAG(int32_t, max_connections, 10000,
          "Open WebSocket connections (count); above it upgrades get HTTP "
          "503. Default 10000.");
ABSL_FLAG(int64_t, send_buffer_cap_bytes, 1 << 20,
          "Outgoing bytes buffered per connection (bytes) before the client "
          "is closed 1013 \"slow consumer\". Default 1048576.");
ABSL_FLAG(double, rate_limit_per_second, 50,
          "Sustained client frames per connection (frames/second); excess "
          "frames get RATE_LIMITED errors. Default 50.");
ABSL_FLAG(double, rate_limit_burst, 100,
          "Client frames allowed in a burst above the rate (frames). "
          "Default 100.");
ABSL_FLAG(double, rate_limit_bytes_per_second, 1 << 20,
          "Sustained client payload bytes per connection (bytes/second); "
          "excess frames get RATE_LIMITED errors. Default 1048576.");
ABSL_FLAG(double, rate_limit_bytes_burst, 4 << 20,
          "Client payload bytes allowed in a burst above the byte rate "
          "(bytes); at least --max_message_bytes. Default 4194304.");
ABSL_FLAG(double, abuse_error_burst, 50,
          "Error frames a client may provoke in a burst (frames) before it "
          "is closed 1008. Default 50.");
ABSL_FLAG(double, abuse_error_per_second, 2,
          "Rate at which that error allowance refills (frames/second). "
          "Default 2.");
ABSL_FLAG(int64_t, max_buffered_frames, 256,
          "Client frames held per session for the upstream: unacked sends "
          "plus frames waiting while the link is down (frames). Default 256.");
ABSL_FLAG(int64_t, max_buffered_bytes, 1 << 20,
          "The same held frames in encoded bytes per session (bytes); above "
          "it sends get BACKPRESSURE errors. Default 1048576.");
ABSL_FLAG(int64_t, max_held_bytes_total, 256 << 20,
          "The held frames of all sessions together, in encoded bytes "
          "(bytes); above it sends get BACKPRESSURE errors. At least "
          "--max_buffered_bytes. Default 268435456.");
ABSL_FLAG(absl::Duration, ping_interval, absl::Seconds(25),
          "WebSocket ping interval (duration). Default 25s.");
ABSL_FLAG(absl::Duration, pong_timeout, absl::Seconds(10),
          "Time a pong may take before the connection is closed 1001 "
          "(duration; checked on each heartbeat tick, a 25th of "
          "--ping_interval). Default 10s.");
ABSL_FLAG(int32_t, io_threads, 0,
          "I/O threads (count); 0 means one per core. Default 0.");
ABSL_FLAG(int32_t, listen_backlog, 1024,
          "TCP accept backlog (connections). Default 1024.");
ABSL_FLAG(std::string, metrics_address, "127.0.0.1:9402",
          "host:port of the HTTP listener for /metrics and /healthz, apart "
          "from the public client port (which does not serve /metrics); port "
          "0 picks a free one, empty turns it off. Default 127.0.0.1:9402.");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(10),
          "On SIGTERM: time to close clients with 1001 and flush the "
          "upstream before exiting (duration). Default 10s.");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain for wss (path). Default empty: plain ws.");
ABSL_FLAG(std::string, tls_key, "",
          "PEM private key for wss (path). Default empty: plain ws.");
ABSL_FLAG(absl::Duration, tls_reload_interval, absl::Seconds(10),
          "How often --tls_cert and --tls_key are checked for a change (a "
          "renewed certificate); new connections get the new pair, a pair "
          "that does not load is logged and the old one kept. Default 10s.");
ABSL_FLAG(std::string, allowed_origins, "",
          "Comma-separated Origin values allowed to connect; others get HTTP "
          "403. A request without Origin (a native client; browsers always "
          "send one) is allowed unless --require_origin. Default empty: all "
          "origins.");
ABSL_FLAG(bool, require_origin, false,
          "Refuse (HTTP 403) WebSocket upgrades that carry no Origin header. "
          "Default false: native clients need not send one.");
ABSL_FLAG(bool, access_log, false,
          "Log every WebSocket connect and disconnect. Default false.");
ABSL_FLAG(absl::Duration, upstream_backoff_initial, absl::Milliseconds(100),
          "First reconnect delay after an upstream stream ends (duration), "
          "doubling per failure with +/-20% jitter. Default 100ms.");
ABSL_FLAG(absl::Duration, upstream_backoff_max, absl::Seconds(5),
          "Largest upstream reconnect delay (duration). Default 5s.");
ABSL_FLAG(absl::Duration, upstream_keepalive_time, absl::Seconds(20),
          "gRPC keepalive ping interval to the service (duration); the "
          "service permits 10s. Default 20s.");
ABSL_FLAG(absl::Duration, upstream_keepalive_timeout, absl::Seconds(10),
          "gRPC keepalive ack deadline (duration). Default 10s.");
ABSL_FLAG(absl::Duration, upstream_ready_grace, absl::Milliseconds(250),
          "A new upstream stream without initial metadata counts as up after "
          "this (duration). Default 250ms.");

namespace parley::gateway {
namespace {

std::chrono::milliseconds Ms(absl::Duration d) {
  return std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

}  // namespace

absl::StatusOr<GatewayConfig> GatewayConfigFromFlags() {
  GatewayConfig config;
  WsServerOptions& server = config.server;
  server.listen_address = absl::GetFlag(FLAGS_listen_address);
  server.io_threads = absl::GetFlag(FLAGS_io_threads);
  server.listen_backlog = absl::GetFlag(FLAGS_listen_backlog);
  server.handshake_timeout = Ms(absl::GetFlag(FLAGS_handshake_timeout));
  server.close_timeout = Ms(absl::GetFlag(FLAGS_close_timeout));
  server.auth_timeout = Ms(absl::GetFlag(FLAGS_auth_timeout));
  const int64_t max_message = absl::GetFlag(FLAGS_max_message_bytes);
  if (max_message < 64 || max_message > (64 << 20)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max_message_bytes must be 64..67108864, got ", max_message));
  }
  server.max_message_bytes = static_cast<size_t>(max_message);
  server.max_connections = absl::GetFlag(FLAGS_max_connections);
  server.ping_interval = Ms(absl::GetFlag(FLAGS_ping_interval));
  server.pong_timeout = Ms(absl::GetFlag(FLAGS_pong_timeout));
  server.web_root = absl::GetFlag(FLAGS_web_root);
  server.access_log = absl::GetFlag(FLAGS_access_log);
  for (absl::string_view origin : absl::StrSplit(
           absl::GetFlag(FLAGS_allowed_origins), ',', absl::SkipWhitespace())) {
    server.allowed_origins.emplace_back(absl::StripAsciiWhitespace(origin));
  }
  server.require_origin = absl::GetFlag(FLAGS_require_origin);

  SessionOptions& session = server.session;
  session.heartbeat = server.ping_interval;
  const int64_t cap = absl::GetFlag(FLAGS_send_buffer_cap_bytes);
  if (cap < 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("--send_buffer_cap_bytes must be >= 1024, got ", cap));
  }
  session.send_buffer_cap_bytes = static_cast<size_t>(cap);
  const int64_t buffered = absl::GetFlag(FLAGS_max_buffered_frames);
  if (buffered < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_buffered_frames must be >= 1, got ", buffered));
  }
  session.max_buffered_frames = static_cast<size_t>(buffered);
  const int64_t buffered_bytes = absl::GetFlag(FLAGS_max_buffered_bytes);
  if (buffered_bytes < max_message) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_buffered_bytes must be >= --max_message_bytes (",
                     max_message, "), got ", buffered_bytes));
  }
  session.max_buffered_bytes = static_cast<size_t>(buffered_bytes);
  const int64_t held_total = absl::GetFlag(FLAGS_max_held_bytes_total);
  if (held_total < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_held_bytes_total must be >= 0, got ", held_total));
  }
  server.max_held_bytes_total = static_cast<size_t>(held_total);
  session.rate_limit_per_second = absl::GetFlag(FLAGS_rate_limit_per_second);
  session.rate_limit_burst = absl::GetFlag(FLAGS_rate_limit_burst);
  session.abuse_error_burst = absl::GetFlag(FLAGS_abuse_error_burst);
  session.abuse_error_per_second = absl::GetFlag(FLAGS_abuse_error_per_second);
  if (session.rate_limit_per_second <= 0 || session.rate_limit_burst < 1 ||
      session.abuse_error_burst < 1 || session.abuse_error_per_second < 0) {
    return absl::InvalidArgumentError(
        "--rate_limit_per_second must be > 0, --rate_limit_burst and "
        "--abuse_error_burst >= 1, --abuse_error_per_second >= 0");
  }
  session.rate_limit_bytes_per_second =
      absl::GetFlag(FLAGS_rate_limit_bytes_per_second);
  session.rate_limit_bytes_burst = absl::GetFlag(FLAGS_rate_limit_bytes_burst);
  if (session.rate_limit_bytes_per_second <= 0 ||
      session.rate_limit_bytes_burst < static_cast<double>(max_message)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--rate_limit_bytes_per_second must be > 0 and "
        "--rate_limit_bytes_burst >= --max_message_bytes (",
        max_message, "), got ", session.rate_limit_bytes_per_second, " and ",
        session.rate_limit_bytes_burst));
  }
  server.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  server.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  server.tls_reload_interval = Ms(absl::GetFlag(FLAGS_tls_reload_interval));
  absl::Status valid = server.Validate();
  if (!valid.ok()) return valid;

  UpstreamLinkOptions& upstream = config.upstream;
  upstream.service_address = absl::GetFlag(FLAGS_service_address);
  upstream.gateway_id = absl::GetFlag(FLAGS_gateway_id);
  upstream.streams = absl::GetFlag(FLAGS_upstream_streams);
  upstream.resolve_interval = Ms(absl::GetFlag(FLAGS_service_resolve_interval));
  upstream.backoff_initial = Ms(absl::GetFlag(FLAGS_upstream_backoff_initial));
  upstream.backoff_max = Ms(absl::GetFlag(FLAGS_upstream_backoff_max));
  upstream.keepalive_time = Ms(absl::GetFlag(FLAGS_upstream_keepalive_time));
  upstream.keepalive_timeout =
      Ms(absl::GetFlag(FLAGS_upstream_keepalive_timeout));
  upstream.ready_grace = Ms(absl::GetFlag(FLAGS_upstream_ready_grace));
  valid = upstream.Validate();
  if (!valid.ok()) return valid;

  config.drain_timeout = absl::GetFlag(FLAGS_drain_timeout);
  config.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  if (config.drain_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--drain_timeout must be > 0");
  }
  return config;
}

}  // namespace parley::gateway
