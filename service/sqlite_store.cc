#include "service/sqlite_store.h"

#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <unordered_map>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "service/append_rules.h"
#include "service/conversation.h"
#include "service/sqlite_status.h"
#include "service/wal_write_vfs.h"

namespace parley::service {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS users(
  id TEXT PRIMARY KEY,
  display_name TEXT NOT NULL,
  created_us INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chat_groups(
  id TEXT PRIMARY KEY,
  display_name TEXT NOT NULL,
  created_us INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS members(
  group_id TEXT NOT NULL,
  user_id TEXT NOT NULL,
  role INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(group_id, user_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_by_user ON members(user_id, group_id);
CREATE TABLE IF NOT EXISTS conversations(
  id TEXT PRIMARY KEY,
  user_a TEXT,
  user_b TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS conversations_by_a ON conversations(user_a);
CREATE INDEX IF NOT EXISTS conversations_by_b ON conversations(user_b);
CREATE TABLE IF NOT EXISTS messages(
  id INTEGER PRIMARY KEY,
  conversation TEXT NOT NULL,
  seq INTEGER NOT NULL,
  sender TEXT NOT NULL,
  to_group INTEGER NOT NULL,
  to_id TEXT NOT NULL,
  text TEXT NOT NULL,
  sent_us INTEGER NOT NULL,
  client_msg_id TEXT NOT NULL,
  kind INTEGER NOT NULL DEFAULT 0,
  target_seq INTEGER NOT NULL DEFAULT 0,
  edited_us INTEGER,
  deleted INTEGER NOT NULL DEFAULT 0,
  group_event TEXT,
  UNIQUE(conversation, seq)
);
-- A user's inbox as runs (sqlite_store.h): the row at inbox_seq i names the
-- message at seq s of a conversation and stands for the messages s, s+1, ...
-- of that conversation at i, i+1, ...: `span` of them, or with span 0 (open)
-- as many as the conversation has, up to the user's next row.
CREATE TABLE IF NOT EXISTS inbox(
  user_id TEXT NOT NULL,
  inbox_seq INTEGER NOT NULL,
  message_id INTEGER NOT NULL,
  span INTEGER NOT NULL DEFAULT 1,
  PRIMARY KEY(user_id, inbox_seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sent(
  sender TEXT NOT NULL,
  client_msg_id TEXT NOT NULL,
  message_id INTEGER NOT NULL,
  inbox_seq INTEGER NOT NULL,
  PRIMARY KEY(sender, client_msg_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta(
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS read_cursors(
  user_id TEXT NOT NULL,
  conversation TEXT NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY(user_id, conversation)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS token_revocations(
  user_id TEXT PRIMARY KEY,
  not_before_us INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blocks(
  user_id TEXT NOT NULL,
  blocked TEXT NOT NULL,
  PRIMARY KEY(user_id, blocked)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS blocks_by_blocked ON blocks(blocked, user_id);
)sql";

// Columns added after a table's first release (edit and delete, group
// roles and events), for databases created before them: added when missing,
// in this order.
constexpr const char* kAddedColumns[][3] = {
    {"messages", "kind", "INTEGER NOT NULL DEFAULT 0"},
    {"messages", "target_seq", "INTEGER NOT NULL DEFAULT 0"},
    {"messages", "edited_us", "INTEGER"},
    {"messages", "deleted", "INTEGER NOT NULL DEFAULT 0"},
    {"messages", "group_event", "TEXT"},
    {"members", "role", "INTEGER NOT NULL DEFAULT 0"},
    {"inbox", "span", "INTEGER NOT NULL DEFAULT 1"},
};

// Indexes over the added columns, created once they exist: a delete finds
// the edit events of its target (kind 1) to empty their text.
// inbox_entries: every inbox, one row per message (the runs expanded), for
// operators' queries and the copy to PostgreSQL; the service itself reads
// the runs (ReadInbox).
constexpr const char* kIndexes = R"sql(
CREATE INDEX IF NOT EXISTS messages_edits ON messages(conversation, target_seq)
  WHERE kind = 1;
CREATE VIEW IF NOT EXISTS inbox_entries(user_id, inbox_seq, message_id) AS
SELECT r.user_id, r.inbox_seq + (e.seq - r.seq), e.id FROM (
  SELECT i.user_id, i.inbox_seq, i.span, m.conversation, m.seq,
    LEAD(i.inbox_seq) OVER (PARTITION BY i.user_id ORDER BY i.inbox_seq)
      AS next_inbox_seq
  FROM inbox i JOIN messages m ON m.id = i.message_id) r
JOIN messages e ON e.conversation = r.conversation AND e.seq >= r.seq
  AND (r.span = 0 OR e.seq - r.seq < r.span)
  AND (r.next_inbox_seq IS NULL OR
       e.seq - r.seq < r.next_inbox_seq - r.inbox_seq);
)sql";

// The blocks between ?1 and ?2, either way: (blocker, blocked) rows.
constexpr const char* kBlocksBetweenSql =
    "SELECT user_id, blocked FROM blocks WHERE (user_id = ?1 AND blocked = "
    "?2) OR (user_id = ?2 AND blocked = ?1)";

// A user row with its revocation (users LEFT JOIN token_revocations).
constexpr const char* kGetUserSql =
    "SELECT u.id, u.display_name, u.created_us, r.not_before_us FROM users u "
    "LEFT JOIN token_revocations r ON r.user_id = u.id WHERE u.id = ?1";
constexpr const char* kListUsersSql =
    "SELECT u.id, u.display_name, u.created_us, r.not_before_us FROM users u "
    "LEFT JOIN token_revocations r ON r.user_id = u.id WHERE u.id > ?1 ORDER "
    "BY u.id LIMIT ?2";

// A page of the user's conversations (ListConversations): ?1 the user, then
// after the position (?2 activity, ?3 id), at most ?4. Every conversation of
// the user is ordered by the sent_us of its last message (found through
// messages' (conversation, seq) index), or its group's creation without
// messages; only the page's rows then get their cursors, unread counts and
// titles. Columns: id, peer (NULL for groups), head seq, activity, read seq,
// unread, peer read seq, title, then the last message's (NULL without one).
constexpr const char* kListConversationsSql = R"sql(
WITH mine(id, peer, created_us) AS (
  SELECT id, CASE WHEN user_a = ?1 THEN user_b ELSE user_a END, NULL
    FROM conversations WHERE user_a = ?1 OR user_b = ?1
  UNION ALL
  SELECT 'g:' || g.id, NULL, g.created_us FROM members b
    JOIN chat_groups g ON g.id = b.group_id WHERE b.user_id = ?1
), heads AS (
  SELECT id, peer, created_us,
    (SELECT MAX(seq) FROM messages WHERE conversation = mine.id) AS head,
    (SELECT seq FROM messages WHERE conversation = mine.id AND kind = 0
      ORDER BY seq DESC LIMIT 1) AS last_text
  FROM mine
), ordered AS (
  SELECT h.id, h.peer, COALESCE(h.head, 0) AS head,
    COALESCE(m.sent_us, h.created_us) AS activity, m.id AS last_id
  FROM heads h
    LEFT JOIN messages m ON m.conversation = h.id AND m.seq = h.last_text
), page AS (
  SELECT * FROM ordered WHERE activity < ?2 OR (activity = ?2 AND id < ?3)
  ORDER BY activity DESC, id DESC LIMIT ?4
), cursors AS (
  SELECT p.*, COALESCE((SELECT seq FROM read_cursors WHERE user_id = ?1 AND
    conversation = p.id), 0) AS read_seq FROM page p
)
SELECT w.id, w.peer, w.head, w.activity, w.read_seq,
  (SELECT COUNT(*) FROM messages x WHERE x.conversation = w.id AND
    x.seq > w.read_seq AND x.sender <> ?1 AND x.kind = 0 AND
    x.deleted = 0),
  COALESCE((SELECT seq FROM read_cursors WHERE user_id = w.peer AND
    conversation = w.id), 0),
  CASE WHEN w.peer IS NULL
    THEN (SELECT display_name FROM chat_groups WHERE id = substr(w.id, 3))
    ELSE (SELECT display_name FROM users WHERE id = w.peer) END,
  m.id, m.conversation, m.seq, m.sender, m.to_group, m.to_id, m.text,
  m.sent_us, m.client_msg_id, m.kind, m.target_seq, m.edited_us, m.deleted,
  m.group_event
FROM cursors w LEFT JOIN messages m ON m.id = w.last_id
ORDER BY w.activity DESC, w.id DESC
)sql";

int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }
absl::Time FromMicros(int64_t us) { return absl::FromUnixMicros(us); }

absl::Status NotFoundUser(absl::string_view id) {
  return absl::NotFoundError(absl::StrCat("user \"", id, "\" does not exist"));
}
absl::Status NotFoundGroup(absl::string_view id) {
  return absl::NotFoundError(absl::StrCat("group \"", id, "\" does not exist"));
}

// Why the store cannot write the file `path` or create files beside it (the
// WAL and its index): "Read-only file system", "directory /data: Permission
// denied"; empty if it can.
std::string WhyNotWritable(const std::string& path) {
  if (access(path.c_str(), F_OK) == 0 && access(path.c_str(), W_OK) != 0) {
    return std::strerror(errno);
  }
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "."
                          : slash == 0               ? "/"
                                                     : path.substr(0, slash);
  if (access(dir.c_str(), W_OK) != 0) {
    return absl::StrCat("directory ", dir, ": ", std::strerror(errno));
  }
  return "";
}

}  // namespace

// A sqlite3 connection and its statement cache. Used by one thread at a time.
class SqliteStore::Connection {
 public:
  // A prepared statement borrowed from the cache; reset when it goes away.
  class Stmt {
   public:
    Stmt(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
    ~Stmt() {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;

    Stmt& Bind(int index, absl::string_view text) {
      sqlite3_bind_text(stmt_, index, text.data(),
                        static_cast<int>(text.size()), SQLITE_TRANSIENT);
      return *this;
    }
    Stmt& Bind(int index, int64_t value) {
      sqlite3_bind_int64(stmt_, index, value);
      return *this;
    }
    Stmt& BindU(int index, uint64_t value) {
      return Bind(index, static_cast<int64_t>(value));
    }

    // True with a row, false when done.
    absl::StatusOr<bool> Step() {
      const int rc = sqlite3_step(stmt_);
      if (rc == SQLITE_ROW) return true;
      if (rc == SQLITE_DONE) return false;
      return Error(db_, rc, sqlite3_sql(stmt_));
    }
    // Runs a statement that returns no rows (or ignores them).
    absl::Status Run() {
      for (;;) {
        ASSIGN_OR_RETURN(bool row, Step());
        if (!row) return absl::OkStatus();
      }
    }
    int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
    bool IsNull(int col) const {
      return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
    }
    std::string Text(int col) const {
      const unsigned char* p = sqlite3_column_text(stmt_, col);
      return p == nullptr ? std::string()
                          : std::string(reinterpret_cast<const char*>(p),
                                        sqlite3_column_bytes(stmt_, col));
    }

   private:
    sqlite3* db_;
    sqlite3_stmt* stmt_;
  };

  static absl::Status Error(sqlite3* db, int rc, absl::string_view what) {
    return SqliteStatus(db, rc, what);
  }

  static absl::StatusOr<std::unique_ptr<Connection>> Open(
      const SqliteStoreOptions& options) {
    absl::StatusOr<std::unique_ptr<Connection>> conn = OpenUnchecked(options);
    if (conn.ok()) return conn;
    // SQLite's own reasons ("unable to open database file") rarely say why.
    const std::string why = WhyNotWritable(options.path);
    if (why.empty()) {
      return absl::Status(conn.status().code(),
                          absl::StrCat("cannot use the database ", options.path,
                                       ": ", conn.status().message()));
    }
    return absl::FailedPreconditionError(
        absl::StrCat("cannot use the database ", options.path, ": ", why, " (",
                     conn.status().message(), ")"));
  }

  ~Connection() {
    for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
    sqlite3_close(db_);
  }

  absl::Status Exec(const std::string& sql) {
    char* err = nullptr;
    const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    if (err != nullptr) sqlite3_free(err);
    if (rc != SQLITE_OK) return Error(db_, rc, sql);
    return absl::OkStatus();
  }

  sqlite3* db() const { return db_; }
  int64_t last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }

  // Where a user's inbox ends: its highest inbox_seq and, when the user's
  // last row is an open run, that run (the next message of its conversation
  // at the next inbox_seq extends it without a write).
  struct InboxTail {
    uint64_t head = 0;
    std::string run_conversation;  // Empty: no open run ends the inbox.
    uint64_t run_inbox_seq = 0;    // The run's row: its inbox_seq and seq.
    uint64_t run_seq = 0;
  };

  // The writer's memory of each user's inbox tail and the highest seq per
  // conversation, so that an append need not look them up (see Head).
  // Valid only while it matches the database as the writer's transaction
  // sees it: ForgetCounters() after anything is rolled back.
  std::unordered_map<std::string, InboxTail>& inbox_tails() {
    return inbox_tails_;
  }
  std::unordered_map<std::string, uint64_t>& conversation_heads() {
    return conversation_heads_;
  }
  void ForgetCounters() {
    inbox_tails_.clear();
    conversation_heads_.clear();
  }

  // The cached statement for `sql`. Prepare failures are programming errors
  // in the fixed SQL of this file, except when the database is unusable.
  // Keyed by the pointer: every statement is a string literal of this file.
  absl::StatusOr<std::unique_ptr<Stmt>> Prepare(const char* sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
      sqlite3_stmt* stmt = nullptr;
      const int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                        &stmt, nullptr);
      if (rc != SQLITE_OK) return Error(db_, rc, sql);
      it = cache_.emplace(sql, stmt).first;
    }
    return std::make_unique<Stmt>(db_, it->second);
  }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}

  static absl::StatusOr<std::unique_ptr<Connection>> OpenUnchecked(
      const SqliteStoreOptions& options) {
    sqlite3* db = nullptr;
    // Gathering is safe only when every commit syncs the WAL.
    const bool gather =
        options.gather_wal_writes &&
        (options.synchronous == "FULL" || options.synchronous == "EXTRA");
    const int rc = sqlite3_open_v2(
        options.path.c_str(), &db,
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
        gather ? WalWriteVfsName() : nullptr);
    if (rc != SQLITE_OK) {
      absl::Status status = Error(db, rc, "opening it");
      sqlite3_close(db);
      return status;
    }
    auto conn = std::unique_ptr<Connection>(new Connection(db));
    // SQLite opens a file it may not write read-only, silently; every write
    // would fail later.
    if (sqlite3_db_readonly(db, "main") == 1) {
      return absl::FailedPreconditionError(
          "SQLite could open it only read-only");
    }
    sqlite3_busy_timeout(
        db, static_cast<int>(absl::ToInt64Milliseconds(options.busy_timeout)));
    RETURN_IF_ERROR(conn->Exec("PRAGMA journal_mode=WAL"));
    RETURN_IF_ERROR(
        conn->Exec(absl::StrCat("PRAGMA synchronous=", options.synchronous)));
    RETURN_IF_ERROR(conn->Exec("PRAGMA foreign_keys=OFF"));
    RETURN_IF_ERROR(
        conn->Exec(absl::StrCat("PRAGMA cache_size=-", options.cache_kib)));
    // Savepoints' statement journals in memory, not in temporary files.
    RETURN_IF_ERROR(conn->Exec("PRAGMA temp_store=MEMORY"));
    return conn;
  }

  sqlite3* db_;
  std::unordered_map<const char*, sqlite3_stmt*> cache_;
  std::unordered_map<std::string, InboxTail> inbox_tails_;
  std::unordered_map<std::string, uint64_t> conversation_heads_;
};

namespace {

using Connection = SqliteStore::Connection;
using Stmt = SqliteStore::Connection::Stmt;

// The columns ReadMessage reads, in its order, of `messages m`.
#define PARLEY_MESSAGE_COLUMNS                                           \
  "m.id, m.conversation, m.seq, m.sender, m.to_group, m.to_id, m.text, " \
  "m.sent_us, m.client_msg_id, m.kind, m.target_seq, m.edited_us, "      \
  "m.deleted, m.group_event"

StoredMessage ReadMessage(const Stmt& s, int first) {
  StoredMessage m;
  m.message_id = absl::StrCat(s.Int(first));
  m.conversation = s.Text(first + 1);
  m.seq = static_cast<uint64_t>(s.Int(first + 2));
  m.from = s.Text(first + 3);
  m.to_group = s.Int(first + 4) != 0;
  m.to = s.Text(first + 5);
  m.text = s.Text(first + 6);
  m.sent_at = FromMicros(s.Int(first + 7));
  m.client_msg_id = s.Text(first + 8);
  m.kind = static_cast<MessageKind>(s.Int(first + 9));
  m.target_seq = static_cast<uint64_t>(s.Int(first + 10));
  if (!s.IsNull(first + 11)) m.edited_at = FromMicros(s.Int(first + 11));
  m.deleted = s.Int(first + 12) != 0;
  if (!s.IsNull(first + 13))
    m.group_event = DecodeGroupEvent(s.Text(first + 13));
  return m;
}

// Runs a cached statement without parameters.
absl::Status RunStatement(Connection& c, const char* sql) {
  ASSIGN_OR_RETURN(auto s, c.Prepare(sql));
  return s->Run();
}

absl::StatusOr<bool> UserExists(Connection& c, absl::string_view id) {
  ASSIGN_OR_RETURN(auto s, c.Prepare("SELECT 1 FROM users WHERE id = ?1"));
  s->Bind(1, id);
  return s->Step();
}

absl::StatusOr<bool> GroupExists(Connection& c, absl::string_view id) {
  ASSIGN_OR_RETURN(auto s,
                   c.Prepare("SELECT 1 FROM chat_groups WHERE id = ?1"));
  s->Bind(1, id);
  return s->Step();
}

absl::StatusOr<MemberRoles> GroupMembers(Connection& c, absl::string_view id) {
  ASSIGN_OR_RETURN(auto s, c.Prepare("SELECT user_id, role FROM members "
                                     "WHERE group_id = ?1 ORDER BY user_id"));
  s->Bind(1, id);
  MemberRoles out;
  for (;;) {
    ASSIGN_OR_RETURN(bool row, s->Step());
    if (!row) break;
    out.emplace(s->Text(0), static_cast<GroupRole>(s->Int(1)));
  }
  return out;
}

absl::StatusOr<GroupRecord> LoadGroup(Connection& c, absl::string_view id) {
  GroupRecord g;
  {
    ASSIGN_OR_RETURN(auto s,
                     c.Prepare("SELECT id, display_name, created_us FROM "
                               "chat_groups WHERE id = ?1"));
    s->Bind(1, id);
    ASSIGN_OR_RETURN(bool row, s->Step());
    if (!row) return NotFoundGroup(id);
    g.id = s->Text(0);
    g.display_name = s->Text(1);
    g.created_at = FromMicros(s->Int(2));
  }
  ASSIGN_OR_RETURN(MemberRoles members, GroupMembers(c, id));
  for (const auto& [user, role] : members) {
    g.members.push_back(user);
    if (role != GroupRole::kMember) g.roles[user] = role;
  }
  return g;
}

// Adds `user_ids` (existing users) to the group, keeping it within
// `max_members`.
absl::Status InsertMembers(Connection& c, absl::string_view group_id,
                           const std::vector<std::string>& user_ids,
                           size_t max_members) {
  for (const std::string& u : user_ids) {
    ASSIGN_OR_RETURN(bool exists, UserExists(c, u));
    if (!exists) return NotFoundUser(u);
    ASSIGN_OR_RETURN(auto s, c.Prepare("INSERT OR IGNORE INTO members("
                                       "group_id, user_id) VALUES (?1, ?2)"));
    s->Bind(1, group_id).Bind(2, u);
    RETURN_IF_ERROR(s->Run());
  }
  ASSIGN_OR_RETURN(auto count,
                   c.Prepare("SELECT COUNT(*) FROM members WHERE group_id=?1"));
  count->Bind(1, group_id);
  RETURN_IF_ERROR(count->Step().status());
  const uint64_t n = static_cast<uint64_t>(count->Int(0));
  if (n > max_members) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "group would have ", n, " members; the limit is ", max_members));
  }
  return absl::OkStatus();
}

// Entries kept in each of the writer's counter maps before they start over.
constexpr size_t kMaxCachedCounters = 1 << 20;

// The highest value so far of a gapless sequence (`max_sql`: one `?1`
// parameter, one row), remembered in `heads` so that an append need not look
// it up again. The sequences are not stored as counters that every append
// would update; the rows themselves (inbox, messages) carry them.
absl::StatusOr<uint64_t> Head(Connection& c,
                              std::unordered_map<std::string, uint64_t>& heads,
                              const char* max_sql, const std::string& key) {
  auto it = heads.find(key);
  if (it == heads.end()) {
    ASSIGN_OR_RETURN(auto s, c.Prepare(max_sql));
    s->Bind(1, key);
    RETURN_IF_ERROR(s->Step().status());
    if (heads.size() >= kMaxCachedCounters) heads.clear();
    it = heads.emplace(key, static_cast<uint64_t>(s->Int(0))).first;
  }
  return it->second;
}

using InboxTail = Connection::InboxTail;

// The end of the user's inbox as the database holds it (sqlite_store.h):
// their last row and, if it is an open run, its conversation's head.
absl::StatusOr<InboxTail> QueryTail(Connection& c, const std::string& user) {
  ASSIGN_OR_RETURN(
      auto s, c.Prepare("SELECT i.inbox_seq, i.span, m.conversation, m.seq, "
                        "(SELECT MAX(seq) FROM messages WHERE conversation = "
                        "m.conversation) FROM inbox i JOIN messages m ON m.id "
                        "= i.message_id WHERE i.user_id = ?1 ORDER BY "
                        "i.inbox_seq DESC LIMIT 1"));
  s->Bind(1, user);
  ASSIGN_OR_RETURN(bool row, s->Step());
  InboxTail tail;
  if (!row) return tail;
  const auto inbox_seq = static_cast<uint64_t>(s->Int(0));
  const auto span = static_cast<uint64_t>(s->Int(1));
  const auto seq = static_cast<uint64_t>(s->Int(3));
  if (span > 0) {
    tail.head = inbox_seq + span - 1;
    return tail;
  }
  tail.head = inbox_seq + (static_cast<uint64_t>(s->Int(4)) - seq);
  tail.run_conversation = s->Text(2);
  tail.run_inbox_seq = inbox_seq;
  tail.run_seq = seq;
  return tail;
}

// The user's inbox tail as the writer's transaction sees it, remembered.
// The pointer is valid until the next call.
absl::StatusOr<InboxTail*> WriterTail(Connection& c, const std::string& user) {
  auto& tails = c.inbox_tails();
  auto it = tails.find(user);
  if (it == tails.end()) {
    ASSIGN_OR_RETURN(InboxTail tail, QueryTail(c, user));
    if (tails.size() >= kMaxCachedCounters) tails.clear();
    it = tails.emplace(user, std::move(tail)).first;
  }
  return &it->second;
}

absl::StatusOr<uint64_t> InboxHead(Connection& c, const std::string& user) {
  ASSIGN_OR_RETURN(InboxTail * tail, WriterTail(c, user));
  return tail->head;
}

// Ends the user's open run in `conversation`, if their inbox ends with one,
// at the conversation's head: they leave it, and its later messages are not
// theirs.
absl::Status CloseRun(Connection& c, const std::string& user,
                      const std::string& conversation) {
  ASSIGN_OR_RETURN(InboxTail * tail, WriterTail(c, user));
  if (tail->run_conversation != conversation) return absl::OkStatus();
  ASSIGN_OR_RETURN(auto s, c.Prepare("UPDATE inbox SET span = (SELECT "
                                     "MAX(seq) FROM messages WHERE "
                                     "conversation = ?3) - ?4 + 1 WHERE "
                                     "user_id = ?1 AND inbox_seq = ?2"));
  s->Bind(1, user)
      .BindU(2, tail->run_inbox_seq)
      .Bind(3, conversation)
      .BindU(4, tail->run_seq);
  RETURN_IF_ERROR(s->Run());
  tail->run_conversation.clear();
  return absl::OkStatus();
}

// Reads what the append rules need for `r` (append_rules.h).
absl::StatusOr<AppendSnapshot> ReadSnapshot(Connection& c,
                                            const AppendRequest& r) {
  AppendSnapshot snapshot;
  {
    ASSIGN_OR_RETURN(auto s,
                     c.Prepare("SELECT s.inbox_seq, " PARLEY_MESSAGE_COLUMNS
                               " FROM sent s JOIN messages m ON "
                               "m.id = s.message_id WHERE s.sender = ?1 AND "
                               "s.client_msg_id = ?2"));
    s->Bind(1, r.sender).Bind(2, r.client_msg_id);
    ASSIGN_OR_RETURN(bool row, s->Step());
    if (row) {
      AppendResult& original = snapshot.sent[{r.sender, r.client_msg_id}];
      original.sender_inbox_seq = static_cast<uint64_t>(s->Int(0));
      original.message = ReadMessage(*s, 1);
      return snapshot;  // A duplicate: nothing else matters.
    }
  }
  std::vector<std::string> recipients;
  if (r.to_group) {
    ASSIGN_OR_RETURN(bool group_exists, GroupExists(c, r.to));
    if (group_exists) {
      ASSIGN_OR_RETURN(MemberRoles members, GroupMembers(c, r.to));
      for (const auto& [user, role] : members) recipients.push_back(user);
      snapshot.groups[r.to] = std::move(members);
    }
  } else {
    recipients = DirectPair(r);
    ASSIGN_OR_RETURN(auto s, c.Prepare(kBlocksBetweenSql));
    s->Bind(1, r.sender).Bind(2, r.to);
    for (;;) {
      ASSIGN_OR_RETURN(bool row, s->Step());
      if (!row) break;
      snapshot.blocks.insert({s->Text(0), s->Text(1)});
    }
  }
  // A direct pair holds its sender; an operator is no user.
  std::vector<std::string> named;
  if (r.to_group) {
    if (!ByOperator(r)) named.push_back(r.sender);
  } else {
    named = DirectPair(r);
  }
  named.insert(named.end(), r.group_event.users.begin(),
               r.group_event.users.end());
  // Users a group event adds enter inboxes too.
  recipients.insert(recipients.end(), r.group_event.users.begin(),
                    r.group_event.users.end());
  if (r.kind == MessageKind::kGroupEvent && !ByOperator(r)) {
    recipients.push_back(r.sender);
  }
  for (const std::string& user : named) {
    ASSIGN_OR_RETURN(bool exists, UserExists(c, user));
    if (exists) snapshot.users.insert(user);
  }
  if (r.kind == MessageKind::kEdit || r.kind == MessageKind::kDelete) {
    ASSIGN_OR_RETURN(
        auto s,
        c.Prepare("SELECT " PARLEY_MESSAGE_COLUMNS
                  " FROM messages m WHERE m.conversation = ?1 AND m.seq = "
                  "?2"));
    s->Bind(1, r.conversation).BindU(2, r.target_seq);
    ASSIGN_OR_RETURN(bool row, s->Step());
    if (row)
      snapshot.targets[{r.conversation, r.target_seq}] = ReadMessage(*s, 0);
  }
  for (const std::string& user : recipients) {
    if (snapshot.inbox_heads.count(user) > 0) continue;
    ASSIGN_OR_RETURN(snapshot.inbox_heads[user], InboxHead(c, user));
  }
  ASSIGN_OR_RETURN(snapshot.conversation_heads[r.conversation],
                   Head(c, c.conversation_heads(),
                        "SELECT IFNULL(MAX(seq), 0) FROM messages WHERE "
                        "conversation = ?1",
                        r.conversation));
  return snapshot;
}

// Writes the targets an edit or delete event changed (append_rules.h).
absl::Status WriteTargets(Connection& c, const AppendSnapshot& snapshot) {
  for (const auto& key : snapshot.changed_targets) {
    const StoredMessage& t = snapshot.targets.at(key);
    {
      ASSIGN_OR_RETURN(auto s, c.Prepare("UPDATE messages SET text = ?3, "
                                         "edited_us = ?4, deleted = ?5 WHERE "
                                         "conversation = ?1 AND seq = ?2"));
      s->Bind(1, key.first).BindU(2, key.second).Bind(3, t.text);
      if (t.edited_at != absl::InfinitePast())
        s->Bind(4, ToMicros(t.edited_at));
      s->Bind(5, int64_t{t.deleted ? 1 : 0});
      RETURN_IF_ERROR(s->Run());
    }
    if (t.deleted) {
      ASSIGN_OR_RETURN(auto s, c.Prepare("UPDATE messages SET text = '' "
                                         "WHERE conversation = ?1 AND "
                                         "target_seq = ?2 AND kind = 1"));
      s->Bind(1, key.first).BindU(2, key.second);
      RETURN_IF_ERROR(s->Run());
    }
  }
  return absl::OkStatus();
}

// Writes the groups that group events changed (append_rules.h).
absl::Status WriteGroups(Connection& c, const AppendSnapshot& snapshot) {
  for (const auto& [id, write] : snapshot.group_writes) {
    if (write.created) {
      ASSIGN_OR_RETURN(auto s, c.Prepare("INSERT INTO chat_groups(id, "
                                         "display_name, created_us) VALUES "
                                         "(?1, ?2, ?3)"));
      s->Bind(1, id)
          .Bind(2, write.title.value_or(""))
          .Bind(3, ToMicros(write.created_at));
      RETURN_IF_ERROR(s->Run());
      ASSIGN_OR_RETURN(auto conversation,
                       c.Prepare("INSERT OR IGNORE INTO conversations(id) "
                                 "VALUES (?1)"));
      RETURN_IF_ERROR(conversation->Bind(1, GroupConversation(id)).Run());
    } else if (write.title.has_value()) {
      ASSIGN_OR_RETURN(auto s, c.Prepare("UPDATE chat_groups SET "
                                         "display_name = ?2 WHERE id = ?1"));
      RETURN_IF_ERROR(s->Bind(1, id).Bind(2, *write.title).Run());
    }
    for (const auto& [user, role] : write.members) {
      if (role.has_value()) {
        ASSIGN_OR_RETURN(auto s,
                         c.Prepare("INSERT INTO members(group_id, user_id, "
                                   "role) VALUES (?1, ?2, ?3) ON CONFLICT "
                                   "DO UPDATE SET role = excluded.role"));
        s->Bind(1, id).Bind(2, user).Bind(3, static_cast<int64_t>(*role));
        RETURN_IF_ERROR(s->Run());
      } else {
        ASSIGN_OR_RETURN(auto s, c.Prepare("DELETE FROM members WHERE "
                                           "group_id = ?1 AND user_id = ?2"));
        RETURN_IF_ERROR(s->Bind(1, id).Bind(2, user).Run());
        RETURN_IF_ERROR(CloseRun(c, user, GroupConversation(id)));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status AppendInTransaction(Connection& c, const AppendRequest& r,
                                 AppendResult* result) {
  ASSIGN_OR_RETURN(AppendSnapshot snapshot, ReadSnapshot(c, r));
  std::vector<PlannedAppend> plan = PlanAppends({&r}, snapshot);
  if (!plan[0].result.ok()) return plan[0].result.status();
  *result = std::move(*plan[0].result);
  if (!plan[0].store()) return absl::OkStatus();

  StoredMessage& m = result->message;
  if (!r.to_group && !ByOperator(r) &&
      c.conversation_heads()[r.conversation] == 0) {
    const std::vector<std::string> pair = DirectPair(r);
    ASSIGN_OR_RETURN(auto s, c.Prepare("INSERT OR IGNORE INTO conversations("
                                       "id, user_a, user_b) VALUES (?1, ?2, "
                                       "?3)"));
    s->Bind(1, r.conversation).Bind(2, pair.front()).Bind(3, pair.back());
    RETURN_IF_ERROR(s->Run());
  }
  int64_t rowid = 0;
  {
    ASSIGN_OR_RETURN(
        auto s, c.Prepare("INSERT INTO messages(conversation, seq, sender, "
                          "to_group, to_id, text, sent_us, client_msg_id, "
                          "kind, target_seq, group_event) VALUES (?1, ?2, ?3, "
                          "?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"));
    s->Bind(1, r.conversation)
        .BindU(2, m.seq)
        .Bind(3, r.sender)
        .Bind(4, int64_t{m.to_group ? 1 : 0})
        .Bind(5, m.to)
        .Bind(6, m.text)
        .Bind(7, ToMicros(r.sent_at))
        .Bind(8, r.client_msg_id)
        .Bind(9, static_cast<int64_t>(m.kind))
        .BindU(10, m.target_seq);
    if (m.kind == MessageKind::kGroupEvent) {
      s->Bind(11, EncodeGroupEvent(m.group_event));
    }
    RETURN_IF_ERROR(s->Run());
    rowid = c.last_insert_rowid();
    m.message_id = absl::StrCat(rowid);
  }
  // A recipient whose inbox ends with an open run of this conversation, at
  // the message before this one, has it already; anyone else gets a row.
  for (const InboxEntry& entry : result->recipients) {
    ASSIGN_OR_RETURN(InboxTail * tail, WriterTail(c, entry.user));
    const bool extends =
        tail->run_conversation == m.conversation &&
        entry.inbox_seq - tail->run_inbox_seq == m.seq - tail->run_seq;
    if (!extends) {
      ASSIGN_OR_RETURN(auto s, c.Prepare("INSERT INTO inbox(user_id, "
                                         "inbox_seq, message_id, span) "
                                         "VALUES (?1, ?2, ?3, 0)"));
      s->Bind(1, entry.user).BindU(2, entry.inbox_seq).Bind(3, rowid);
      RETURN_IF_ERROR(s->Run());
      tail->run_conversation = m.conversation;
      tail->run_inbox_seq = entry.inbox_seq;
      tail->run_seq = m.seq;
    }
    tail->head = entry.inbox_seq;
  }
  {
    ASSIGN_OR_RETURN(auto s, c.Prepare("INSERT INTO sent(sender, "
                                       "client_msg_id, message_id, inbox_seq) "
                                       "VALUES (?1, ?2, ?3, ?4)"));
    s->Bind(1, r.sender)
        .Bind(2, r.client_msg_id)
        .Bind(3, rowid)
        .BindU(4, result->sender_inbox_seq);
    RETURN_IF_ERROR(s->Run());
  }
  RETURN_IF_ERROR(WriteTargets(c, snapshot));
  RETURN_IF_ERROR(WriteGroups(c, snapshot));
  // Written: the writer's memory moves on with the rows.
  c.conversation_heads()[r.conversation] = m.seq;
  return absl::OkStatus();
}

// The schema's version, kept in meta as 'schema_version' (databases from
// before it was kept have none: version 1). 2: inboxes as runs, which a
// release before it would misread (it would take each run for one message).
constexpr int64_t kSchemaVersion = 2;

// Brings a database made by an older parley-service to this schema: adds
// the columns it lacks (existing rows take their defaults: text messages,
// never edited or deleted; plain members; an inbox row per message), then
// the indexes over them. Refuses a database a newer release has written.
absl::Status MigrateSchema(Connection& c) {
  {
    ASSIGN_OR_RETURN(auto s, c.Prepare("SELECT CAST(value AS INTEGER) FROM "
                                       "meta WHERE key = 'schema_version'"));
    ASSIGN_OR_RETURN(bool row, s->Step());
    if (row && s->Int(0) > kSchemaVersion) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the database was written by a newer parley-service (schema "
          "version ",
          s->Int(0), "; this release knows up to ", kSchemaVersion,
          "): run that release, or restore a backup taken before the "
          "upgrade"));
    }
  }
  std::set<std::pair<std::string, std::string>> columns;
  for (const char* table : {"messages", "members", "inbox"}) {
    ASSIGN_OR_RETURN(auto s, c.Prepare("SELECT name FROM "
                                       "pragma_table_info(?1)"));
    s->Bind(1, table);
    for (;;) {
      ASSIGN_OR_RETURN(bool row, s->Step());
      if (!row) break;
      columns.insert({table, s->Text(0)});
    }
  }
  for (const auto& [table, name, type] : kAddedColumns) {
    if (columns.count({table, name}) > 0) continue;
    RETURN_IF_ERROR(c.Exec(
        absl::StrCat("ALTER TABLE ", table, " ADD COLUMN ", name, " ", type)));
    LogInfo("store.sqlite_schema_migrated",
            {{"table", table}, {"added_column", name}});
  }
  RETURN_IF_ERROR(c.Exec(kIndexes));
  ASSIGN_OR_RETURN(auto s, c.Prepare("INSERT INTO meta(key, value) VALUES "
                                     "('schema_version', ?1) ON CONFLICT DO "
                                     "UPDATE SET value = excluded.value"));
  return s->Bind(1, absl::StrCat(kSchemaVersion)).Run();
}

// The database's generation; `fresh` is stored first if it has none (a new
// database, or one made before generations existed).
absl::StatusOr<std::string> LoadGeneration(SqliteStore::Connection& c,
                                           const std::string& fresh) {
  {
    ASSIGN_OR_RETURN(auto insert,
                     c.Prepare("INSERT OR IGNORE INTO meta(key, value) "
                               "VALUES('generation', ?1)"));
    RETURN_IF_ERROR(insert->Bind(1, fresh).Run());
  }
  ASSIGN_OR_RETURN(auto select,
                   c.Prepare("SELECT value FROM meta WHERE key='generation'"));
  ASSIGN_OR_RETURN(bool row, select->Step());
  if (!row) return absl::DataLossError("the store has no generation");
  return select->Text(0);
}

}  // namespace

SqliteStore::SqliteStore(SqliteStoreOptions options)
    : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(
    SqliteStoreOptions options) {
  const std::string sync = absl::AsciiStrToUpper(options.synchronous);
  if (sync != "FULL" && sync != "NORMAL" && sync != "OFF" && sync != "EXTRA") {
    return absl::InvalidArgumentError(
        absl::StrCat("sqlite synchronous mode \"", options.synchronous,
                     "\" is not one of FULL, NORMAL, OFF, EXTRA"));
  }
  options.synchronous = sync;
  if (options.max_batch == 0 || options.read_connections < 1 ||
      options.checkpoint_frames < 1 || options.cache_kib < 1) {
    return absl::InvalidArgumentError(
        "max_batch, read_connections, checkpoint_frames and cache_kib must be "
        "at least 1");
  }
  auto store = std::unique_ptr<SqliteStore>(new SqliteStore(options));
  ASSIGN_OR_RETURN(store->writer_conn_, Connection::Open(options));
  absl::Status schema = store->writer_conn_->Exec(kSchema);
  if (schema.ok()) schema = MigrateSchema(*store->writer_conn_);
  if (!schema.ok()) {
    return absl::Status(schema.code(),
                        absl::StrCat("cannot create the schema in ",
                                     options.path, ": ", schema.message()));
  }
  ASSIGN_OR_RETURN(store->generation_,
                   LoadGeneration(*store->writer_conn_, NewStoreGeneration()));
  // Replaces SQLite's automatic checkpoint (which would run inside the
  // writer's COMMIT) with a report of the WAL's length after each commit.
  sqlite3_wal_hook(
      store->writer_conn_->db(),
      [](void* arg, sqlite3*, const char*, int frames) {
        static_cast<SqliteStore*>(arg)->last_wal_frames_ = frames;
        return SQLITE_OK;
      },
      store.get());
  ASSIGN_OR_RETURN(store->checkpoint_conn_, Connection::Open(options));
  for (int i = 0; i < options.read_connections; ++i) {
    ASSIGN_OR_RETURN(std::unique_ptr<Connection> reader,
                     Connection::Open(options));
    RETURN_IF_ERROR(reader->Exec("PRAGMA query_only=1"));
    absl::MutexLock lock(&store->pool_mu_);
    store->idle_readers_.push_back(std::move(reader));
  }
  store->pipeline_ = std::make_unique<CommitPipeline<WriteOp>>(
      CommitPipelineOptions{options.max_batch, options.max_queued,
                            options.max_pending_batches},
      [s = store.get()](std::vector<WriteOp>& batch) {
        return s->CommitBatch(batch);
      });
  store->checkpointer_ =
      std::thread([s = store.get()] { s->CheckpointLoop(); });
  return store;
}

SqliteStore::~SqliteStore() {
  // Commits what is queued and runs its callbacks; then the checkpointer's
  // last pass, and closing the connections checkpoints the rest.
  pipeline_.reset();
  {
    absl::MutexLock lock(&mu_);
    writer_done_ = true;
  }
  if (checkpointer_.joinable()) checkpointer_.join();
}

void SqliteStore::Submit(WriteOp op) { pipeline_->Submit(std::move(op)); }

absl::Status SqliteStore::WriteAndWait(
    std::function<absl::Status(Connection&)> apply) {
  absl::Notification committed;
  absl::Status result;
  Submit({std::move(apply), [&](absl::Status status) {
            result = std::move(status);
            committed.Notify();
          }});
  committed.WaitForNotification();
  return result;
}

void SqliteStore::Flush() { pipeline_->Flush(); }

uint64_t SqliteStore::transactions() const { return pipeline_->transactions(); }

uint64_t SqliteStore::checkpoints() const {
  absl::MutexLock lock(&mu_);
  return checkpoints_;
}

size_t SqliteStore::queued_writes() const { return pipeline_->queued(); }

void SqliteStore::CheckpointLoop() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto due = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        // Frames written since the last checkpoint: all of them if the WAL
        // started over.
        const int pending = wal_frames_ >= checkpoint_mark_
                                ? wal_frames_ - checkpoint_mark_
                                : wal_frames_;
        return writer_done_ || pending >= options_.checkpoint_frames;
      };
      mu_.Await(absl::Condition(&due));
      // Closing the last connection checkpoints what is left.
      if (writer_done_) return;
    }
    Checkpoint(*checkpoint_conn_, CheckpointBy::kCheckpointer);
  }
}

bool SqliteStore::Checkpoint(Connection& c, CheckpointBy by) {
  const absl::Time start = absl::Now();
  absl::MutexLock lock(&checkpoint_mu_);
  int frames = 0;
  const int rc = sqlite3_wal_checkpoint_v2(
      c.db(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &frames, nullptr);
  if (rc == SQLITE_OK) {
    {
      absl::MutexLock state(&mu_);
      checkpoint_mark_ = frames;
      ++checkpoints_;
    }
    if (options_.on_checkpoint) options_.on_checkpoint(by, absl::Now() - start);
    return true;
  }
  // BUSY is transient (a lock SQLite needs for a moment): the next attempt
  // comes an interval later, as after a checkpoint that completed.
  if (rc == SQLITE_BUSY) {
    LogDebug("store.checkpoint_busy", {{"path", options_.path}});
  } else {
    LogWarn("store.checkpoint_failed",
            {{"path", options_.path},
             {"by", by == CheckpointBy::kWriter ? "writer" : "checkpointer"},
             {"reason", sqlite3_errmsg(c.db())}});
  }
  absl::MutexLock state(&mu_);
  checkpoint_mark_ = wal_frames_;
  return false;
}

bool SqliteStore::ApplyBatch(std::vector<WriteOp>& batch, bool savepoints,
                             std::vector<absl::Status>& statuses,
                             absl::Status& lost) {
  Connection& c = *writer_conn_;
  bool all_ok = true;
  for (size_t i = 0; i < batch.size(); ++i) {
    if (savepoints) {
      absl::Status sp = RunStatement(c, "SAVEPOINT op");
      if (!sp.ok()) {
        statuses[i] = sp;
        all_ok = false;
        continue;
      }
    }
    statuses[i] = batch[i].apply(c);
    if (statuses[i].ok()) continue;
    all_ok = false;
    if (sqlite3_get_autocommit(c.db()) != 0) {
      // SQLite rolled the whole transaction back (it does on a full disk or
      // an I/O error): what follows would run, and each SAVEPOINT commit,
      // outside of it.
      lost = statuses[i];
      return false;
    }
    if (!savepoints) return false;
    (void)RunStatement(c, "ROLLBACK TO op");
    c.ForgetCounters();
    (void)RunStatement(c, "RELEASE op");
  }
  return all_ok;
}

bool SqliteStore::WriterCheckpointDue() const {
  if (last_wal_frames_ < 4 * options_.checkpoint_frames) return false;
  if (writer_checkpoint_failed_at_ < 0) return true;
  // After a failure, as after the checkpointer's: an interval later (all of
  // the WAL if it started over meanwhile), not before every transaction.
  const int since = last_wal_frames_ >= writer_checkpoint_failed_at_
                        ? last_wal_frames_ - writer_checkpoint_failed_at_
                        : last_wal_frames_;
  return since >= options_.checkpoint_frames;
}

std::vector<absl::Status> SqliteStore::CommitBatch(
    std::vector<WriteOp>& batch) {
  Connection& c = *writer_conn_;
  const absl::Time start = absl::Now();
  if (WriterCheckpointDue()) {
    // The WAL starts over only once a checkpoint has copied all of it, and a
    // busy writer keeps appending while the checkpointer copies: copy the
    // rest here, between two transactions, so that the next one restarts it.
    // One that fails (the disk is full: the database file cannot grow) is not
    // retried before every transaction.
    writer_checkpoint_failed_at_ =
        Checkpoint(c, CheckpointBy::kWriter) ? -1 : last_wal_frames_;
  }
  std::vector<absl::Status> statuses(batch.size());
  absl::Status lost;
  absl::Status txn = c.Exec("BEGIN IMMEDIATE");
  if (txn.ok() && !ApplyBatch(batch, /*savepoints=*/false, statuses, lost)) {
    // Undo the batch and run it again with a savepoint per operation, so
    // only the failing operations roll back.
    if (sqlite3_get_autocommit(c.db()) == 0) txn = c.Exec("ROLLBACK");
    c.ForgetCounters();
    lost = absl::OkStatus();
    if (txn.ok()) txn = c.Exec("BEGIN IMMEDIATE");
    if (txn.ok()) ApplyBatch(batch, /*savepoints=*/true, statuses, lost);
    if (!lost.ok()) txn = lost;
  }
  if (txn.ok()) txn = c.Exec("COMMIT");
  if (!txn.ok()) {
    // Nothing of the batch is stored. A failed COMMIT may leave the
    // transaction open (BUSY) or SQLite may have rolled it back already (a
    // full disk, an I/O error); the next batch must start afresh either way.
    if (sqlite3_get_autocommit(c.db()) == 0) (void)c.Exec("ROLLBACK");
    c.ForgetCounters();
    for (absl::Status& s : statuses) {
      s = absl::Status(absl::StatusCode::kUnavailable,
                       absl::StrCat("store commit failed: ", txn.message()));
      if (IsDiskFull(txn)) MarkDiskFull(s);
    }
  }
  NoteDiskFull(statuses, txn.ok());
  {
    absl::MutexLock lock(&mu_);
    wal_frames_ = last_wal_frames_;  // The checkpointer may be due.
  }
  if (options_.on_commit) options_.on_commit(batch.size(), absl::Now() - start);
  return statuses;
}

void SqliteStore::NoteDiskFull(const std::vector<absl::Status>& statuses,
                               bool committed) {
  // Near the limit small transactions fit and large ones do not: the episode
  // ends only after a quiet second, not at every commit that fits.
  constexpr absl::Duration kQuiet = absl::Seconds(1);
  size_t refused = 0;
  const absl::Status* first = nullptr;
  for (const absl::Status& s : statuses) {
    if (!IsDiskFull(s)) continue;
    ++refused;
    if (first == nullptr) first = &s;
  }
  const absl::Time now = absl::Now();
  if (refused > 0) {
    if (!disk_full_) {
      LogError("store.disk_full",
               {{"path", options_.path},
                {"reason", first->message()},
                {"writes", "refused (UNAVAILABLE) until space is freed"}});
      disk_full_ = true;
      disk_full_since_ = now;
      refused_while_full_ = 0;
    }
    refused_while_full_ += refused;
    last_refused_ = now;
  } else if (committed && disk_full_ && now - last_refused_ >= kQuiet) {
    LogInfo("store.disk_full_cleared",
            {{"path", options_.path},
             {"refused_writes", refused_while_full_},
             {"full_ms",
              absl::ToInt64Milliseconds(last_refused_ - disk_full_since_)}});
    disk_full_ = false;
    // Space is back: the writer's checkpoint may complete now.
    writer_checkpoint_failed_at_ = -1;
  }
}

template <typename T>
T SqliteStore::WithReader(const std::function<T(Connection&)>& read) {
  std::unique_ptr<Connection> conn;
  {
    absl::MutexLock lock(&pool_mu_);
    auto available = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(pool_mu_) {
      return !idle_readers_.empty();
    };
    pool_mu_.Await(absl::Condition(&available));
    conn = std::move(idle_readers_.back());
    idle_readers_.pop_back();
  }
  T result = read(*conn);
  absl::MutexLock lock(&pool_mu_);
  idle_readers_.push_back(std::move(conn));
  return result;
}

absl::Status SqliteStore::CreateUser(const UserRecord& user) {
  return WriteAndWait([user](Connection& c) -> absl::Status {
    ASSIGN_OR_RETURN(auto s, c.Prepare("INSERT OR IGNORE INTO users(id, "
                                       "display_name, created_us) VALUES (?1, "
                                       "?2, ?3) RETURNING id"));
    s->Bind(1, user.id)
        .Bind(2, user.display_name)
        .Bind(3, ToMicros(user.created_at));
    ASSIGN_OR_RETURN(bool inserted, s->Step());
    if (!inserted) {
      return absl::AlreadyExistsError(
          absl::StrCat("user \"", user.id, "\" already exists"));
    }
    return absl::OkStatus();
  });
}

namespace {

// A row of kGetUserSql or kListUsersSql.
UserRecord ReadUser(const SqliteStore::Connection::Stmt& s) {
  UserRecord user{s.Text(0), s.Text(1), FromMicros(s.Int(2))};
  if (!s.IsNull(3)) user.tokens_not_before = FromMicros(s.Int(3));
  return user;
}

}  // namespace

absl::StatusOr<UserRecord> SqliteStore::GetUser(absl::string_view id) {
  return WithReader<absl::StatusOr<UserRecord>>(
      [id](Connection& c) -> absl::StatusOr<UserRecord> {
        ASSIGN_OR_RETURN(auto s, c.Prepare(kGetUserSql));
        s->Bind(1, id);
        ASSIGN_OR_RETURN(bool row, s->Step());
        if (!row) return NotFoundUser(id);
        return ReadUser(*s);
      });
}

absl::StatusOr<std::vector<UserRecord>> SqliteStore::ListUsers(
    absl::string_view after_id, int limit) {
  return WithReader<absl::StatusOr<std::vector<UserRecord>>>(
      [&](Connection& c) -> absl::StatusOr<std::vector<UserRecord>> {
        ASSIGN_OR_RETURN(auto s, c.Prepare(kListUsersSql));
        s->Bind(1, after_id).Bind(2, int64_t{limit});
        std::vector<UserRecord> out;
        for (;;) {
          ASSIGN_OR_RETURN(bool row, s->Step());
          if (!row) return out;
          out.push_back(ReadUser(*s));
        }
      });
}

absl::Status SqliteStore::DeleteUser(absl::string_view id) {
  return WriteAndWait([user = std::string(id)](Connection& c) -> absl::Status {
    ASSIGN_OR_RETURN(bool exists, UserExists(c, user));
    if (!exists) return NotFoundUser(user);
    for (const char* sql : {
             "DELETE FROM users WHERE id = ?1",
             "DELETE FROM members WHERE user_id = ?1",
             "DELETE FROM inbox WHERE user_id = ?1",
             "DELETE FROM sent WHERE sender = ?1",
             "DELETE FROM read_cursors WHERE user_id = ?1",
             "DELETE FROM token_revocations WHERE user_id = ?1",
             "DELETE FROM blocks WHERE user_id = ?1 OR blocked = ?1",
         }) {
      ASSIGN_OR_RETURN(auto s, c.Prepare(sql));
      s->Bind(1, user);
      RETURN_IF_ERROR(s->Run());
    }
    c.inbox_tails().erase(user);  // A user of the same id starts over.
    return absl::OkStatus();
  });
}

absl::Status SqliteStore::RevokeTokens(absl::string_view id,
                                       absl::Time not_before) {
  return WriteAndWait([user = std::string(id), us = ToMicros(not_before)](
                          Connection& c) -> absl::Status {
    ASSIGN_OR_RETURN(bool exists, UserExists(c, user));
    if (!exists) return NotFoundUser(user);
    ASSIGN_OR_RETURN(
        auto s,
        c.Prepare(
            "INSERT INTO token_revocations(user_id, not_before_us) "
            "VALUES (?1, ?2) ON CONFLICT(user_id) DO UPDATE SET "
            "not_before_us = MAX(not_before_us, excluded.not_before_us)"));
    s->Bind(1, user).Bind(2, us);
    return s->Run();
  });
}

absl::Status SqliteStore::CreateGroup(const GroupRecord& group,
                                      size_t max_members) {
  return WriteAndWait([group, max_members](Connection& c) -> absl::Status {
    {
      ASSIGN_OR_RETURN(auto s, c.Prepare("INSERT OR IGNORE INTO chat_groups("
                                         "id, display_name, created_us) "
                                         "VALUES (?1, ?2, ?3) RETURNING id"));
      s->Bind(1, group.id)
          .Bind(2, group.display_name)
          .Bind(3, ToMicros(group.created_at));
      ASSIGN_OR_RETURN(bool inserted, s->Step());
      if (!inserted) {
        return absl::AlreadyExistsError(
            absl::StrCat("group \"", group.id, "\" already exists"));
      }
    }
    {
      ASSIGN_OR_RETURN(auto s, c.Prepare("INSERT OR IGNORE INTO conversations("
                                         "id) VALUES (?1)"));
      s->Bind(1, absl::StrCat("g:", group.id));
      RETURN_IF_ERROR(s->Run());
    }
    return InsertMembers(c, group.id, group.members, max_members);
  });
}

absl::StatusOr<GroupRecord> SqliteStore::GetGroup(absl::string_view id) {
  return WithReader<absl::StatusOr<GroupRecord>>(
      [id](Connection& c) { return LoadGroup(c, id); });
}

absl::StatusOr<std::vector<GroupRecord>> SqliteStore::ListGroups(
    absl::string_view after_id, int limit) {
  return WithReader<absl::StatusOr<std::vector<GroupRecord>>>(
      [&](Connection& c) -> absl::StatusOr<std::vector<GroupRecord>> {
        std::vector<std::string> ids;
        {
          ASSIGN_OR_RETURN(auto s, c.Prepare("SELECT id FROM chat_groups "
                                             "WHERE id > ?1 ORDER BY id "
                                             "LIMIT ?2"));
          s->Bind(1, after_id).Bind(2, int64_t{limit});
          for (;;) {
            ASSIGN_OR_RETURN(bool row, s->Step());
            if (!row) break;
            ids.push_back(s->Text(0));
          }
        }
        std::vector<GroupRecord> out;
        for (const std::string& id : ids) {
          ASSIGN_OR_RETURN(GroupRecord g, LoadGroup(c, id));
          out.push_back(std::move(g));
        }
        return out;
      });
}

absl::StatusOr<GroupRecord> SqliteStore::AddMembers(
    absl::string_view group_id, const std::vector<std::string>& user_ids,
    size_t max_members) {
  GroupRecord out;
  RETURN_IF_ERROR(WriteAndWait(
      [&, id = std::string(group_id)](Connection& c) -> absl::Status {
        ASSIGN_OR_RETURN(bool exists, GroupExists(c, id));
        if (!exists) return NotFoundGroup(id);
        RETURN_IF_ERROR(InsertMembers(c, id, user_ids, max_members));
        ASSIGN_OR_RETURN(out, LoadGroup(c, id));
        return absl::OkStatus();
      }));
  return out;
}

absl::StatusOr<GroupRecord> SqliteStore::RemoveMembers(
    absl::string_view group_id, const std::vector<std::string>& user_ids) {
  GroupRecord out;
  RETURN_IF_ERROR(WriteAndWait(
      [&, id = std::string(group_id)](Connection& c) -> absl::Status {
        ASSIGN_OR_RETURN(bool exists, GroupExists(c, id));
        if (!exists) return NotFoundGroup(id);
        for (const std::string& u : user_ids) {
          ASSIGN_OR_RETURN(auto s, c.Prepare("DELETE FROM members WHERE "
                                             "group_id = ?1 AND user_id = ?2"));
          s->Bind(1, id).Bind(2, u);
          RETURN_IF_ERROR(s->Run());
          RETURN_IF_ERROR(CloseRun(c, u, GroupConversation(id)));
        }
        ASSIGN_OR_RETURN(out, LoadGroup(c, id));
        return absl::OkStatus();
      }));
  return out;
}

void SqliteStore::Append(AppendRequest request, AppendCallback done) {
  auto result = std::make_shared<AppendResult>();
  auto req = std::make_shared<AppendRequest>(std::move(request));
  Submit({[req, result](Connection& c) {
            *result = AppendResult();
            return AppendInTransaction(c, *req, result.get());
          },
          [result, done = std::move(done)](absl::Status status) {
            if (!status.ok()) {
              done(std::move(status));
            } else {
              done(std::move(*result));
            }
          }});
}

absl::StatusOr<uint64_t> SqliteStore::InboxHead(absl::string_view user) {
  return WithReader<absl::StatusOr<uint64_t>>(
      [user = std::string(user)](Connection& c) -> absl::StatusOr<uint64_t> {
        ASSIGN_OR_RETURN(bool exists, UserExists(c, user));
        if (!exists) return NotFoundUser(user);
        ASSIGN_OR_RETURN(InboxTail tail, QueryTail(c, user));
        return tail.head;
      });
}

absl::StatusOr<std::vector<InboxMessage>> SqliteStore::ReadInbox(
    absl::string_view user, uint64_t after_seq, uint64_t upto_seq, int limit) {
  return WithReader<absl::StatusOr<std::vector<InboxMessage>>>(
      [&](Connection& c) -> absl::StatusOr<std::vector<InboxMessage>> {
        ASSIGN_OR_RETURN(bool exists, UserExists(c, user));
        if (!exists) return NotFoundUser(user);
        std::vector<InboxMessage> out;
        if (limit <= 0) return out;
        const uint64_t last = upto_seq == 0 ? UINT64_MAX : upto_seq;
        if (after_seq >= last) return out;
        // The runs from the one holding after_seq + 1 on, each bounded by
        // its span and by the next run's start.
        ASSIGN_OR_RETURN(
            auto runs,
            c.Prepare("SELECT i.inbox_seq, i.span, m.conversation, m.seq FROM "
                      "inbox i JOIN messages m ON m.id = i.message_id WHERE "
                      "i.user_id = ?1 AND i.inbox_seq >= IFNULL((SELECT "
                      "MAX(inbox_seq) FROM inbox WHERE user_id = ?1 AND "
                      "inbox_seq <= ?2), 0) ORDER BY i.inbox_seq"));
        runs->Bind(1, user).BindU(2, after_seq + 1);
        ASSIGN_OR_RETURN(bool more, runs->Step());
        while (more) {
          const auto inbox_seq = static_cast<uint64_t>(runs->Int(0));
          const auto span = static_cast<uint64_t>(runs->Int(1));
          const std::string conversation = runs->Text(2);
          const auto seq = static_cast<uint64_t>(runs->Int(3));
          if (inbox_seq > last) break;
          ASSIGN_OR_RETURN(more, runs->Step());
          uint64_t count = span > 0 ? span : UINT64_MAX;
          if (more) {
            count = std::min(count,
                             static_cast<uint64_t>(runs->Int(0)) - inbox_seq);
          }
          const uint64_t from = std::max(inbox_seq, after_seq + 1);
          const uint64_t to = std::min(
              last, count == UINT64_MAX ? UINT64_MAX : inbox_seq + count - 1);
          if (from > to) continue;
          ASSIGN_OR_RETURN(
              auto s,
              c.Prepare("SELECT " PARLEY_MESSAGE_COLUMNS
                        " FROM messages m WHERE m.conversation = ?1 AND "
                        "m.seq >= ?2 AND m.seq <= ?3 ORDER BY m.seq LIMIT "
                        "?4"));
          const uint64_t to_seq =
              to == UINT64_MAX
                  ? static_cast<uint64_t>(INT64_MAX)
                  : std::min<uint64_t>(seq + (to - inbox_seq), INT64_MAX);
          s->Bind(1, conversation)
              .BindU(2, seq + (from - inbox_seq))
              .BindU(3, to_seq)
              .Bind(4, static_cast<int64_t>(limit - out.size()));
          for (;;) {
            ASSIGN_OR_RETURN(bool row, s->Step());
            if (!row) break;
            StoredMessage message = ReadMessage(*s, 0);
            const uint64_t at = inbox_seq + (message.seq - seq);
            out.push_back({at, std::move(message)});
          }
          if (out.size() >= static_cast<size_t>(limit)) break;
        }
        return out;
      });
}

absl::StatusOr<HistoryPage> SqliteStore::ReadHistory(
    absl::string_view conversation, uint64_t before_seq, int limit) {
  return WithReader<absl::StatusOr<HistoryPage>>(
      [&](Connection& c) -> absl::StatusOr<HistoryPage> {
        ASSIGN_OR_RETURN(
            auto s,
            c.Prepare("SELECT " PARLEY_MESSAGE_COLUMNS
                      " FROM messages m WHERE m.conversation = ?1 AND m.seq "
                      "< ?2 ORDER BY m.seq DESC LIMIT ?3"));
        // One more than asked tells whether older messages exist.
        s->Bind(1, conversation)
            .Bind(2, before_seq == 0 ? INT64_MAX
                                     : static_cast<int64_t>(before_seq))
            .Bind(3, int64_t{limit} + 1);
        HistoryPage page;
        for (;;) {
          ASSIGN_OR_RETURN(bool row, s->Step());
          if (!row) break;
          page.messages.push_back(ReadMessage(*s, 0));
        }
        if (page.messages.size() > static_cast<size_t>(limit)) {
          page.more = true;
          page.messages.pop_back();
        }
        std::reverse(page.messages.begin(), page.messages.end());
        return page;
      });
}

absl::StatusOr<uint64_t> SqliteStore::ConversationHead(
    absl::string_view conversation) {
  return WithReader<absl::StatusOr<uint64_t>>(
      [conversation](Connection& c) -> absl::StatusOr<uint64_t> {
        ASSIGN_OR_RETURN(auto s, c.Prepare("SELECT IFNULL(MAX(seq), 0) FROM "
                                           "messages WHERE conversation = "
                                           "?1"));
        s->Bind(1, conversation);
        RETURN_IF_ERROR(s->Step().status());
        return static_cast<uint64_t>(s->Int(0));
      });
}

absl::StatusOr<ConversationPage> SqliteStore::ListConversations(
    absl::string_view user, absl::string_view page_token, int limit) {
  if (limit < 1) return absl::InvalidArgumentError("limit must be at least 1");
  ConversationCursor after{INT64_MAX, ""};
  if (!page_token.empty()) {
    ASSIGN_OR_RETURN(after, DecodeConversationCursor(page_token));
  }
  return WithReader<absl::StatusOr<ConversationPage>>(
      [&](Connection& c) -> absl::StatusOr<ConversationPage> {
        ASSIGN_OR_RETURN(bool exists, UserExists(c, user));
        if (!exists) return NotFoundUser(user);
        ASSIGN_OR_RETURN(auto s, c.Prepare(kListConversationsSql));
        // One more than asked tells whether a next page exists.
        s->Bind(1, user)
            .Bind(2, after.activity_us)
            .Bind(3, after.conversation)
            .Bind(4, int64_t{limit} + 1);
        ConversationPage page;
        for (;;) {
          ASSIGN_OR_RETURN(bool row, s->Step());
          if (!row) break;
          ConversationSummary& out = page.conversations.emplace_back();
          out.conversation = s->Text(0);
          out.group = s->IsNull(1);
          out.peer = s->Text(1);
          out.head_seq = static_cast<uint64_t>(s->Int(2));
          out.last_activity = FromMicros(s->Int(3));
          out.read_seq = static_cast<uint64_t>(s->Int(4));
          out.unread = static_cast<uint64_t>(s->Int(5));
          out.peer_read_seq = static_cast<uint64_t>(s->Int(6));
          out.title = s->Text(7);
          if (!out.group && out.title.empty()) out.title = out.peer;
          if (!s->IsNull(8)) out.last_message = ReadMessage(*s, 8);
        }
        if (page.conversations.size() > static_cast<size_t>(limit)) {
          page.conversations.pop_back();
          const ConversationSummary& last = page.conversations.back();
          page.next_page_token = EncodeConversationCursor(
              {ToMicros(last.last_activity), last.conversation});
        }
        return page;
      });
}

absl::StatusOr<uint64_t> SqliteStore::CountUnread(
    absl::string_view user, absl::string_view conversation,
    uint64_t after_seq) {
  return WithReader<absl::StatusOr<uint64_t>>(
      [&](Connection& c) -> absl::StatusOr<uint64_t> {
        ASSIGN_OR_RETURN(auto s, c.Prepare("SELECT COUNT(*) FROM messages "
                                           "WHERE conversation = ?1 AND seq "
                                           "> ?2 AND sender <> ?3 AND kind = 0 "
                                           "AND deleted = 0"));
        s->Bind(1, conversation).BindU(2, after_seq).Bind(3, user);
        RETURN_IF_ERROR(s->Step().status());
        return static_cast<uint64_t>(s->Int(0));
      });
}

void SqliteStore::AdvanceReadCursor(std::string user, std::string conversation,
                                    uint64_t seq, CursorCallback done) {
  auto advanced = std::make_shared<bool>(false);
  Submit({[user = std::move(user), conversation = std::move(conversation), seq,
           advanced](Connection& c) -> absl::Status {
            ASSIGN_OR_RETURN(bool exists, UserExists(c, user));
            if (!exists) return NotFoundUser(user);
            ASSIGN_OR_RETURN(
                auto s,
                c.Prepare("INSERT INTO read_cursors(user_id, conversation, "
                          "seq) VALUES (?1, ?2, ?3) ON CONFLICT(user_id, "
                          "conversation) DO UPDATE SET seq = excluded.seq "
                          "WHERE excluded.seq > read_cursors.seq RETURNING "
                          "seq"));
            s->Bind(1, user).Bind(2, conversation).BindU(3, seq);
            ASSIGN_OR_RETURN(*advanced, s->Step());
            return absl::OkStatus();
          },
          [advanced, done = std::move(done)](absl::Status status) {
            if (!status.ok()) {
              done(std::move(status));
            } else {
              done(*advanced);
            }
          }});
}

absl::StatusOr<uint64_t> SqliteStore::ReadCursor(
    absl::string_view user, absl::string_view conversation) {
  return WithReader<absl::StatusOr<uint64_t>>(
      [&](Connection& c) -> absl::StatusOr<uint64_t> {
        ASSIGN_OR_RETURN(auto s, c.Prepare("SELECT seq FROM read_cursors "
                                           "WHERE user_id = ?1 AND "
                                           "conversation = ?2"));
        s->Bind(1, user).Bind(2, conversation);
        ASSIGN_OR_RETURN(bool row, s->Step());
        return row ? static_cast<uint64_t>(s->Int(0)) : 0;
      });
}

absl::StatusOr<std::vector<std::string>> SqliteStore::Contacts(
    absl::string_view user, size_t max_group_members) {
  return WithReader<absl::StatusOr<std::vector<std::string>>>(
      [user, max_group_members](
          Connection& c) -> absl::StatusOr<std::vector<std::string>> {
        ASSIGN_OR_RETURN(
            auto s,
            c.Prepare(
                "SELECT m2.user_id FROM members m1 JOIN members m2 ON "
                "m2.group_id = m1.group_id WHERE m1.user_id = ?1 AND "
                "m2.user_id <> ?1 AND (SELECT COUNT(*) FROM members m3 "
                "WHERE m3.group_id = m1.group_id) <= ?2 "
                "UNION SELECT c.user_b FROM conversations c JOIN users u ON "
                "u.id = c.user_b WHERE c.user_a = ?1 AND c.user_b <> ?1 "
                "UNION SELECT c.user_a FROM conversations c JOIN users u ON "
                "u.id = c.user_a WHERE c.user_b = ?1 AND c.user_a <> ?1 "
                "EXCEPT SELECT blocked FROM blocks WHERE user_id = ?1 "
                "EXCEPT SELECT user_id FROM blocks WHERE blocked = ?1 "
                "ORDER BY 1"));
        s->Bind(1, user).Bind(2, static_cast<int64_t>(max_group_members));
        std::vector<std::string> out;
        for (;;) {
          ASSIGN_OR_RETURN(bool row, s->Step());
          if (!row) return out;
          out.push_back(s->Text(0));
        }
      });
}

absl::StatusOr<StoreStats> SqliteStore::Stats() {
  return WithReader<absl::StatusOr<StoreStats>>(
      [](Connection& c) -> absl::StatusOr<StoreStats> {
        // Messages are never deleted, so the highest id is their count.
        ASSIGN_OR_RETURN(auto s, c.Prepare("SELECT (SELECT COUNT(*) FROM "
                                           "users), (SELECT IFNULL(MAX(id), 0) "
                                           "FROM messages)"));
        RETURN_IF_ERROR(s->Step().status());
        return StoreStats{static_cast<uint64_t>(s->Int(0)),
                          static_cast<uint64_t>(s->Int(1))};
      });
}

absl::StatusOr<bool> SqliteStore::SetBlocked(absl::string_view user,
                                             absl::string_view other,
                                             bool blocked, size_t max_blocked) {
  if (user == other) {
    return absl::InvalidArgumentError(
        absl::StrCat("user \"", user, "\" cannot block themselves"));
  }
  bool changed = false;
  RETURN_IF_ERROR(WriteAndWait([&, a = std::string(user),
                                b = std::string(other)](
                                   Connection& c) -> absl::Status {
    for (const std::string& id : {a, b}) {
      ASSIGN_OR_RETURN(bool exists, UserExists(c, id));
      if (!exists) return NotFoundUser(id);
    }
    if (!blocked) {
      ASSIGN_OR_RETURN(auto s, c.Prepare("DELETE FROM blocks WHERE user_id = "
                                         "?1 AND blocked = ?2 RETURNING 1"));
      s->Bind(1, a).Bind(2, b);
      ASSIGN_OR_RETURN(changed, s->Step());
      return s->Run();
    }
    {
      ASSIGN_OR_RETURN(auto s, c.Prepare("INSERT OR IGNORE INTO blocks("
                                         "user_id, blocked) VALUES (?1, ?2) "
                                         "RETURNING 1"));
      s->Bind(1, a).Bind(2, b);
      ASSIGN_OR_RETURN(changed, s->Step());
      RETURN_IF_ERROR(s->Run());
    }
    ASSIGN_OR_RETURN(
        auto count,
        c.Prepare("SELECT COUNT(*) FROM blocks WHERE user_id = ?1"));
    count->Bind(1, a);
    RETURN_IF_ERROR(count->Step().status());
    const uint64_t n = static_cast<uint64_t>(count->Int(0));
    if (n > max_blocked) {
      return TooManyBlocksError(a, n - 1, max_blocked);
    }
    return absl::OkStatus();
  }));
  return changed;
}

absl::StatusOr<std::vector<std::string>> SqliteStore::ListBlocked(
    absl::string_view user) {
  return WithReader<absl::StatusOr<std::vector<std::string>>>(
      [user](Connection& c) -> absl::StatusOr<std::vector<std::string>> {
        ASSIGN_OR_RETURN(bool exists, UserExists(c, user));
        if (!exists) return NotFoundUser(user);
        ASSIGN_OR_RETURN(auto s, c.Prepare("SELECT blocked FROM blocks WHERE "
                                           "user_id = ?1 ORDER BY blocked"));
        s->Bind(1, user);
        std::vector<std::string> out;
        for (;;) {
          ASSIGN_OR_RETURN(bool row, s->Step());
          if (!row) return out;
          out.push_back(s->Text(0));
        }
      });
}

absl::StatusOr<bool> SqliteStore::BlockedEitherWay(absl::string_view a,
                                                   absl::string_view b) {
  return WithReader<absl::StatusOr<bool>>(
      [a, b](Connection& c) -> absl::StatusOr<bool> {
        ASSIGN_OR_RETURN(auto s, c.Prepare(kBlocksBetweenSql));
        s->Bind(1, a).Bind(2, b);
        return s->Step();
      });
}

}  // namespace parley::service
