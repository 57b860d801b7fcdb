// parley-service: users, conversations, durable ordered delivery, offline
// sync and the admin API, on the store --store names (store_url.h; by
// default an embedded SQLite database in --data_dir). See server.h for the
// listeners and README.md for running it.
//
// `parley-service restore --from=BACKUP [--data_dir=DIR | --store=URL]`
// instead replaces that SQLite database with a backup (sqlite_backup.h),
// while no service runs on it, and prints what it restored.
//
// Every flag can also be set with PARLEY_<FLAG NAME IN CAPITALS> (common/
// config.h); the command line wins.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/build_info.h"
#include "common/config.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/status_macros.h"
#include "common/termination_signals.h"
#include "service/server.h"
#include "service/sqlite_backup.h"
#include "service/sqlite_flags.h"
#include "service/store_url.h"

ABSL_FLAG(std::string, link_address, "127.0.0.1:7400",
          "host:port of the GatewayLink gRPC server (and its health service); "
          "port 0 picks a free one. Default 127.0.0.1:7400.");
ABSL_FLAG(std::string, admin_address, "127.0.0.1:7401",
          "host:port of the Admin gRPC server (with health and reflection); "
          "port 0 picks a free one. Default 127.0.0.1:7401.");
ABSL_FLAG(std::string, metrics_address, "127.0.0.1:9401",
          "host:port of the HTTP server for /metrics and /healthz; port 0 "
          "picks a free one. Default 127.0.0.1:9401.");
ABSL_FLAG(std::string, store, "",
          "The store, as a URL: sqlite:///absolute/path/parley.db or "
          "sqlite:relative/path/parley.db, an SQLite database file (created "
          "if missing, with its directory; one service per directory; '?', "
          "'#' and '%' are refused), or "
          "postgres://[user[:password]@]host[:port]/dbname[?param=value], "
          "a PostgreSQL database that several replicas may share (libpq's "
          "URL, given to libpq as is; the schema is created or migrated at "
          "start). Default empty: parley.db in --data_dir; when set, "
          "--data_dir is not used.");
ABSL_FLAG(std::string, data_dir, "./data",
          "Directory holding the SQLite database parley.db (created if "
          "missing) when --store is not set. Default ./data.");
ABSL_FLAG(std::string, token_secret, "",
          "HS256 secret that client tokens without a kid are signed with. "
          "Required unless --token_keys_file or --token_jwks_file gives the "
          "keys; no default.");
ABSL_FLAG(std::string, token_keys_file, "",
          "File of more HS256 keys, one \"KID SECRET\" per line ('#' "
          "comments): a token whose header names a kid is checked with that "
          "key. Several at once is how keys are rotated (docs/operators.md). "
          "Read again within --token_reload_interval of a change. Default "
          "none.");
ABSL_FLAG(std::string, token_signing_kid, "",
          "The kid of the HS256 key IssueToken signs with (one of "
          "--token_keys_file). Default empty: --token_secret's key.");
ABSL_FLAG(std::string, token_jwks_file, "",
          "JWKS file (RFC 7517) of RS256 and ES256 (P-256) public keys: "
          "tokens an identity provider signs are checked with the key their "
          "kid names. Read again within --token_reload_interval of a change. "
          "Default none.");
ABSL_FLAG(std::string, token_issuer, "",
          "When set, a token's iss claim must equal it. Default empty (not "
          "checked).");
ABSL_FLAG(std::string, token_audience, "",
          "When set, a token's aud claim (a string or a list) must contain "
          "it. Default empty (not checked).");
ABSL_FLAG(std::string, webhook_url, "",
          "Offline-notification webhook: for each recipient of a message who "
          "has no live session, a signed JSON notice is POSTed here "
          "(proto/parley/v1/webhook.proto; connect APNs/FCM behind it). "
          "http:// or https://. Default empty: off.");
ABSL_FLAG(std::string, webhook_secret, "",
          "HMAC-SHA256 key of the webhook's X-Parley-Signature header. "
          "Required with --webhook_url.");
ABSL_FLAG(bool, webhook_preview, true,
          "Whether webhook notices carry the start of the message text. "
          "Default true.");
ABSL_FLAG(uint32_t, webhook_preview_bytes, 100,
          "Longest text preview in a webhook notice, in bytes (cut at a "
          "character). Default 100.");
