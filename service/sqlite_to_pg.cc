#include "service/sqlite_to_pg.h"

#include <postgresql/libpq-fe.h>
#include <sqlite3.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "service/data_dir_lock.h"
#include "service/pg_store.h"

namespace parley::service {
namespace {

// One table's copy: rows read from SQLite with `select`, written to
// PostgreSQL with COPY into `copy` (its columns in the same order). A table
// or column that stores made by older versions lack is copied only when the
// SQLite query `only_if` returns a row.
struct TableCopy {
  const char* select;
  const char* copy;
  const char* only_if = nullptr;
};

// Whether the messages table has the columns of edit and delete.
#define PARLEY_HAS_EDITS \
  "SELECT 1 FROM pragma_table_info('messages') WHERE name = 'kind'"
// Whether the store has the columns of user-managed groups (a member's role,
// a group event's change).
#define PARLEY_HAS_GROUPS \
  "SELECT 1 FROM pragma_table_info('members') WHERE name = 'role'"

// Whether the store keeps its inboxes as runs (sqlite_store.h): then the
// view inbox_entries lists them one row per message, as PostgreSQL keeps them.
#define PARLEY_HAS_RUNS \
  "SELECT 1 FROM sqlite_master WHERE type = 'view' AND name = 'inbox_entries'"

constexpr TableCopy kTables[] = {
    {"SELECT u.id, u.display_name, u.created_us, IFNULL(h.head, 0) FROM users "
     "u LEFT JOIN (SELECT user_id, MAX(inbox_seq) AS head FROM inbox_entries "
     "GROUP BY user_id) h ON h.user_id = u.id",
     "users(id, display_name, created_us, inbox_head)", PARLEY_HAS_RUNS},
    // A store from before runs: a row per inbox entry.
    {"SELECT u.id, u.display_name, u.created_us, IFNULL((SELECT "
     "MAX(inbox_seq) FROM inbox i WHERE i.user_id = u.id), 0) FROM users u",
     "users(id, display_name, created_us, inbox_head)",
     "SELECT 1 WHERE NOT EXISTS (" PARLEY_HAS_RUNS ")"},
    {"SELECT id, display_name, created_us FROM chat_groups",
     "chat_groups(id, display_name, created_us)"},
    {"SELECT group_id, user_id, role FROM members",
     "members(group_id, user_id, role)", PARLEY_HAS_GROUPS},
    // A store from before groups had roles: every member a plain one.
    {"SELECT group_id, user_id FROM members", "members(group_id, user_id)",
     "SELECT 1 WHERE NOT EXISTS (" PARLEY_HAS_GROUPS ")"},
    // Every conversation with its highest seq; one without a row of its own
    // (none is expected) still gets its counter.
    {"SELECT c.id, c.user_a, c.user_b, IFNULL((SELECT MAX(seq) FROM "
     "messages m WHERE m.conversation = c.id), 0) FROM conversations c "
     "UNION ALL SELECT conversation, NULL, NULL, MAX(seq) FROM messages "
     "WHERE conversation NOT IN (SELECT id FROM conversations) GROUP BY "
     "conversation",
     "conversations(id, user_a, user_b, last_seq)"},
    {"SELECT id, conversation, seq, sender, CASE WHEN to_group THEN 't' ELSE "
     "'f' END, to_id, text, sent_us, client_msg_id, kind, target_seq, "
     "edited_us, CASE WHEN deleted THEN 't' ELSE 'f' END, group_event FROM "
     "messages",
     "messages(id, conversation, seq, sender, to_group, to_id, text, "
     "sent_us, client_msg_id, kind, target_seq, edited_us, deleted, "
     "group_event)",
     PARLEY_HAS_GROUPS},
    // A store from before groups had events.
    {"SELECT id, conversation, seq, sender, CASE WHEN to_group THEN 't' ELSE "
     "'f' END, to_id, text, sent_us, client_msg_id, kind, target_seq, "
     "edited_us, CASE WHEN deleted THEN 't' ELSE 'f' END FROM messages",
     "messages(id, conversation, seq, sender, to_group, to_id, text, "
     "sent_us, client_msg_id, kind, target_seq, edited_us, deleted)",
     "SELECT 1 WHERE NOT EXISTS (" PARLEY_HAS_GROUPS
     ") AND EXISTS (" PARLEY_HAS_EDITS ")"},
    // A store from before edit and delete: every message a text message.
    {"SELECT id, conversation, seq, sender, CASE WHEN to_group THEN 't' ELSE "
     "'f' END, to_id, text, sent_us, client_msg_id FROM messages",
     "messages(id, conversation, seq, sender, to_group, to_id, text, "
     "sent_us, client_msg_id)",
     "SELECT 1 WHERE NOT EXISTS (" PARLEY_HAS_EDITS ")"},
    {"SELECT user_id, inbox_seq, message_id FROM inbox_entries",
     "inbox(user_id, inbox_seq, message_id)", PARLEY_HAS_RUNS},
    {"SELECT user_id, inbox_seq, message_id FROM inbox",
     "inbox(user_id, inbox_seq, message_id)",
     "SELECT 1 WHERE NOT EXISTS (" PARLEY_HAS_RUNS ")"},
    {"SELECT sender, client_msg_id, message_id, inbox_seq FROM sent",
     "sent(sender, client_msg_id, message_id, inbox_seq)"},
    {"SELECT user_id, conversation, seq FROM read_cursors",
     "read_cursors(user_id, conversation, seq)"},
    {"SELECT user_id, not_before_us FROM token_revocations",
     "token_revocations(user_id, not_before_us)",
     "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = "
     "'token_revocations'"},
    {"SELECT user_id, blocked FROM blocks", "blocks(user_id, blocked)",
     "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'blocks'"},
};

// Whether the query `sql` returns a row.
bool HasRow(sqlite3* db, const char* sql) {
  sqlite3_stmt* stmt = nullptr;
  bool found = false;
  if (sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr) == SQLITE_OK) {
    found = sqlite3_step(stmt) == SQLITE_ROW;
  }
  sqlite3_finalize(stmt);
  return found;
}

// Appends `value` to a COPY text-format line, escaped.
void AppendCopyField(std::string& line, const char* value, int bytes) {
  if (value == nullptr) {
    line += "\\N";
    return;
  }
  for (int i = 0; i < bytes; ++i) {
    const char ch = value[i];
    switch (ch) {
      case '\\':
        line += "\\\\";
        break;
      case '\t':
        line += "\\t";
        break;
      case '\n':
        line += "\\n";
        break;
      case '\r':
        line += "\\r";
        break;
      default:
        line += ch;
    }
  }
}

class Pg {
 public:
  explicit Pg(const std::string& url) : conn_(PQconnectdb(url.c_str())) {}
  ~Pg() { PQfinish(conn_); }

