// Server: parley-service assembled: the Store and its backup (whichever
// options.store names, opened by store_factory.h), the Router, the messaging
// and admin logic, the two gRPC servers and the metrics HTTP server. main.cc
// builds one from flags; tests build one in-process on port 0 addresses. On
// the SQLite store it holds a lock on the database's directory from Start()
// until it is destroyed: a second service on the same directory, or a
// restore into it, fails instead of sharing the database.
//
//   ServerOptions options;
//   options.store.url = SqliteInDataDir(dir);  options.token_secret = "...";
//   ASSIGN_OR_RETURN(std::unique_ptr<Server> server, Server::Start(options));
//   LogInfo("service.ready", {{"link_address", server->link_address()}, ...});
//   ... wait for SIGTERM ...
//   server->Shutdown();
//
// Listeners:
//   link_address:    parley.v1.GatewayLink + grpc.health.v1.Health.
//   admin_address:   parley.v1.Admin + Health + server reflection.
//   metrics_address: HTTP /metrics (Prometheus) and /healthz.
//
// Replicas: with options.bus.nats_servers, several services on one store
// reach each other's sessions over NATS (bus_router.h); without, the
// service is alone and its LocalRouter is the router.
//
// Keepalive: the link server lets clients ping every 10 s without data
// (GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS = 10000, pings
// permitted without calls, no ping strikes), so the gateway's 20 s keepalive
// never earns a GOAWAY "too_many_pings". The server itself pings an idle
// gateway every 30 s and drops it after 10 s without an answer.
//
// Threading: Start(), Shutdown() and the destructor are called from one
// owner thread.
#ifndef PARLEY_SERVICE_SERVER_H_
#define PARLEY_SERVICE_SERVER_H_

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/http_server.h"
#include "common/metrics.h"
#include "grpcpp/server.h"
#include "service/admin_api.h"
#include "service/admin_service.h"
#include "service/bus_router.h"
#include "service/executor.h"
#include "service/gateway_link_service.h"
#include "service/local_router.h"
#include "service/messaging.h"
#include "service/nats_bus.h"
#include "service/router.h"
#include "service/service_metrics.h"
#include "service/store.h"
#include "service/store_factory.h"
#include "service/webhook_notifier.h"

namespace parley::service {

// The bus between replicas that share a store (bus_router.h).
struct ServerBusOptions {
  // NATS server URLs; empty: no bus (one replica, the LocalRouter alone).
  std::vector<std::string> nats_servers;
  // The first token of every subject.
  std::string subject_prefix = "parley";
  // Unique in the cluster; empty: hostname:port of link_address (hostname
  // and a random suffix when that port is 0).
  std::string replica_id;
  // How long operator calls wait for every replica's answer.
  absl::Duration request_timeout = absl::Seconds(1);
  // Heartbeats, and how long a silent replica counts as alive.
  absl::Duration heartbeat_interval = absl::Seconds(1);
  absl::Duration replica_timeout = absl::Seconds(5);
};

// Everything configurable in parley-service; main.cc fills it from flags.
struct ServerOptions {
  // host:port for GatewayLink (port 0 picks one).
  std::string link_address = "127.0.0.1:7400";
  // host:port for Admin and reflection.
  std::string admin_address = "127.0.0.1:7401";
  // host:port for HTTP /metrics and /healthz; empty disables it.
  std::string metrics_address = "127.0.0.1:9401";
  // Which store, and the SQLite store's tuning.
  StoreOptions store;
  // Client tokens (common/token_verifier.h): the kid-less HS256 key, a file
  // of HS256 keys by kid, the kid IssueToken signs with, a JWKS file of
  // RS256/ES256 public keys, the required issuer and audience. At least one
  // key is required. Both files are read again within
  // `token_reload_interval` of a change.
  std::string token_secret;
  std::string token_keys_file;
  std::string token_signing_kid;
  std::string token_jwks_file;
  std::string token_issuer;
  std::string token_audience;
  absl::Duration token_reload_interval = absl::Seconds(5);
  // The admin API key (required).
  std::string admin_key;
  // Threads that run link events (store reads); never one per stream.
  int worker_threads = 4;
  // Most live sessions of one user.
  size_t max_sessions_per_user = 16;
  // How long SIGTERM may take before the process exits anyway.
  absl::Duration shutdown_timeout = absl::Seconds(10);
  // Largest GatewayBatch accepted from a gateway, in bytes.
  int max_receive_message_bytes = 16 << 20;
  MessagingOptions messaging;
  // The offline-notification webhook; off when its url is empty.
  WebhookOptions webhook;
  AdminOptions admin;
  GatewayLinkOptions link;
  ServerBusOptions bus;
};

// Checks what cannot work (missing secrets, bad limits), naming the option.
absl::Status ValidateServerOptions(const ServerOptions& options);

class Server final {
 public:
  // Opens the store (locking its directory) and starts every listener.
  // `registry` (metrics) must outlive the server.
  static absl::StatusOr<std::unique_ptr<Server>> Start(
      const ServerOptions& options, Registry& registry);
  ~Server();

  // The bound addresses ("host:port", the actual port when 0 was asked).
  const std::string& link_address() const { return link_address_; }
  const std::string& admin_address() const { return admin_address_; }
  const std::string& metrics_address() const { return metrics_address_; }

  // The graceful stop (SIGTERM): health NOT_SERVING, new streams and sessions
  // refused, in-flight writes committed and their acks written, link streams
  // ended with UNAVAILABLE (the gateway reconnects), servers shut down; all
  // within shutdown_timeout. Idempotent.
  void Shutdown();

  Store& store() { return *store_.store; }
  Router& router() { return *router_; }

 private:
  explicit Server(const ServerOptions& options, Registry& registry);

  // Reads the token key files again, if they changed, every
  // token_reload_interval (on `timer`'s thread).
  void ScheduleTokenReload(Timer* timer);

  const ServerOptions options_;
  Registry& registry_;
  std::unique_ptr<ServiceMetrics> metrics_;
  std::shared_ptr<TokenVerifier> tokens_;
  std::unique_ptr<WebhookNotifier> webhook_;
  // Closed after everything that uses it, before the metrics it reports to.
  OpenedStore store_;
  std::unique_ptr<LocalRouter> local_router_;
  // With a bus: the bus wraps the local router (bus_router_).
  std::unique_ptr<NatsBus> bus_;
  std::unique_ptr<BusRouter> bus_router_;
  // The router the logic uses: local_router_ itself on one replica.
  Router* router_ = nullptr;
  std::unique_ptr<Messaging> messaging_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<Timer> timer_;
  std::unique_ptr<GatewayLinkService> link_service_;
  std::unique_ptr<AdminApi> admin_api_;
  std::unique_ptr<AdminService> admin_service_;
  std::unique_ptr<grpc::Server> link_server_;
  std::unique_ptr<grpc::Server> admin_server_;
  std::unique_ptr<HttpServer> http_server_;
  std::string link_address_;
  std::string admin_address_;
  std::string metrics_address_;
  bool shut_down_ = false;
};

}  // namespace parley::service

#endif  // PARLEY_SERVICE_SERVER_H_
