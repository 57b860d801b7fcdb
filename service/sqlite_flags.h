// The SQLite store's command-line flags (--sqlite_synchronous,
// --sqlite_max_batch, --sqlite_checkpoint_pages, --sqlite_gather_wal_writes;
// each also PARLEY_<FLAG>, common/config.h), read and checked once at start
// into SqliteStoreOptions. Linked only into parley-service, which passes the
// options to OpenStore (store_factory.h) whatever --store names.
//
//   parley::ParseConfig(argc, argv, usage);
//   absl::StatusOr<SqliteStoreOptions> sqlite = SqliteStoreOptionsFromFlags();
//
// Thread-compatible: call from main() before starting threads.
#ifndef PARLEY_SERVICE_SQLITE_FLAGS_H_
#define PARLEY_SERVICE_SQLITE_FLAGS_H_

#include "absl/status/statusor.h"
#include "service/sqlite_store.h"

namespace parley::service {

// The options the --sqlite_* flags give (path and hooks left unset);
// INVALID_ARGUMENT naming the flag on a bad value.
absl::StatusOr<SqliteStoreOptions> SqliteStoreOptionsFromFlags();

}  // namespace parley::service

#endif  // PARLEY_SERVICE_SQLITE_FLAGS_H_
