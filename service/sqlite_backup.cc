#include "service/sqlite_backup.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/status_macros.h"
#include "service/data_dir_lock.h"
#include "service/sqlite_status.h"
#include "service/store.h"

namespace parley::service {
namespace {

absl::Status ErrnoError(absl::string_view what, const std::string& path,
                        int error) {
  return absl::UnavailableError(
      absl::StrCat(what, " \"", path, "\": ", std::strerror(error)));
}

std::string Parent(const std::string& path) {
  const std::string parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? "." : parent;
}

// Makes a file's (or a directory's) contents durable.
absl::Status Fsync(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open", path, errno);
  const int rc = fsync(fd);
  const int error = errno;
  close(fd);
  if (rc != 0) return ErrnoError("cannot fsync", path, error);
  return absl::OkStatus();
}

// Removes a file; one that is not there is fine.
absl::Status Remove(const std::string& path) {
  if (unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoError("cannot remove", path, errno);
  }
  return absl::OkStatus();
}

// Removes a database file and the journals SQLite keeps beside it.
absl::Status RemoveDatabaseFiles(const std::string& path) {
  for (const char* suffix : {"", "-journal", "-wal", "-shm"}) {
    RETURN_IF_ERROR(Remove(path + suffix));
  }
  return absl::OkStatus();
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// One sqlite3 connection, for one step of a backup or a restore.
class Db {
 public:
  using Rows = std::vector<std::vector<std::string>>;

  static absl::StatusOr<Db> Open(const std::string& path, int flags) {
    sqlite3* db = nullptr;
    const int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
    Db opened(db);
    if (rc != SQLITE_OK) return opened.Error(rc, "opening the database");
    sqlite3_busy_timeout(db, 5000);
    return opened;
  }

  Db(Db&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}
  Db& operator=(Db&&) = delete;
  ~Db() { sqlite3_close(db_); }

  // Runs `sql` with `params` bound to ?1, ?2...; returns every row as text.
  absl::StatusOr<Rows> Query(const std::string& sql,
                             const std::vector<std::string>& params = {}) {
    sqlite3_stmt* stmt = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr);
    if (rc != SQLITE_OK) return Error(rc, sql);
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> finalize(
        stmt, sqlite3_finalize);
    for (size_t i = 0; i < params.size(); ++i) {
      sqlite3_bind_text(stmt, static_cast<int>(i + 1), params[i].data(),
                        static_cast<int>(params[i].size()), SQLITE_TRANSIENT);
    }
    Rows rows;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      std::vector<std::string>& row = rows.emplace_back();
      for (int c = 0; c < sqlite3_column_count(stmt); ++c) {
        const unsigned char* text = sqlite3_column_text(stmt, c);
        row.emplace_back(
            text == nullptr ? "" : reinterpret_cast<const char*>(text),
            sqlite3_column_bytes(stmt, c));
      }
    }
    if (rc != SQLITE_DONE) return Error(rc, sql);
    return rows;
  }

  // The first column of the first row of `sql`, a non-negative integer.
  absl::StatusOr<uint64_t> Number(const std::string& sql) {
    ASSIGN_OR_RETURN(Rows rows, Query(sql));
    uint64_t n = 0;
    if (rows.empty() || rows[0].empty() || !absl::SimpleAtoi(rows[0][0], &n)) {
      return absl::DataLossError(absl::StrCat("no number from: ", sql));
    }
    return n;
  }

 private:
  explicit Db(sqlite3* db) : db_(db) {}

  absl::Status Error(int rc, absl::string_view what) const {
    return SqliteStatus(db_, rc, what);
  }