ABSL_FLAG(uint32_t, webhook_max_queued, 10000,
          "Most webhook notices waiting, retries included; beyond it new "
          "ones are dropped (parley_service_webhook_notices_total"
          "{result=\"dropped\"}). Default 10000.");
ABSL_FLAG(int32_t, webhook_max_attempts, 6,
          "Posts per webhook notice before it is given up (429, 5xx and no "
          "response are retried with exponential backoff from 1s to 1m). "
          "Default 6.");
ABSL_FLAG(absl::Duration, webhook_timeout, absl::Seconds(5),
          "Longest one webhook POST may take. Default 5s.");
ABSL_FLAG(absl::Duration, token_reload_interval, absl::Seconds(5),
          "How often --token_keys_file and --token_jwks_file are checked for "
          "changes. Default 5s.");
ABSL_FLAG(std::string, admin_key, "",
          "Key the admin API expects as 'authorization: Bearer <key>'. "
          "Required; no default.");
ABSL_FLAG(absl::Duration, token_ttl, absl::Hours(24),
          "Lifetime of tokens minted by IssueToken when the request gives "
          "none (a duration such as 24h). Default 24h.");
ABSL_FLAG(absl::Duration, max_token_ttl, absl::Hours(24 * 365),
          "Longest lifetime IssueToken accepts (a duration). Default 8760h.");
ABSL_FLAG(uint32_t, max_text_bytes, 4096,
          "Longest message or broadcast text, in bytes of UTF-8. Default "
          "4096.");
ABSL_FLAG(absl::Duration, edit_window, absl::Hours(48),
          "How long after sending a user may edit or delete their own "
          "message (a duration; 0 = no limit). Operators' deletes "
          "(DeleteMessage) have none. Default 48h.");
ABSL_FLAG(uint32_t, max_group_members, 1000,
          "Most members in one group, whether clients or the admin API "
          "change it. Default 1000.");
ABSL_FLAG(uint32_t, default_page_size, 100,
          "Page size (messages, users, groups) when a request asks for 0. "
          "Default 100.");
ABSL_FLAG(uint32_t, max_page_size, 1000,
          "Largest page size; larger requests are capped. Default 1000.");
ABSL_FLAG(uint32_t, max_sessions_per_user, 16,
          "Most live sessions of one user on one replica; more are rejected "
          "(TOO_MANY_SESSIONS, close 4029). With --nats the limit holds per "
          "replica, not across the cluster. Default 16.");
ABSL_FLAG(std::string, nats, "",
          "Comma-separated NATS server URLs (nats://host:port) over which "
          "replicas sharing one store deliver to each other's sessions; "
          "empty: no bus, one replica. The service starts and keeps serving "
          "while NATS is down and catches sessions up when it is back. "
          "Default empty.");
ABSL_FLAG(std::string, nats_subject_prefix, "parley",
          "First token of every NATS subject this cluster uses, so clusters "
          "can share a NATS server. Default parley.");
ABSL_FLAG(std::string, replica_id, "",
          "This replica's id, unique in the cluster (with --nats); empty: "
          "hostname:port of --link_address, or hostname and a random suffix "
          "when that port is 0. Default empty.");
ABSL_FLAG(uint32_t, max_replay, 1000,
          "Most messages replayed to a session that opens with resume_after; "
          "a client further behind syncs. Default 1000.");
ABSL_FLAG(absl::Duration, presence_grace, absl::Seconds(30),
          "How long users of a lost gateway stream stay online waiting for "
          "the gateway to re-announce them before their contacts see them "
          "offline (a duration). Default 30s.");
ABSL_FLAG(uint32_t, presence_max_group_members, 100,
          "Groups up to this many members make their members each other's "
          "contacts for presence; larger groups do not (direct conversations "
          "always do). Default 100.");
ABSL_FLAG(uint32_t, worker_threads, 4,
          "Threads running link events and store reads (never one per "
          "stream). Default 4.");
ABSL_FLAG(uint32_t, link_max_queued_events, 100000,
          "Events queued for one gateway stream beyond which the stream is "
          "ended with UNAVAILABLE (the gateway is not reading). Default "
          "100000.");
ABSL_FLAG(absl::Duration, shutdown_timeout, absl::Seconds(10),
          "How long SIGTERM may take: drain, flush, close streams (a "
          "duration). Default 10s.");
