// SqliteStatus: what a failed SQLite call means, as an absl::Status, for the
// SQLite adapters (the store and its backup/restore). One mapping, so that a
// caller above the Store sees the same code for the same condition whichever
// of them met it:
//   * a full disk (SQLITE_FULL, or an I/O error whose system call failed with
//     ENOSPC or EDQUOT): UNAVAILABLE "the store's disk is full; retry later",
//     marked so that IsDiskFull() tells it apart;
//   * a corrupt file or one that is no database: DATA_LOSS;
//   * busy, locked, other I/O errors, cannot open: UNAVAILABLE;
//   * anything else: INTERNAL.
// The message names SQLite's reason, the system's (for I/O errors) and the
// statement or step (`what`).
//
// Thread-safe: `db` is only read (its last error), as SQLite allows from the
// thread that made the failed call.
#ifndef PARLEY_SERVICE_SQLITE_STATUS_H_
#define PARLEY_SERVICE_SQLITE_STATUS_H_

#include <sqlite3.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace parley::service {

// The status for result `rc` of a call on `db` (may be null) doing `what`.
absl::Status SqliteStatus(sqlite3* db, int rc, absl::string_view what);

// Whether `status` came from SqliteStatus for a full disk.
bool IsDiskFull(const absl::Status& status);

// Marks `status` as "the disk is full" (a transaction's failure that one of
// its statements met on a full disk).
void MarkDiskFull(absl::Status& status);

}  // namespace parley::service

#endif  // PARLEY_SERVICE_SQLITE_STATUS_H_
