// OpenStore: the one place that turns a StoreUrl into a running Store, so
// the composition root (server.cc) holds a Store and a StoreBackup and knows
// no implementation.
//
// For sqlite: it creates the database's directory if missing, locks that
// directory (DataDirLock: one service per database, and no restore under a
// running one), opens SqliteStore with `sqlite` (its path set from the URL)
// and gives it a SqliteBackup. For postgres: it opens PgStore on the URL
// (handed to libpq as given) with `postgres`; there is no StoreBackup (the
// admin API's Backup answers UNIMPLEMENTED: back PostgreSQL up with its own
// tools), no lock (replicas share the database by design).
//
// The store reports its group commits and checkpoints to `metrics`
// (parley_service_store_commit_seconds, ..._commit_batch_size,
// ..._checkpoint_seconds{by}).
//
//   StoreOptions options;
//   ASSIGN_OR_RETURN(options.url, ParseStoreUrl(flag));
//   ASSIGN_OR_RETURN(OpenedStore opened, OpenStore(options, metrics));
//   Messaging messaging(opened.store.get(), ...);
//
// Threading: OpenStore may be called from any thread; it blocks on disk I/O.
#ifndef PARLEY_SERVICE_STORE_FACTORY_H_
#define PARLEY_SERVICE_STORE_FACTORY_H_

#include <memory>

#include "absl/status/statusor.h"
#include "service/data_dir_lock.h"
#include "service/pg_store.h"
#include "service/service_metrics.h"
#include "service/sqlite_store.h"
#include "service/store.h"
#include "service/store_backup.h"
#include "service/store_url.h"

namespace parley::service {

// Which store to open and how.
struct StoreOptions {
  // The store (store_url.h); by default ./data/parley.db.
  StoreUrl url = SqliteInDataDir("./data");
  // Tuning of the SQLite store (sqlite_flags.h); OpenStore sets its path and
  // its metrics hooks.
  SqliteStoreOptions sqlite;
  // Tuning of the PostgreSQL store; OpenStore sets its URL and metrics hook.
  PgStoreOptions postgres;
};

// An open store with what belongs to it. Members are destroyed bottom-up:
// the backup, then the store (committing what is queued), then the lock.
struct OpenedStore {
  // sqlite: the lock on the database's directory; null for stores that keep
  // no local files.
  std::unique_ptr<DataDirLock> lock;
  std::unique_ptr<Store> store;
  // What the admin API's Backup writes copies with.
  std::unique_ptr<StoreBackup> backup;
};

// Opens the store `options.url` names (see above). Fails with the store's
// own error naming the path (or the PostgreSQL server) and the reason
// (UNAVAILABLE: directory cannot be created or written, or PostgreSQL cannot
// be reached; FAILED_PRECONDITION: directory in use, or a PostgreSQL schema
// newer than this binary). `metrics` must outlive the store.
absl::StatusOr<OpenedStore> OpenStore(const StoreOptions& options,
                                      ServiceMetrics& metrics);

}  // namespace parley::service

#endif  // PARLEY_SERVICE_STORE_FACTORY_H_
