#include "service/server.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "service/curl_poster.h"

namespace parley::service {
namespace {

// "host:port" with the port the server actually bound.
std::string BoundAddress(const std::string& asked, int port) {
  return absl::StrCat(asked.substr(0, asked.rfind(':')), ":", port);
}

// --replica_id, or hostname:port of the link address (a random suffix
// instead of port 0, which names no port).
std::string ReplicaId(const ServerOptions& options) {
  if (!options.bus.replica_id.empty()) return options.bus.replica_id;
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) host[0] = '\0';
  const std::string port =
      options.link_address.substr(options.link_address.rfind(':') + 1);
  if (port != "0") return absl::StrCat(host, ":", port);
  static const std::string random = NewStoreGeneration().substr(0, 8);
  return absl::StrCat(host, ":", random);
}

// How long a failed catch-up read waits before its `attempt`th retry.
absl::Duration CatchUpBackoff(int attempt) {
  return std::min(
      absl::Milliseconds(100) * (int64_t{1} << std::min(attempt, 7)),
      absl::Seconds(10));
}

std::string PreviewText(const WebhookOptions& o) {
  return o.preview ? absl::StrCat(o.preview_bytes, " bytes") : "off";
}

absl::StatusOr<std::shared_ptr<TokenVerifier>> MakeTokenVerifier(
    const ServerOptions& o) {
  TokenVerifierOptions tokens;
  if (!o.token_secret.empty()) tokens.hmac_keys = {{"", o.token_secret}};
  tokens.hmac_keys_path = o.token_keys_file;
  tokens.signing_kid = o.token_signing_kid;
  tokens.jwks_path = o.token_jwks_file;
  tokens.issuer = o.token_issuer;
  tokens.audience = o.token_audience;
  ASSIGN_OR_RETURN(std::unique_ptr<TokenVerifier> verifier,
                   TokenVerifier::Create(std::move(tokens)));
  return std::shared_ptr<TokenVerifier>(std::move(verifier));
}

}  // namespace

absl::Status ValidateServerOptions(const ServerOptions& o) {
  if (o.token_secret.empty() && o.token_keys_file.empty() &&
      o.token_jwks_file.empty()) {
    return absl::InvalidArgumentError(
        "--token_secret is required (the HS256 secret client tokens are "
        "signed with); set it or PARLEY_TOKEN_SECRET, or give the keys in "
        "--token_keys_file or --token_jwks_file");
  }
  if (o.token_reload_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "--token_reload_interval must be positive");
  }
  if (o.admin_key.empty()) {
    return absl::InvalidArgumentError(
        "--admin_key is required (the admin API's bearer key); set it or "
        "PARLEY_ADMIN_KEY");
  }
  for (const auto& [name, address] :
       {std::pair<const char*, const std::string&>{"link_address",
                                                   o.link_address},
        {"admin_address", o.admin_address}}) {
    if (address.rfind(':') == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", name, " \"", address, "\" is not host:port"));
    }
  }
  RETURN_IF_ERROR(o.webhook.Validate());
  if (o.worker_threads < 1) {
    return absl::InvalidArgumentError("--worker_threads must be at least 1");
  }
  if (o.max_sessions_per_user < 1 || o.messaging.max_text_bytes < 1 ||
      o.messaging.max_group_members < 1 || o.messaging.max_page_size < 1 ||
      o.messaging.default_page_size < 1 ||
      o.messaging.default_page_size > o.messaging.max_page_size) {
    return absl::InvalidArgumentError(
        "limits must be at least 1, and the default page size at most the "
        "maximum");
  }
  if (o.admin.default_token_ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--token_ttl must be positive");
  }
  if (o.messaging.edit_window < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "--edit_window must not be negative (0 = no limit)");
  }
  for (const std::string& url : o.bus.nats_servers) {
    if (!absl::StartsWith(url, "nats://") && !absl::StartsWith(url, "tls://")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--nats: \"", url, "\" is not nats://host:port (or tls://)"));
    }
  }
  const std::string& prefix = o.bus.subject_prefix;
  if (prefix.empty() || prefix.front() == '.' || prefix.back() == '.' ||
      absl::StrContains(prefix, "..") ||
      prefix.find_first_of(" \t\r\n*>") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--nats_subject_prefix \"", prefix,
        "\" is not a NATS subject (dot-separated tokens without spaces, '*' "
        "or '>')"));
  }
  return absl::OkStatus();
}

