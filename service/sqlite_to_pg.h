// CopySqliteToPostgres: moves a parley-service store from SQLite to
// PostgreSQL, offline (`parley-store-migrate`, see migrate_main.cc).
//
// With the SQLite database's directory locked (DataDirLock: refused while a
// service runs on it) and the database opened read-only in one read
// transaction, it creates the PostgreSQL schema (PgStore's migrations) and,
// in ONE PostgreSQL transaction, copies users, groups, members,
// conversations, messages (their ids kept), inboxes, idempotency keys, read
// cursors, token revocations and blocks, sets the counters (each conversation's
// last seq, each user's inbox head, the message id sequence) from the copied
// rows, and gives the PostgreSQL store the SQLite store's generation: seq,
// inbox_seq and message ids go on where they were, so the positions clients
// hold stay valid. A target that already holds users, groups or messages is
// refused (FAILED_PRECONDITION) and left untouched; a failure leaves the target
// without data (the transaction rolls back).
//
//   absl::StatusOr<MigrationSummary> done = CopySqliteToPostgres(
//       "/var/lib/parley/parley.db", "postgres://parley@db/parley");
//
// Threading: a plain function; it blocks on disk and network I/O.
#ifndef PARLEY_SERVICE_SQLITE_TO_PG_H_
#define PARLEY_SERVICE_SQLITE_TO_PG_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace parley::service {

// What was copied.
struct MigrationSummary {
  uint64_t users = 0;
  uint64_t groups = 0;
  uint64_t messages = 0;
  uint64_t inbox_entries = 0;
  std::string generation;
};

absl::StatusOr<MigrationSummary> CopySqliteToPostgres(
    const std::string& sqlite_path, const std::string& postgres_url);

}  // namespace parley::service

#endif  // PARLEY_SERVICE_SQLITE_TO_PG_H_
