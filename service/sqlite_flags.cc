#include "service/sqlite_flags.h"

#include <cstdint>
#include <string>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

ABSL_FLAG(std::string, sqlite_synchronous, "FULL",
          "SQLite PRAGMA synchronous: FULL (fsync each group commit; an Ack "
          "survives power loss), NORMAL, OFF or EXTRA. Default FULL.");
ABSL_FLAG(uint32_t, sqlite_max_batch, 1024,
          "Most write operations in one group-commit transaction. Default "
          "1024.");
ABSL_FLAG(uint32_t, sqlite_checkpoint_pages, 8192,
          "WAL pages written between two checkpoints (copying the WAL back "
          "into the database, on a thread of its own); the WAL file grows to "
          "at most about four times this many pages of 4 KiB. Default 8192 "
          "(32 MiB).");
ABSL_FLAG(bool, sqlite_gather_wal_writes, true,
          "Write each commit's WAL frames with one call instead of two per "
          "frame (with --sqlite_synchronous FULL or EXTRA, whose commits "
          "sync the WAL). Default true.");

namespace parley::service {

absl::StatusOr<SqliteStoreOptions> SqliteStoreOptionsFromFlags() {
  SqliteStoreOptions o;
  o.synchronous =
      absl::AsciiStrToUpper(absl::GetFlag(FLAGS_sqlite_synchronous));
  if (o.synchronous != "FULL" && o.synchronous != "NORMAL" &&
      o.synchronous != "OFF" && o.synchronous != "EXTRA") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--sqlite_synchronous \"", absl::GetFlag(FLAGS_sqlite_synchronous),
        "\" is not one of FULL, NORMAL, OFF, EXTRA"));
  }
  const uint32_t max_batch = absl::GetFlag(FLAGS_sqlite_max_batch);
  const uint32_t checkpoint_pages =
      absl::GetFlag(FLAGS_sqlite_checkpoint_pages);
  // Larger than INT32_MAX would not fit checkpoint_frames; a WAL of 8 TiB
  // between checkpoints is no setting anyone means.
  if (max_batch < 1 || checkpoint_pages < 1 || checkpoint_pages > INT32_MAX) {
    return absl::InvalidArgumentError(
        "--sqlite_max_batch and --sqlite_checkpoint_pages must be at least 1 "
        "(and --sqlite_checkpoint_pages at most 2147483647)");
  }
  o.max_batch = max_batch;
  o.checkpoint_frames = static_cast<int>(checkpoint_pages);
  o.gather_wal_writes = absl::GetFlag(FLAGS_sqlite_gather_wal_writes);
  return o;
}

}  // namespace parley::service