ABSL_FLAG(std::string, from, "",
          "Only for `parley-service restore`: the backup file (written by "
          "`parleyctl backup`) that replaces the SQLite database (the one "
          "--store names, else parley.db in --data_dir). No default.");

namespace {

// The store --store names, or parley.db in --data_dir without it.
absl::StatusOr<parley::service::StoreUrl> StoreUrlFromFlags() {
  const std::string store = absl::GetFlag(FLAGS_store);
  if (store.empty()) {
    return parley::service::SqliteInDataDir(absl::GetFlag(FLAGS_data_dir));
  }
  absl::StatusOr<parley::service::StoreUrl> url =
      parley::service::ParseStoreUrl(store);
  if (!url.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--store: ", url.status().message()));
  }
  return url;
}

absl::StatusOr<parley::service::ServerOptions> OptionsFromFlags() {
  parley::service::ServerOptions o;
  ASSIGN_OR_RETURN(o.store.url, StoreUrlFromFlags());
  ASSIGN_OR_RETURN(o.store.sqlite,
                   parley::service::SqliteStoreOptionsFromFlags());
  o.link_address = absl::GetFlag(FLAGS_link_address);
  o.admin_address = absl::GetFlag(FLAGS_admin_address);
  o.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  o.token_secret = absl::GetFlag(FLAGS_token_secret);
  o.token_keys_file = absl::GetFlag(FLAGS_token_keys_file);
  o.token_signing_kid = absl::GetFlag(FLAGS_token_signing_kid);
  o.token_jwks_file = absl::GetFlag(FLAGS_token_jwks_file);
  o.token_issuer = absl::GetFlag(FLAGS_token_issuer);
  o.token_audience = absl::GetFlag(FLAGS_token_audience);
  o.token_reload_interval = absl::GetFlag(FLAGS_token_reload_interval);
  o.webhook.url = absl::GetFlag(FLAGS_webhook_url);
  o.webhook.secret = absl::GetFlag(FLAGS_webhook_secret);
  o.webhook.preview = absl::GetFlag(FLAGS_webhook_preview);
  o.webhook.preview_bytes = absl::GetFlag(FLAGS_webhook_preview_bytes);
  o.webhook.max_queued = absl::GetFlag(FLAGS_webhook_max_queued);
  o.webhook.max_attempts = absl::GetFlag(FLAGS_webhook_max_attempts);
  o.webhook.timeout = absl::GetFlag(FLAGS_webhook_timeout);
  o.admin_key = absl::GetFlag(FLAGS_admin_key);
  o.worker_threads = static_cast<int>(absl::GetFlag(FLAGS_worker_threads));
  o.max_sessions_per_user = absl::GetFlag(FLAGS_max_sessions_per_user);
  o.shutdown_timeout = absl::GetFlag(FLAGS_shutdown_timeout);
  o.messaging.max_text_bytes = absl::GetFlag(FLAGS_max_text_bytes);
  o.messaging.edit_window = absl::GetFlag(FLAGS_edit_window);
  o.messaging.default_page_size = absl::GetFlag(FLAGS_default_page_size);
  o.messaging.max_page_size = absl::GetFlag(FLAGS_max_page_size);
  o.messaging.max_replay = static_cast<int>(absl::GetFlag(FLAGS_max_replay));
  o.messaging.presence_grace = absl::GetFlag(FLAGS_presence_grace);
  o.messaging.presence_max_group_members =
      absl::GetFlag(FLAGS_presence_max_group_members);
  o.admin.default_token_ttl = absl::GetFlag(FLAGS_token_ttl);
  o.admin.max_token_ttl = absl::GetFlag(FLAGS_max_token_ttl);
  o.messaging.max_group_members = absl::GetFlag(FLAGS_max_group_members);
  o.admin.default_page_size = o.messaging.default_page_size;
  o.admin.max_page_size = o.messaging.max_page_size;
  o.admin.max_text_bytes = o.messaging.max_text_bytes;
  o.link.max_queued_events = absl::GetFlag(FLAGS_link_max_queued_events);
  o.bus.nats_servers =
      absl::StrSplit(absl::GetFlag(FLAGS_nats), ',', absl::SkipEmpty());
  o.bus.subject_prefix = absl::GetFlag(FLAGS_nats_subject_prefix);
  o.bus.replica_id = absl::GetFlag(FLAGS_replica_id);
  RETURN_IF_ERROR(parley::service::ValidateServerOptions(o));
  return o;
}

// `parley-service restore`: exit code 0 when restored, 1 when refused or
// failed, 2 for bad usage.
int Restore() {
  const std::string from = absl::GetFlag(FLAGS_from);
  if (from.empty()) {
    std::fprintf(stderr,
                 "parley-service restore: --from=BACKUP is required (a file "
                 "written by `parleyctl backup`)\n");
    return 2;
  }
  absl::StatusOr<parley::service::StoreUrl> store = StoreUrlFromFlags();
  if (!store.ok()) {
    std::fprintf(stderr, "parley-service restore: %s\n",
                 std::string(store.status().message()).c_str());
    return 2;
  }
  if (store->scheme != parley::service::StoreUrl::Scheme::kSqlite) {
    std::fprintf(stderr,
                 "parley-service restore: restores an SQLite store only; "
                 "--store names another\n");
    return 2;
  }
  absl::StatusOr<parley::service::RestoreSummary> restored =
      parley::service::RestoreSqliteBackup(from, store->path);
  if (!restored.ok()) {
    std::fprintf(stderr, "parley-service restore: nothing changed: %s\n",
                 std::string(restored.status().message()).c_str());
    return 1;
  }
  const parley::service::BackupSummary& r = restored->restored;
  const std::string old_generation =
      restored->old_generation.ok()
          ? *restored->old_generation
          : absl::StrCat("none (", restored->old_generation.status().message(),
                         ")");
  absl::PrintF(
      "restored %s into %s: integrity ok\n"
      "users              %d\n"
      "groups             %d\n"
      "messages           %d\n"
      "last message id    %d\n"
      "size               %d bytes\n"
      "backup generation  %s\n"
      "old generation     %s\n"
      "new generation     %s\n",
      from, r.path, r.users, r.groups, r.messages, r.last_message_id,
      r.size_bytes,
      restored->backup_generation.empty()
          ? "none (made before store generations)"
          : restored->backup_generation,
      old_generation, r.generation);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<char*> args = parley::ParseConfig(
      argc, argv,
      "parley-service: users, conversations, durable ordered delivery, "
      "offline sync and the admin API.\n"
      "  parley-service --token_secret=S --admin_key=K [--data_dir=./data | "
      "--store=sqlite:///path/parley.db] [--link_address=127.0.0.1:7400]\n"
      "  parley-service restore --from=BACKUP [--data_dir=./data | "
      "--store=URL]   (with no service running on that database)");
  if (args.size() > 1) {
    if (args.size() == 2 && std::string(args[1]) == "restore") {
      return Restore();
    }
    std::fprintf(stderr,
                 "parley-service: unexpected arguments; the only command is "
                 "`restore --from=BACKUP` (see --help)\n");
    return 2;
  }
  const absl::StatusOr<parley::service::ServerOptions> parsed =
      OptionsFromFlags();
  if (!parsed.ok()) {
    std::fprintf(stderr, "parley-service: %s\n",
                 std::string(parsed.status().message()).c_str());
    return 2;
  }
  const parley::service::ServerOptions& options = *parsed;

  // Before any thread exists, so every thread inherits the blocked mask.
  const parley::TerminationSignals signals;

  parley::Registry& registry = parley::DefaultRegistry();
  parley::AddProcessMetrics(registry);
  parley::ExportBuildInfo(registry);
  absl::StatusOr<std::unique_ptr<parley::service::Server>> server =
      parley::service::Server::Start(options, registry);
  if (!server.ok()) {
    parley::LogError("service.start_failed",
                     {{"error", server.status().ToString()}});
    return 1;
  }
  parley::LogInfo("service.ready",
                  {{"link_address", (*server)->link_address()},
                   {"admin_address", (*server)->admin_address()},
                   {"metrics_address", (*server)->metrics_address()},
                   {"database", options.store.url.path},
                   {"sqlite_synchronous", options.store.sqlite.synchronous}});

  const int signal_number = signals.Wait();
  parley::LogInfo("service.signal", {{"signal", signal_number}});
  // If the drain overruns its deadline, exit anyway: every acknowledged
  // message is already durable.
  std::thread([timeout = options.shutdown_timeout] {
    std::this_thread::sleep_for(absl::ToChronoSeconds(timeout) +
                                std::chrono::seconds(1));
    parley::LogError("service.shutdown_overran");
    std::_Exit(1);
  }).detach();
  (*server)->Shutdown();
  server->reset();
  return 0;
}
