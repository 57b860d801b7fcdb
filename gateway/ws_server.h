// WsServer: the websocketpp adapter. Terminates client WebSockets (and plain
// HTTP on the same port) and hands each connection's frames to a Session.
//
// Plain ws, or wss when a certificate and key are configured.
//
// Per connection, in order: the TCP socket is accepted and TCP_NODELAY is set
// before the handshake (a failure is logged with the peer and the connection
// still served); the opening handshake must finish within
// `handshake_timeout`; the validate step enforces RFC 6455 version 13, the
// Origin allow-list (403), `max_connections` (503) and the subprotocol
// (parley.v1.json, the default, or parley.v1.proto); then a Session runs,
// with the auth deadline and the ping/pong heartbeat as connection timers.
// websocketpp itself closes with 1009 above `max_message_bytes` and with 1007
// on invalid UTF-8, but for a fragmented text message that ends mid code
// point, which the adapter closes with 1007 (CheckClientMessage, see
// gateway/client_message_check.h).
// permessage-deflate is not compiled in.
//
// HTTP on the same port: /healthz (alive), /readyz (some service replica
// has all its upstream streams up, and not draining), /metrics (Prometheus
// text), and the files under `web_root` at / (loaded into memory at start, so
// no request touches the disk and no path can escape the root).
//
// Threading: `io_threads` threads run one io_context. Each connection's
// handlers and timers run on that connection's strand (websocketpp wraps them
// in it), so its Session is never entered concurrently; the upstream link
// reaches a Session only by posting to that strand (SessionHandle). Handlers
// are noexcept: an exception is caught at this edge, logged with the peer,
// and the connection closed. Public methods are thread-safe.
#ifndef PARLEY_GATEWAY_WS_SERVER_H_
#define PARLEY_GATEWAY_WS_SERVER_H_

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "gateway/session.h"
#include "gateway/upstream_link.h"

namespace parley::gateway {

class WsServerImpl;

struct WsServerOptions {
  // "host:port" to listen on; port 0 picks a free port.
  std::string listen_address = "127.0.0.1:8080";
  // I/O threads; 0 means one per core.
  int io_threads = 0;
  // TCP accept backlog.
  int listen_backlog = 1024;
  // A peer must finish the opening handshake within this.
  std::chrono::milliseconds handshake_timeout{5000};
  // A close handshake that takes longer ends with the TCP connection cut.
  std::chrono::milliseconds close_timeout{5000};
  // An open connection must authenticate within this (else 4008).
  std::chrono::milliseconds auth_timeout{10000};
  // Largest client message; larger closes with 1009.
  size_t max_message_bytes = 64 * 1024;
  // Open WebSockets (and accepted upgrades); above it: HTTP 503.
  int max_connections = 10000;
  // WebSocket ping interval, and how long a pong may take.
  std::chrono::milliseconds ping_interval{25000};
  std::chrono::milliseconds pong_timeout{10000};
  // Allowed Origin header values; empty allows every origin. Browsers always
  // send Origin, so a request without one is a native client: allowed unless
  // `require_origin`.
  std::vector<std::string> allowed_origins;
  bool require_origin = false;
  // Directory served at /; empty serves no files.
  std::string web_root;
  // wss: PEM certificate chain and private key files. Both empty: plain
  // ws. (The TLS handshake itself has websocketpp's fixed 5 s deadline,
  // before `handshake_timeout` starts.)
  std::string tls_cert_file;
  std::string tls_key_file;
  // How often the two files are checked for a change (a renewed
  // certificate): new connections then get the new one; live ones keep
  // theirs. A pair that does not load is logged and the old one kept.
  std::chrono::milliseconds tls_reload_interval{10000};
  // Log every connect and disconnect (websocketpp's access log).
  bool access_log = false;
  // Per-session limits.
  SessionOptions session;
  // Bytes of client frames all sessions together may hold for the service
  // (HeldBudget); at least session.max_buffered_bytes.
  size_t max_held_bytes_total = 256 << 20;

  absl::Status Validate() const;
};

class WsServer final {
 public:
  // `link` must outlive the server. Metrics go to `registry`.
  WsServer(WsServerOptions options, UpstreamLink* link, Registry& registry);
  ~WsServer();
  WsServer(const WsServer&) = delete;
  WsServer& operator=(const WsServer&) = delete;

  // Loads web_root, binds and listens, and starts the I/O threads. Returns
  // the bound address ("127.0.0.1:PORT").
  absl::StatusOr<std::string> Start();

  // Stops accepting, closes every client with 1001 "going away", waits for
  // the closing handshakes (until `deadline`), and stops the I/O threads.
  // The caller flushes the upstream afterwards. Blocks; idempotent.
  void Drain(absl::Time deadline);

  // Open WebSocket connections.
  int open_connections() const;

 private:
  std::unique_ptr<WsServerImpl> impl_;
};

}  // namespace parley::gateway

#endif  // PARLEY_GATEWAY_WS_SERVER_H_