  sqlite3* db_;
};

bool HasTable(Db& db, const std::string& name) {
  absl::StatusOr<Db::Rows> rows = db.Query(
      "SELECT 1 FROM sqlite_master WHERE type='table' AND name=?1", {name});
  return rows.ok() && !rows->empty();
}

// Reads a copy of the store back and checks it: integrity, schema, counts,
// generation (empty when it has none).
absl::StatusOr<BackupSummary> ReadBack(Db& db, const std::string& path) {
  absl::StatusOr<Db::Rows> integrity = db.Query("PRAGMA integrity_check");
  if (!integrity.ok()) {
    return absl::Status(integrity.status().code(),
                        absl::StrCat("\"", path, "\" cannot be checked: ",
                                     integrity.status().message()));
  }
  if (integrity->size() != 1 || integrity->front().front() != "ok") {
    std::vector<std::string> problems;
    for (size_t i = 0; i < integrity->size() && i < 3; ++i) {
      problems.push_back(integrity->at(i).front());
    }
    return absl::DataLossError(absl::StrCat(
        "\"", path,
        "\" fails PRAGMA integrity_check: ", absl::StrJoin(problems, "; ")));
  }
  for (const char* table : {"users", "chat_groups", "messages"}) {
    if (!HasTable(db, table)) {
      return absl::DataLossError(absl::StrCat(
          "\"", path, "\" is not a Parley store: it has no table ", table));
    }
  }
  BackupSummary summary;
  summary.path = path;
  ASSIGN_OR_RETURN(summary.users, db.Number("SELECT COUNT(*) FROM users"));
  ASSIGN_OR_RETURN(summary.groups,
                   db.Number("SELECT COUNT(*) FROM chat_groups"));
  ASSIGN_OR_RETURN(summary.messages,
                   db.Number("SELECT COUNT(*) FROM messages"));
  ASSIGN_OR_RETURN(summary.last_message_id,
                   db.Number("SELECT IFNULL(MAX(id), 0) FROM messages"));
  if (HasTable(db, "meta")) {
    ASSIGN_OR_RETURN(Db::Rows rows,
                     db.Query("SELECT value FROM meta WHERE key='generation'"));
    if (!rows.empty()) summary.generation = rows[0][0];
  }
  struct stat st;
  if (stat(path.c_str(), &st) != 0)
    return ErrnoError("cannot stat", path, errno);
  summary.size_bytes = static_cast<uint64_t>(st.st_size);
  return summary;
}

// VACUUM INTO `path` (an empty file this backup created) from `live`, then
// the checks of sqlite_backup.h.
absl::StatusOr<BackupSummary> CopyAndCheck(Db& live, const std::string& path,
                                           const std::string& generation,
                                           uint64_t last_message_id) {
  RETURN_IF_ERROR(live.Query("VACUUM INTO ?1", {path}).status());
  RETURN_IF_ERROR(Fsync(path));
  RETURN_IF_ERROR(Fsync(Parent(path)));
  ASSIGN_OR_RETURN(Db copy, Db::Open(path, SQLITE_OPEN_READONLY));
  ASSIGN_OR_RETURN(BackupSummary summary, ReadBack(copy, path));
  if (summary.generation != generation) {
    return absl::DataLossError(
        absl::StrCat("the copy's generation \"", summary.generation,
                     "\" is not the store's \"", generation, "\""));
  }
  if (summary.last_message_id < last_message_id) {
    return absl::DataLossError(
        absl::StrCat("the copy's last message id ", summary.last_message_id,
                     " is below the ", last_message_id,
                     " the store held before the copy began"));
  }
  return summary;
}

// The generation of the database at `db_path`, read with a connection whose
// close copies the database's WAL into it (so that removing the WAL later
// loses nothing). NOT_FOUND when there is no database.
absl::StatusOr<std::string> CurrentGeneration(const std::string& db_path) {
  if (!Exists(db_path)) {
    return absl::NotFoundError(
        absl::StrCat("no database at \"", db_path, "\""));
  }
  ASSIGN_OR_RETURN(Db db, Db::Open(db_path, SQLITE_OPEN_READWRITE));
  ASSIGN_OR_RETURN(Db::Rows rows,
                   db.Query("SELECT value FROM meta WHERE key='generation'"));
  if (rows.empty()) {
    return absl::NotFoundError("the database has no generation");
  }
  return rows[0][0];
}

// Copies the backup to `tmp`, checks the copy and gives it a generation other
// than `old_generation`; fsynced.
absl::StatusOr<RestoreSummary> PrepareCopy(
    const std::string& backup_path, const std::string& tmp,
    const absl::StatusOr<std::string>& old_generation) {
  std::error_code ec;
  std::filesystem::copy_file(backup_path, tmp, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat(
        "cannot copy \"", backup_path, "\" to \"", tmp, "\": ", ec.message()));
  }
  // Writable whatever the backup's mode (backups are often kept read-only).
  std::filesystem::permissions(tmp,
                               std::filesystem::perms::owner_read |
                                   std::filesystem::perms::owner_write |
                                   std::filesystem::perms::group_read |
                                   std::filesystem::perms::others_read,
                               ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot chmod \"", tmp, "\": ", ec.message()));
  }
  RestoreSummary summary;
  {
    ASSIGN_OR_RETURN(Db db, Db::Open(tmp, SQLITE_OPEN_READWRITE));
    ASSIGN_OR_RETURN(summary.restored, ReadBack(db, tmp));
    summary.backup_generation = summary.restored.generation;
    std::string fresh;
    do {
      fresh = NewStoreGeneration();
    } while (fresh == summary.backup_generation ||
             (old_generation.ok() && fresh == *old_generation));
    // As in sqlite_store.cc's schema; a backup made before generations has
    // no meta table.
    RETURN_IF_ERROR(db.Query("CREATE TABLE IF NOT EXISTS meta(key TEXT "
                             "PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
                        .status());
    RETURN_IF_ERROR(db.Query("INSERT OR REPLACE INTO meta(key, value) "
                             "VALUES('generation', ?1)",
                             {fresh})
                        .status());
    summary.restored.generation = fresh;
  }
  RETURN_IF_ERROR(Fsync(tmp));
  struct stat st;
  if (stat(tmp.c_str(), &st) != 0) return ErrnoError("cannot stat", tmp, errno);
  summary.restored.size_bytes = static_cast<uint64_t>(st.st_size);
  return summary;
}

}  // namespace