Server::Server(const ServerOptions& options, Registry& registry)
    : options_(options), registry_(registry) {}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(
    const ServerOptions& options, Registry& registry) {
  RETURN_IF_ERROR(ValidateServerOptions(options));
  auto server = std::unique_ptr<Server>(new Server(options, registry));
  Server& s = *server;
  s.metrics_ = std::make_unique<ServiceMetrics>(registry);
  ServiceMetrics* metrics = s.metrics_.get();
  ASSIGN_OR_RETURN(s.tokens_, MakeTokenVerifier(options));
  ASSIGN_OR_RETURN(s.store_, OpenStore(options.store, *metrics));

  s.local_router_ =
      std::make_unique<LocalRouter>(options.max_sessions_per_user);
  s.router_ = s.local_router_.get();
  s.pool_ = std::make_unique<ThreadPool>(options.worker_threads);
  s.timer_ = std::make_unique<Timer>();
  // A session's catch-up reads the store on a worker; a failed read is
  // tried again after a backoff, the session holding meanwhile.
  s.local_router_->SetCatchUp(
      [router = s.local_router_.get(), store = s.store_.store.get(),
       pool = s.pool_.get(), timer = s.timer_.get(),
       limit = options.messaging.max_replay](LocalRouter::CatchUpRequest r) {
        auto read = [router, store, limit, r] {
          router->FinishCatchUp(
              r, ReadInboxMessages(*store, r.user, r.after_seq, r.upto_seq,
                                   limit));
        };
        if (r.attempt == 0) {
          pool->Post(std::move(read));
          return;
        }
        timer->RunAfter(CatchUpBackoff(r.attempt),
                        [pool, read = std::move(read)] { pool->Post(read); });
      });
  if (!options.bus.nats_servers.empty()) {
    NatsBusOptions nats;
    nats.servers = options.bus.nats_servers;
    nats.name = ReplicaId(options);
    ASSIGN_OR_RETURN(s.bus_, NatsBus::Connect(std::move(nats)));
    BusRouterOptions bus;
    bus.replica_id = ReplicaId(options);
    bus.subject_prefix = options.bus.subject_prefix;
    bus.request_timeout = options.bus.request_timeout;
    bus.heartbeat_interval = options.bus.heartbeat_interval;
    bus.replica_timeout = options.bus.replica_timeout;
    bus.presence_max_group_members =
        options.messaging.presence_max_group_members;
    s.bus_router_ = std::make_unique<BusRouter>(
        s.local_router_.get(), s.bus_.get(), s.store_.store.get(),
        [pool = s.pool_.get()](std::function<void()> task) {
          pool->Post(std::move(task));
        },
        bus);
    RETURN_IF_ERROR(s.bus_router_->Start());
    s.router_ = s.bus_router_.get();
    LogInfo("service.bus",
            {{"replica", bus.replica_id},
             {"nats", absl::StrJoin(options.bus.nats_servers, ",")}});
  }
  MessagingOptions messaging = options.messaging;
  messaging.tokens = s.tokens_;
  if (!options.webhook.url.empty()) {
    s.webhook_ = std::make_unique<WebhookNotifier>(
        options.webhook, std::make_unique<CurlPoster>(), registry);
    messaging.on_offline =
        [notifier = s.webhook_.get(), preview = options.webhook.preview,
         bytes = options.webhook.preview_bytes](const StoredMessage& m,
                                                const std::string& recipient,
                                                uint64_t inbox_seq) {
          notifier->Notify(NoticeFor(m, recipient, inbox_seq, preview, bytes));
        };
    LogInfo("service.webhook", {{"url", options.webhook.url},
                                {"preview", PreviewText(options.webhook)}});
  }
  s.messaging_ = std::make_unique<Messaging>(
      s.store_.store.get(), s.router_, metrics, messaging,
      [] { return absl::Now(); },
      [timer = s.timer_.get(), pool = s.pool_.get()](
          absl::Duration delay, std::function<void()> task) {
        timer->RunAfter(delay, [pool, task = std::move(task)] {
          pool->Post(std::move(task));
        });
      });
  s.link_service_ = std::make_unique<GatewayLinkService>(
      s.messaging_.get(), s.pool_.get(), options.link);
  AdminOptions admin = options.admin;
  admin.tokens = s.tokens_;
  s.admin_api_ = std::make_unique<AdminApi>(s.store_.store.get(), s.router_,
                                            s.messaging_.get(),
                                            s.store_.backup.get(), admin);
  s.admin_service_ = std::make_unique<AdminService>(
      s.admin_api_.get(), options.admin_key, registry);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(options.link_address,
                             grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(s.link_service_.get());
    builder.SetMaxReceiveMessageSize(options.max_receive_message_bytes);
    // The gateway pings every 20 s; allow pings every 10 s, also with no
    // call in flight, and never count strikes (see server.h).
    builder.AddChannelArgument(
        GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
    s.link_server_ = builder.BuildAndStart();
    if (s.link_server_ == nullptr || port == 0) {
      return absl::UnavailableError(absl::StrCat(
          "cannot listen on --link_address ", options.link_address));
    }
    s.link_address_ = BoundAddress(options.link_address, port);
  }
  {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort(options.admin_address,
                             grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(s.admin_service_.get());
    s.admin_server_ = builder.BuildAndStart();
    if (s.admin_server_ == nullptr || port == 0) {
      return absl::UnavailableError(absl::StrCat(
          "cannot listen on --admin_address ", options.admin_address));
    }
    s.admin_address_ = BoundAddress(options.admin_address, port);
  }
  if (!options.metrics_address.empty()) {
    s.http_server_ =
        std::make_unique<HttpServer>([&registry](absl::string_view path) {
          if (path == "/metrics") {
            return HttpResponse{200, "text/plain; version=0.0.4",
                                registry.Render()};
          }
          // Liveness: the process answers; readiness is gRPC health.
          if (path == "/healthz") {
            return HttpResponse{200, "text/plain", "ok\n"};
          }
          return HttpResponse{404, "text/plain", "not found\n"};
        });
    ASSIGN_OR_RETURN(s.metrics_address_,
                     s.http_server_->Start(options.metrics_address));
  }
  if (!options.token_keys_file.empty() || !options.token_jwks_file.empty()) {
    s.ScheduleTokenReload(s.timer_.get());
  }
  return server;
}

void Server::ScheduleTokenReload(Timer* timer) {
  // On the timer's thread: a stat of each file, and a read and parse of
  // small files when one changed. The task holds the timer itself, not
  // timer_, which is null while the timer is being destroyed (its thread
  // joined; a task scheduled then is dropped).
  timer->RunAfter(options_.token_reload_interval, [this, timer] {
    absl::StatusOr<bool> reloaded = tokens_->ReloadIfChanged();
    if (!reloaded.ok()) {
      LogWarn("service.token_keys_refused",
              {{"reason", reloaded.status().message()},
               {"keeping", "the keys read before"}});
    } else if (*reloaded) {
      LogInfo("service.token_keys_reloaded",
              {{"jwks_keys", tokens_->public_key_count()}});
    }
    ScheduleTokenReload(timer);
  });
}

void Server::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  const absl::Time deadline = absl::Now() + options_.shutdown_timeout;
  LogInfo(
      "service.draining",
      {{"timeout_ms", absl::ToInt64Milliseconds(options_.shutdown_timeout)}});
  for (grpc::Server* server : {link_server_.get(), admin_server_.get()}) {
    if (server != nullptr && server->GetHealthCheckService() != nullptr) {
      server->GetHealthCheckService()->SetServingStatus(false);
    }
  }
  messaging_->SetDraining(true);
  link_service_->RefuseNewStreams();
  // Appends already queued commit now and their Acks are queued on their
  // streams before the streams are told to end.
  store_.store->Flush();
  link_service_->CloseStreams();
  if (!link_service_->WaitForStreamsDone(deadline - absl::Now())) {
    LogWarn("service.drain_timeout", {{"what", "link streams"}});
  }
  link_server_->Shutdown(absl::ToChronoTime(deadline));
  admin_server_->Shutdown(absl::ToChronoTime(deadline));
  if (http_server_ != nullptr) http_server_->Stop();
  // Catch-ups and bus work need the workers; from here a session behind
  // gets what arrives and its client syncs.
  if (bus_router_ != nullptr) bus_router_->Stop();
  local_router_->SetCatchUp(nullptr);
  // Work still queued (a late batch) finishes before the store is flushed.
  timer_.reset();
  pool_.reset();
  store_.store->Flush();
  LogInfo("service.stopped");
}

Server::~Server() {
  if (link_server_ != nullptr && admin_server_ != nullptr) Shutdown();
  http_server_.reset();
  admin_server_.reset();
  link_server_.reset();
  if (bus_router_ != nullptr) bus_router_->Stop();
  if (local_router_ != nullptr) local_router_->SetCatchUp(nullptr);
  timer_.reset();
  pool_.reset();
  if (store_.store != nullptr) store_.store->Flush();
}

}  // namespace parley::service
