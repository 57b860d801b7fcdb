// Backup and restore of the SQLite store's database file (sqlite_store.h).
//
// SqliteBackup, the StoreBackup of a running service: `VACUUM INTO` from a
// connection of its own to the live database writes the snapshot of one read
// transaction into a compact new file while writes go on (unlike the backup
// API, which starts over whenever another connection writes). It then fsyncs
// the copy, opens it and checks it: PRAGMA integrity_check, the schema, the
// counts, and that it carries the live store's generation and at least the
// messages the store held when the copy began. A copy that fails is removed.
//
// RestoreSqliteBackup, offline (`parley-service restore`): with the data
// directory locked (DataDirLock: refused while a service runs on it), it
// copies the backup next to the database, checks the copy the same way,
// gives it a NEW generation (a restore rewinds seq, inbox_seq and message
// ids, and clients tell positions of another generation by it; store.h),
// fsyncs it, removes the old database's -wal and -shm and renames the copy
// over the database. A crash at any point leaves either the old database or
// the restored one.
//
//   SqliteBackup backup(data_dir + "/parley.db", store.Generation());
//   absl::StatusOr<BackupSummary> copy = backup.Write("/backups/a.db");
//
//   absl::StatusOr<RestoreSummary> restored =
//       RestoreSqliteBackup("/backups/a.db", data_dir + "/parley.db");
//
// Threading: SqliteBackup is thread-safe and runs one backup at a time;
// RestoreSqliteBackup may be called from any thread. Both block on disk I/O.
#ifndef PARLEY_SERVICE_SQLITE_BACKUP_H_
#define PARLEY_SERVICE_SQLITE_BACKUP_H_

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "service/store_backup.h"

namespace parley::service {

class SqliteBackup final : public StoreBackup {
 public:
  // `db_path` is the live database; `generation` is its store's generation,
  // which every copy must carry.
  SqliteBackup(std::string db_path, std::string generation);

  absl::StatusOr<BackupSummary> Write(const std::string& path) override;

 private:
  const std::string db_path_;
  const std::string generation_;
  // Held for a whole backup: two at once to one path must not remove each
  // other's copy.
  absl::Mutex mu_;
};

// What a restore put in place.
struct RestoreSummary {
  // The restored database (path, size, counts) with its new generation.
  BackupSummary restored;
  // The backup's generation; empty for a backup made before generations.
  std::string backup_generation;
  // The replaced database's generation: NOT_FOUND when there was no
  // database, another error when it could not be read.
  absl::StatusOr<std::string> old_generation;
};

// Replaces the database at `db_path` with the backup at `backup_path` (see
// above); creates the database's directory if missing. Fails, changing
// nothing, with FAILED_PRECONDITION (a service or another restore holds the
// directory; the backup is the database itself), NOT_FOUND (no backup),
// DATA_LOSS (the backup fails its check: not a Parley store, or corrupt) or
// UNAVAILABLE (I/O).
absl::StatusOr<RestoreSummary> RestoreSqliteBackup(
    const std::string& backup_path, const std::string& db_path);

}  // namespace parley::service

#endif  // PARLEY_SERVICE_SQLITE_BACKUP_H_