SqliteBackup::SqliteBackup(std::string db_path, std::string generation)
    : db_path_(std::move(db_path)), generation_(std::move(generation)) {}

absl::StatusOr<BackupSummary> SqliteBackup::Write(const std::string& path) {
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("the backup path \"", path,
                     "\" is not absolute (it is a path on the service's "
                     "filesystem)"));
  }
  const std::string dir = Parent(path);
  struct stat st;
  if (stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("the backup directory \"", dir,
                     "\" does not exist on the service's filesystem"));
  }
  if (access(dir.c_str(), W_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("the service cannot write to the backup directory \"", dir,
                     "\": ", std::strerror(errno)));
  }
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(Db live, Db::Open(db_path_, SQLITE_OPEN_READONLY));
  ASSIGN_OR_RETURN(uint64_t users, live.Number("SELECT COUNT(*) FROM users"));
  ASSIGN_OR_RETURN(uint64_t last_message_id,
                   live.Number("SELECT IFNULL(MAX(id), 0) FROM messages"));
  if (users == 0 && last_message_id == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("nothing to back up: the store \"", db_path_,
                     "\" has no users and no messages; is the service on the "
                     "right data volume?"));
  }
  // Claimed first, so that only a file this backup created is ever removed.
  const int fd =
      open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) {
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(absl::StrCat(
          "\"", path, "\" exists already; a backup writes a new file"));
    }
    return ErrnoError("cannot create", path, errno);
  }
  close(fd);
  absl::StatusOr<BackupSummary> summary =
      CopyAndCheck(live, path, generation_, last_message_id);
  if (!summary.ok()) (void)Remove(path);
  return summary;
}

absl::StatusOr<RestoreSummary> RestoreSqliteBackup(
    const std::string& backup_path, const std::string& db_path) {
  const std::string dir = Parent(db_path);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    return absl::UnavailableError(absl::StrCat(
        "cannot create the data directory \"", dir, "\": ", ec.message()));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<DataDirLock> lock,
                   DataDirLock::Acquire(dir));

  struct stat backup;
  if (stat(backup_path.c_str(), &backup) != 0) {
    if (errno == ENOENT) {
      return absl::NotFoundError(
          absl::StrCat("the backup \"", backup_path, "\" does not exist"));
    }
    return ErrnoError("cannot read the backup", backup_path, errno);
  }
  if (!S_ISREG(backup.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("the backup \"", backup_path, "\" is not a file"));
  }
  struct stat db;
  if (stat(db_path.c_str(), &db) == 0 && db.st_dev == backup.st_dev &&
      db.st_ino == backup.st_ino) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the backup \"", backup_path, "\" is the database itself"));
  }
  // A live database's newest commits are in its WAL, not in the file.
  if (Exists(backup_path + "-wal")) {
    return absl::FailedPreconditionError(absl::StrCat(
        "\"", backup_path,
        "\" has a write-ahead log beside it: it is a live "
        "database, not a backup (make one with `parleyctl backup`)"));
  }

  const absl::StatusOr<std::string> old_generation = CurrentGeneration(db_path);
  const std::string tmp = db_path + ".restoring";
  RETURN_IF_ERROR(RemoveDatabaseFiles(tmp));
  absl::StatusOr<RestoreSummary> summary =
      PrepareCopy(backup_path, tmp, old_generation);
  if (!summary.ok()) {
    (void)RemoveDatabaseFiles(tmp);
    return summary.status();
  }
  summary->old_generation = old_generation;
  summary->restored.path = db_path;

  // The old WAL must not outlive its database: SQLite would apply it to the
  // restored one. CurrentGeneration's close copied it into the old database.
  RETURN_IF_ERROR(Remove(db_path + "-wal"));
  RETURN_IF_ERROR(Remove(db_path + "-shm"));
  if (rename(tmp.c_str(), db_path.c_str()) != 0) {
    const int error = errno;
    (void)RemoveDatabaseFiles(tmp);
    return ErrnoError("cannot rename the restored copy over", db_path, error);
  }
  RETURN_IF_ERROR(Fsync(dir));
  return summary;
}

}  // namespace parley::service