  absl::Status Connected() const {
    if (PQstatus(conn_) == CONNECTION_OK) return absl::OkStatus();
    return absl::UnavailableError(
        absl::StrCat("cannot connect to PostgreSQL: ", Error()));
  }

  // Runs `sql`; the first column of its first row ("" without rows).
  absl::StatusOr<std::string> Exec(const std::string& sql) {
    PGresult* r = PQexec(conn_, sql.c_str());
    const ExecStatusType status = PQresultStatus(r);
    std::string out;
    if (status == PGRES_TUPLES_OK && PQntuples(r) > 0) {
      out = PQgetvalue(r, 0, 0);
    }
    PQclear(r);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      return absl::InternalError(
          absl::StrCat(sql.substr(0, 80), ": ", Error()));
    }
    return out;
  }

  // Copies every row of `select` on `db` into `table`; returns the count.
  absl::StatusOr<uint64_t> Copy(sqlite3* db, const TableCopy& table) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, table.select, -1, &stmt, nullptr) != SQLITE_OK) {
      return absl::InternalError(absl::StrCat("reading SQLite (", table.select,
                                              "): ", sqlite3_errmsg(db)));
    }
    std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> owned(
        stmt, sqlite3_finalize);
    PGresult* start =
        PQexec(conn_, absl::StrCat("COPY ", table.copy, " FROM STDIN").c_str());
    const bool copying = PQresultStatus(start) == PGRES_COPY_IN;
    PQclear(start);
    if (!copying) {
      return absl::InternalError(
          absl::StrCat("COPY ", table.copy, ": ", Error()));
    }
    uint64_t rows = 0;
    std::string buffer;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
      for (int c = 0; c < sqlite3_column_count(stmt); ++c) {
        if (c > 0) buffer += '\t';
        const unsigned char* text = sqlite3_column_text(stmt, c);
        AppendCopyField(buffer, reinterpret_cast<const char*>(text),
                        sqlite3_column_bytes(stmt, c));
      }
      buffer += '\n';
      ++rows;
      if (buffer.size() >= (1 << 20)) RETURN_IF_ERROR(Put(buffer));
    }
    absl::Status status = Put(buffer);
    if (rc != SQLITE_DONE && status.ok()) {
      status = absl::InternalError(
          absl::StrCat("reading SQLite: ", sqlite3_errmsg(db)));
    }
    if (PQputCopyEnd(conn_, status.ok() ? nullptr : "aborted") != 1) {
      return absl::InternalError(Error());
    }
    PGresult* end = PQgetResult(conn_);
    const bool copied = PQresultStatus(end) == PGRES_COMMAND_OK;
    PQclear(end);
    while (PGresult* more = PQgetResult(conn_)) PQclear(more);
    RETURN_IF_ERROR(status);
    if (!copied) {
      return absl::InternalError(
          absl::StrCat("COPY ", table.copy, ": ", Error()));
    }
    return rows;
  }

 private:
  absl::Status Put(std::string& buffer) {
    if (!buffer.empty() &&
        PQputCopyData(conn_, buffer.data(), static_cast<int>(buffer.size())) !=
            1) {
      return absl::InternalError(Error());
    }
    buffer.clear();
    return absl::OkStatus();
  }

  std::string Error() const {
    return std::string(absl::StripAsciiWhitespace(PQerrorMessage(conn_)));
  }

  PGconn* conn_;
};

