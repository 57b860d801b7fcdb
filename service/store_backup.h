// StoreBackup: writes a checked copy of the live store. The admin API's
// Backup call goes through this interface, so AdminApi knows nothing of the
// store's files; the SQLite store's implementation is SqliteBackup
// (sqlite_backup.h), given to AdminApi by the composition root (server.cc).
//
//   absl::StatusOr<BackupSummary> copy = backup.Write("/backups/a.db");
//   if (copy.ok()) LogInfo("backup", {{"messages", copy->messages}});
//
// Threading: implementations are thread-safe; Write() blocks on disk I/O for
// as long as copying and checking the whole store takes.
#ifndef PARLEY_SERVICE_STORE_BACKUP_H_
#define PARLEY_SERVICE_STORE_BACKUP_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace parley::service {

// What a copy of the store holds, read back from the copy itself.
struct BackupSummary {
  // The copy's path and size.
  std::string path;
  uint64_t size_bytes = 0;
  uint64_t users = 0;
  uint64_t groups = 0;
  uint64_t messages = 0;
  // The highest message id (0 when there are no messages).
  uint64_t last_message_id = 0;
  // The generation of the data (Store::Generation()).
  std::string generation;
};

class StoreBackup {
 public:
  virtual ~StoreBackup() = default;

  // Copies the store as it is now to `path`, then reads the copy back and
  // checks it. `path` is on the service's filesystem: absolute, not yet
  // existing, in an existing directory the service can write. Fails, leaving
  // no file behind, with INVALID_ARGUMENT (path not absolute), ALREADY_EXISTS
  // (path taken), FAILED_PRECONDITION (directory missing or unwritable; the
  // store holds no users and no messages), DATA_LOSS (the copy failed its
  // check) or UNAVAILABLE (I/O).
  virtual absl::StatusOr<BackupSummary> Write(const std::string& path) = 0;
};

}  // namespace parley::service

#endif  // PARLEY_SERVICE_STORE_BACKUP_H_
