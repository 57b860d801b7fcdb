#include "service/store_factory.h"

#include <filesystem>
#include <string>
#include <system_error>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "service/sqlite_backup.h"

namespace parley::service {
namespace {

// The directory of `path` as written ("." for a bare file name), so that
// messages show the directory the way the operator gave it.
std::string Directory(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

absl::StatusOr<OpenedStore> OpenSqlite(const StoreOptions& options,
                                       ServiceMetrics& metrics) {
  const std::string dir = Directory(options.url.path);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot create the database's directory \"", dir,
                     "\": ", ec.message()));
  }
  OpenedStore opened;
  ASSIGN_OR_RETURN(opened.lock, DataDirLock::Acquire(dir));
  SqliteStoreOptions sqlite = options.sqlite;
  sqlite.path = options.url.path;
  sqlite.on_commit = [&metrics](size_t n, absl::Duration latency) {
    metrics.commit_batch_size.Observe(static_cast<double>(n));
    metrics.commit_seconds.Observe(absl::ToDoubleSeconds(latency));
  };
  sqlite.on_checkpoint = [&metrics](CheckpointBy by, absl::Duration latency) {
    (by == CheckpointBy::kWriter ? metrics.writer_checkpoint_seconds
                                 : metrics.checkpointer_seconds)
        .Observe(absl::ToDoubleSeconds(latency));
  };
  ASSIGN_OR_RETURN(std::unique_ptr<SqliteStore> store,
                   SqliteStore::Open(std::move(sqlite)));
  opened.backup =
      std::make_unique<SqliteBackup>(options.url.path, store->Generation());
  opened.store = std::move(store);
  return opened;
}

absl::StatusOr<OpenedStore> OpenPostgres(const StoreOptions& options,
                                         ServiceMetrics& metrics) {
  PgStoreOptions postgres = options.postgres;
  postgres.url = options.url.postgres_url;
  postgres.on_commit = [&metrics](size_t n, absl::Duration latency) {
    metrics.commit_batch_size.Observe(static_cast<double>(n));
    metrics.commit_seconds.Observe(absl::ToDoubleSeconds(latency));
  };
  OpenedStore opened;
  ASSIGN_OR_RETURN(opened.store, PgStore::Open(std::move(postgres)));
  return opened;
}

}  // namespace

absl::StatusOr<OpenedStore> OpenStore(const StoreOptions& options,
                                      ServiceMetrics& metrics) {
  if (options.url.scheme == StoreUrl::Scheme::kPostgres) {
    return OpenPostgres(options, metrics);
  }
  return OpenSqlite(options, metrics);
}

}  // namespace parley::service