std::string Directory(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace

absl::StatusOr<MigrationSummary> CopySqliteToPostgres(
    const std::string& sqlite_path, const std::string& postgres_url) {
  ASSIGN_OR_RETURN(std::unique_ptr<DataDirLock> lock,
                   DataDirLock::Acquire(Directory(sqlite_path)));
  sqlite3* raw = nullptr;
  const int rc =
      sqlite3_open_v2(sqlite_path.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr);
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> db(raw, sqlite3_close);
  if (rc != SQLITE_OK) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open the SQLite database ", sqlite_path, ": ",
                     sqlite3_errmsg(raw)));
  }
  // One read transaction: every table from the same snapshot.
  if (sqlite3_exec(db.get(), "BEGIN", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return absl::InternalError(sqlite3_errmsg(db.get()));
  }
  MigrationSummary summary;
  {
    sqlite3_stmt* stmt = nullptr;
    sqlite3_prepare_v2(db.get(),
                       "SELECT value FROM meta WHERE key = 'generation'", -1,
                       &stmt, nullptr);
    if (stmt != nullptr && sqlite3_step(stmt) == SQLITE_ROW) {
      summary.generation =
          reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
    // Only letters and digits are expected (store.h); it is written as a
    // literal below.
    if (!std::all_of(summary.generation.begin(), summary.generation.end(),
                     [](char ch) { return absl::ascii_isalnum(ch); })) {
      return absl::DataLossError(absl::StrCat(sqlite_path,
                                              " has a malformed generation \"",
                                              summary.generation, "\""));
    }
    if (summary.generation.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          sqlite_path,
          " is not a parley-service SQLite store (no generation)"));
    }
  }

  {
    // Creates or migrates the schema as the service would.
    PgStoreOptions options;
    options.url = postgres_url;
    options.read_connections = 1;
    ASSIGN_OR_RETURN(std::unique_ptr<PgStore> schema,
                     PgStore::Open(std::move(options)));
  }
  Pg pg(postgres_url);
  RETURN_IF_ERROR(pg.Connected());
  RETURN_IF_ERROR(pg.Exec("BEGIN").status());
  auto copy = [&]() -> absl::Status {
    // Refuse a target in use; the lock keeps a service that starts meanwhile
    // from writing between the check and the copy.
    RETURN_IF_ERROR(pg.Exec("LOCK TABLE users, chat_groups, messages IN "
                            "EXCLUSIVE MODE")
                        .status());
    ASSIGN_OR_RETURN(std::string held,
                     pg.Exec("SELECT (SELECT count(*) FROM users) + (SELECT "
                             "count(*) FROM chat_groups) + (SELECT count(*) "
                             "FROM messages)"));
    if (held != "0") {
      return absl::FailedPreconditionError(
          "the PostgreSQL database already holds users, groups or messages; "
          "migrate into an empty one");
    }
    for (const TableCopy& table : kTables) {
      if (table.only_if != nullptr && !HasRow(db.get(), table.only_if)) {
        continue;
      }
      ASSIGN_OR_RETURN(uint64_t rows, pg.Copy(db.get(), table));
      const absl::string_view target = table.copy;
      if (absl::StartsWith(target, "users(")) summary.users += rows;
      if (absl::StartsWith(target, "chat_groups(")) summary.groups += rows;
      if (absl::StartsWith(target, "messages(")) summary.messages += rows;
      if (absl::StartsWith(target, "inbox(")) summary.inbox_entries += rows;
    }
    RETURN_IF_ERROR(
        pg.Exec("SELECT setval('messages_id_seq', GREATEST((SELECT max(id) "
                "FROM messages), 1), (SELECT count(*) > 0 FROM messages))")
            .status());
    return pg
        .Exec(absl::StrCat("UPDATE meta SET value = '", summary.generation,
                           "' WHERE key = 'generation'"))
        .status();
  };
  absl::Status copied = copy();
  if (!copied.ok()) {
    (void)pg.Exec("ROLLBACK");
    return copied;
  }
  RETURN_IF_ERROR(pg.Exec("COMMIT").status());
  return summary;
}

}  // namespace parley::service
