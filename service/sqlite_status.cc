#include "service/sqlite_status.h"

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"

namespace parley::service {
namespace {

constexpr absl::string_view kDiskFullUrl = "type.parley.dev/store-disk-full";

// SQLITE_FULL, or an I/O error whose system call failed with ENOSPC or
// EDQUOT (a WAL index that cannot grow is SQLITE_IOERR_SHMSIZE).
bool DiskFull(sqlite3* db, int rc) {
  if ((rc & 0xff) == SQLITE_FULL) return true;
  if ((rc & 0xff) != SQLITE_IOERR || db == nullptr) return false;
  const int error = sqlite3_system_errno(db);
  return error == ENOSPC || error == EDQUOT;
}

}  // namespace

absl::Status SqliteStatus(sqlite3* db, int rc, absl::string_view what) {
  std::string detail =
      absl::StrCat("sqlite: ", sqlite3_errstr(rc), " (",
                   db != nullptr ? sqlite3_errmsg(db) : "", ")");
  if ((rc & 0xff) == SQLITE_IOERR && db != nullptr &&
      sqlite3_system_errno(db) != 0) {
    absl::StrAppend(&detail, ": ", std::strerror(sqlite3_system_errno(db)));
  }
  absl::StrAppend(&detail, " in: ", what);
  if (DiskFull(db, rc)) {
    // Retryable: writes succeed again once space is freed.
    absl::Status status = absl::UnavailableError(
        absl::StrCat("the store's disk is full; retry later (", detail, ")"));
    MarkDiskFull(status);
    return status;
  }
  switch (rc & 0xff) {
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::DataLossError(detail);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
      return absl::UnavailableError(detail);
    default:
      return absl::InternalError(detail);
  }
}

bool IsDiskFull(const absl::Status& status) {
  return status.GetPayload(kDiskFullUrl).has_value();
}

void MarkDiskFull(absl::Status& status) {
  status.SetPayload(kDiskFullUrl, absl::Cord());
}

}  // namespace parley::service
