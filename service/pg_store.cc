#include "service/pg_store.h"

#include <postgresql/libpq-fe.h>

#include <algorithm>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "service/append_rules.h"

namespace parley::service {
namespace {

// Schema migrations, in order: migration i brings the schema to version
// i + 1. Text keys compare bytewise (COLLATE "C"), as in the SQLite store,
// whatever the cluster's locale: pages, contact lists and the global lock
// order follow it.
constexpr const char* kMigrations[] = {
    R"sql(
CREATE TABLE meta(
  key text COLLATE "C" PRIMARY KEY,
  value text NOT NULL
);
CREATE TABLE users(
  id text COLLATE "C" PRIMARY KEY,
  display_name text NOT NULL,
  created_us bigint NOT NULL,
  inbox_head bigint NOT NULL DEFAULT 0
);
CREATE TABLE chat_groups(
  id text COLLATE "C" PRIMARY KEY,
  display_name text NOT NULL,
  created_us bigint NOT NULL
);
CREATE TABLE members(
  group_id text COLLATE "C" NOT NULL,
  user_id text COLLATE "C" NOT NULL,
  PRIMARY KEY(group_id, user_id)
);
CREATE INDEX members_by_user ON members(user_id, group_id);
CREATE TABLE conversations(
  id text COLLATE "C" PRIMARY KEY,
  user_a text COLLATE "C",
  user_b text COLLATE "C",
  last_seq bigint NOT NULL DEFAULT 0
);
CREATE INDEX conversations_by_a ON conversations(user_a);
CREATE INDEX conversations_by_b ON conversations(user_b);
CREATE TABLE messages(
  id bigserial PRIMARY KEY,
  conversation text COLLATE "C" NOT NULL,
  seq bigint NOT NULL,
  sender text COLLATE "C" NOT NULL,
  to_group boolean NOT NULL,
  to_id text COLLATE "C" NOT NULL,
  text text NOT NULL,
  sent_us bigint NOT NULL,
  client_msg_id text COLLATE "C" NOT NULL,
  UNIQUE(conversation, seq)
);
-- Each connection takes ids 1024 at a time: unique, not in commit order.
ALTER SEQUENCE messages_id_seq CACHE 1024;
CREATE TABLE inbox(
  user_id text COLLATE "C" NOT NULL,
  inbox_seq bigint NOT NULL,
  message_id bigint NOT NULL,
  PRIMARY KEY(user_id, inbox_seq)
);
CREATE TABLE sent(
  sender text COLLATE "C" NOT NULL,
  client_msg_id text COLLATE "C" NOT NULL,
  message_id bigint NOT NULL,
  inbox_seq bigint NOT NULL,
  PRIMARY KEY(sender, client_msg_id)
);
CREATE TABLE read_cursors(
  user_id text COLLATE "C" NOT NULL,
  conversation text COLLATE "C" NOT NULL,
  seq bigint NOT NULL,
  PRIMARY KEY(user_id, conversation)
);
)sql",
    // 2: token revocation (Store::RevokeTokens).
    R"sql(
CREATE TABLE token_revocations(
  user_id text COLLATE "C" PRIMARY KEY,
  not_before_us bigint NOT NULL
);
)sql",
    // 3: blocking (Store::SetBlocked).
    R"sql(
CREATE TABLE blocks(
  user_id text COLLATE "C" NOT NULL,
  blocked text COLLATE "C" NOT NULL,
  PRIMARY KEY(user_id, blocked)
);
CREATE INDEX blocks_by_blocked ON blocks(blocked, user_id);
)sql",
    // 4: edit and delete: a message's kind (0 text, 1 edit, 2 delete), the
    // seq an event changes, and a text message's edit time and tombstone.
    // A delete finds the edit events of its target to empty their text.
    R"sql(
ALTER TABLE messages ADD COLUMN kind smallint NOT NULL DEFAULT 0,
  ADD COLUMN target_seq bigint NOT NULL DEFAULT 0,
  ADD COLUMN edited_us bigint,
  ADD COLUMN deleted boolean NOT NULL DEFAULT false;
CREATE INDEX messages_edits ON messages(conversation, target_seq)
  WHERE kind = 1;
)sql",
    // 5: user-managed groups: a member's role (0 member, 1 admin, 2 owner)
    // and a group event's change (store.h's EncodeGroupEvent).
    R"sql(
ALTER TABLE members ADD COLUMN role smallint NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN group_event text;
)sql",
    // 6: each writer's last committed transaction id, from which a writer
    // that lost its connection during a COMMIT learns whether it took effect
    // (PgStore::ResolveInDoubt).
    R"sql(
CREATE TABLE writer_commits(
  writer text COLLATE "C" PRIMARY KEY,
  xact xid8 NOT NULL
);
)sql",
};

// The advisory lock key under which replicas migrate one at a time.
constexpr int64_t kMigrationLock = 0x7061726c6579;  // "parley"

constexpr const char* kMessageColumns =
    "m.id, m.conversation, m.seq, m.sender, m.to_group, m.to_id, m.text, "
    "m.sent_us, m.client_msg_id, m.kind, m.target_seq, m.edited_us, "
    "m.deleted, m.group_event";

// The prepared statements, by index.
enum Stmt : int {
  // The writer's batch, round trip 1.
  kLockConversations,
  kLockUsers,
  kReadGroups,
  kReadBlocks,
  kReadSent,
  kReadCursors,
  kAllocateMessageIds,
  // Round trip 2.
  kInsertMessages,
  kInsertInbox,
  kInsertSent,
  kAdvanceConversations,
  kAdvanceInboxHeads,
  kWriteCursors,
  kMarkCommit,
  // Edit and delete events: read their targets in round trip 1, change them
  // in round trip 2.
  kReadTargets,
  kUpdateTargets,
  kScrubEdits,
  // Group events: the groups they create, rename and change the members of,
  // in round trip 2.
  kInsertGroups,
  kInsertGroupConversations,
  kRenameGroups,
  kUpsertMembers,
  kRemoveMembers,
  // Admin writes.
  kInsertUser,
  kLockUserGroups,
  kLockUser,
  kDeleteUser,
  kInsertGroup,
  kInsertGroupConversation,
  kShareUsers,
  kInsertMembers,
  kCountMembers,
  kLockGroupConversation,
  kDeleteMembers,
  kRevokeTokens,
  kLockUserPair,
  kInsertBlock,
  kDeleteBlock,
  kCountBlocks,
  // Reads.
  kGetUser,
  kListUsers,
  kUserExists,
  kGetGroup,
  kGroupMembers,
  kListGroupIds,
  kInboxHead,
  kReadInbox,
  kReadHistory,
  kConversationHead,
  kReadCursor,
  kContacts,
  kListBlocked,
  kBlockedEitherWay,
  kStats,
  kListConversations,
  kCountUnread,
  kReadCommitMark,
  kEndOtherBackends,
  kStmtCount,
};

// A page of the user's conversations (ListConversations), as in the SQLite
// store: $1 the user, then after the position ($2 activity, $3 id), at most
// $4. Every conversation of the user is ordered by the sent_us of its last
// message (through messages' (conversation, seq) index), or its group's
// creation without messages; only the page's rows then get their cursors,
// unread counts and titles. Columns: id, peer (NULL for groups), head seq,
// activity, read seq, unread, peer read seq, title, then the last message's
// (NULL without one).
constexpr const char* kListConversationsSql = R"sql(
WITH mine(id, peer, created_us) AS (
  SELECT id, CASE WHEN user_a = $1 THEN user_b ELSE user_a END, NULL
    FROM conversations WHERE user_a = $1 OR user_b = $1
  UNION ALL
  SELECT 'g:' || g.id, NULL, g.created_us FROM members b
    JOIN chat_groups g ON g.id = b.group_id WHERE b.user_id = $1
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
  SELECT * FROM ordered
  WHERE activity < $2::int8 OR (activity = $2::int8 AND id < $3)
  ORDER BY activity DESC, id DESC LIMIT $4::int8
), cursors AS (
  SELECT p.*, COALESCE((SELECT seq FROM read_cursors WHERE user_id = $1 AND
    conversation = p.id), 0) AS read_seq FROM page p
)
SELECT w.id, w.peer, w.head, w.activity, w.read_seq,
  (SELECT count(*) FROM messages x WHERE x.conversation = w.id AND
    x.seq > w.read_seq AND x.sender <> $1 AND x.kind = 0 AND
    NOT x.deleted),
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

std::string ReadInboxSql() {
  return absl::StrCat(
      "SELECT i.inbox_seq, ", kMessageColumns,
      " FROM inbox i JOIN messages m ON m.id = i.message_id WHERE i.user_id "
      "= $1 AND i.inbox_seq > $2 AND i.inbox_seq <= $3 ORDER BY i.inbox_seq "
      "LIMIT $4");
}

std::string StatementSql(int stmt) {
  switch (static_cast<Stmt>(stmt)) {
    case kLockConversations:
      // Inserts the direct conversations met for the first time (only
      // between existing users) and locks every counter row, in id order.
      return "INSERT INTO conversations AS c(id, user_a, user_b) "
             "SELECT u.id, u.a, u.b FROM unnest($1::text[], $2::text[], "
             "$3::text[], $4::text[]) AS u(id, a, b, grp) WHERE CASE WHEN "
             "u.grp IS NOT NULL THEN EXISTS (SELECT 1 FROM chat_groups g "
             "WHERE g.id = u.grp) ELSE EXISTS (SELECT 1 FROM users x WHERE "
             "x.id = u.a) AND EXISTS (SELECT 1 FROM users y WHERE y.id = "
             "u.b) END ORDER BY u.id "
             "ON CONFLICT (id) DO UPDATE SET last_seq = c.last_seq "
             "RETURNING c.id, c.last_seq";
    case kLockUsers:
      return "SELECT id, inbox_head FROM users WHERE id = ANY($1::text[]) "
             "OR id IN (SELECT user_id FROM members WHERE group_id = "
             "ANY($2::text[])) ORDER BY id FOR UPDATE";
    case kReadGroups:
      return "SELECT g.id, m.user_id, m.role FROM chat_groups g LEFT JOIN "
             "members m ON m.group_id = g.id WHERE g.id = ANY($1::text[])";
    case kReadBlocks:
      return "SELECT b.user_id, b.blocked FROM unnest($1::text[], "
             "$2::text[]) AS k(a, b) JOIN blocks b ON b.user_id = k.a AND "
             "b.blocked = k.b";
    case kReadSent:
      return absl::StrCat(
          "SELECT s.sender, s.client_msg_id, s.inbox_seq, ", kMessageColumns,
          " FROM unnest($1::text[], $2::text[]) AS k(sender, key) JOIN sent "
          "s ON s.sender = k.sender AND s.client_msg_id = k.key JOIN "
          "messages m ON m.id = s.message_id");
    case kReadCursors:
      return "SELECT r.user_id, r.conversation, r.seq FROM unnest($1::text[], "
             "$2::text[]) AS k(u, c) JOIN read_cursors r ON r.user_id = k.u "
             "AND r.conversation = k.c";
    case kAllocateMessageIds:
      return "SELECT nextval('messages_id_seq') FROM generate_series(1, "
             "$1::int)";
    // Plain inserts from arrays, without joins: the planner of a prepared
    // statement guesses 10 rows per unnest() and joins them badly.
    case kInsertMessages:
      return "INSERT INTO messages(id, conversation, seq, sender, to_group, "
             "to_id, text, sent_us, client_msg_id, kind, target_seq, "
             "group_event) SELECT * FROM unnest($1::int8[], $2::text[], "
             "$3::int8[], $4::text[], $5::bool[], $6::text[], $7::text[], "
             "$8::int8[], $9::text[], $10::int2[], $11::int8[], $12::text[])";
    case kInsertInbox:
      return "INSERT INTO inbox(user_id, inbox_seq, message_id) SELECT * "
             "FROM unnest($1::text[], $2::int8[], $3::int8[])";
    case kInsertSent:
      return "INSERT INTO sent(sender, client_msg_id, message_id, inbox_seq) "
             "SELECT * FROM unnest($1::text[], $2::text[], $3::int8[], "
             "$4::int8[])";
    case kAdvanceConversations:
      return "UPDATE conversations SET last_seq = u.v FROM unnest($1::text[], "
             "$2::int8[]) AS u(id, v) WHERE conversations.id = u.id";
    case kAdvanceInboxHeads:
      return "UPDATE users SET inbox_head = u.v FROM unnest($1::text[], "
             "$2::int8[]) AS u(id, v) WHERE users.id = u.id";
    case kWriteCursors:
      return "INSERT INTO read_cursors(user_id, conversation, seq) SELECT * "
             "FROM unnest($1::text[], $2::text[], $3::int8[]) ON CONFLICT "
             "(user_id, conversation) DO UPDATE SET seq = "
             "GREATEST(read_cursors.seq, excluded.seq)";
    case kMarkCommit:
      return "INSERT INTO writer_commits(writer, xact) VALUES ($1, "
             "pg_current_xact_id()) ON CONFLICT (writer) DO UPDATE SET xact = "
             "excluded.xact";
    case kReadTargets:
      return absl::StrCat(
          "SELECT ", kMessageColumns,
          " FROM unnest($1::text[], $2::int8[]) AS k(c, s) JOIN messages m ON "
          "m.conversation = k.c AND m.seq = k.s");
    case kUpdateTargets:
      return "UPDATE messages SET text = u.t, edited_us = u.e, deleted = u.d "
             "FROM unnest($1::text[], $2::int8[], $3::text[], $4::int8[], "
             "$5::bool[]) AS u(c, s, t, e, d) WHERE messages.conversation = "
             "u.c AND messages.seq = u.s";
    case kScrubEdits:
      return "UPDATE messages SET text = '' FROM unnest($1::text[], "
             "$2::int8[]) AS u(c, s) WHERE messages.conversation = u.c AND "
             "messages.target_seq = u.s AND messages.kind = 1";
    case kInsertGroups:
      return "INSERT INTO chat_groups(id, display_name, created_us) SELECT * "
             "FROM unnest($1::text[], $2::text[], $3::int8[])";
    case kInsertGroupConversations:
      return "INSERT INTO conversations(id) SELECT * FROM unnest($1::text[]) "
             "ON CONFLICT DO NOTHING";
    case kRenameGroups:
      return "UPDATE chat_groups SET display_name = u.t FROM "
             "unnest($1::text[], $2::text[]) AS u(id, t) WHERE chat_groups.id "
             "= u.id";
    case kUpsertMembers:
      return "INSERT INTO members(group_id, user_id, role) SELECT * FROM "
             "unnest($1::text[], $2::text[], $3::int2[]) ON CONFLICT "
             "(group_id, user_id) DO UPDATE SET role = excluded.role";
    case kRemoveMembers:
      return "DELETE FROM members USING unnest($1::text[], $2::text[]) AS "
             "u(g, m) WHERE members.group_id = u.g AND members.user_id = u.m";
    case kInsertUser:
      return "INSERT INTO users(id, display_name, created_us) VALUES ($1, $2, "
             "$3) ON CONFLICT DO NOTHING RETURNING id";
    case kLockUserGroups:
      return "SELECT id FROM conversations WHERE id IN (SELECT 'g:' || "
             "group_id FROM members WHERE user_id = $1) ORDER BY id FOR "
             "UPDATE";
    case kLockUser:
      return "SELECT 1 FROM users WHERE id = $1 FOR UPDATE";
    case kDeleteUser:
      return "WITH a AS (DELETE FROM members WHERE user_id = $1), b AS "
             "(DELETE FROM inbox WHERE user_id = $1), c AS (DELETE FROM sent "
             "WHERE sender = $1), d AS (DELETE FROM read_cursors WHERE "
             "user_id = $1), e AS (DELETE FROM token_revocations WHERE "
             "user_id = $1), f AS (DELETE FROM blocks WHERE user_id = $1 OR "
             "blocked = $1) DELETE FROM users WHERE id = $1";
    case kInsertGroup:
      return "INSERT INTO chat_groups(id, display_name, created_us) VALUES "
             "($1, $2, $3) ON CONFLICT DO NOTHING RETURNING id";
    case kInsertGroupConversation:
      return "INSERT INTO conversations(id) VALUES ($1) ON CONFLICT DO "
             "NOTHING";
    case kShareUsers:
      return "SELECT id FROM users WHERE id = ANY($1::text[]) ORDER BY id "
             "FOR SHARE";
    case kInsertMembers:
      return "INSERT INTO members(group_id, user_id) SELECT $1, u FROM "
             "unnest($2::text[]) AS u ON CONFLICT DO NOTHING";
    case kCountMembers:
      return "SELECT count(*) FROM members WHERE group_id = $1";
    case kLockGroupConversation:
      return "SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE";
    case kDeleteMembers:
      return "DELETE FROM members WHERE group_id = $1 AND user_id = "
             "ANY($2::text[])";
    case kRevokeTokens:
      return "INSERT INTO token_revocations(user_id, not_before_us) SELECT "
             "id, $2 FROM users WHERE id = $1 ON CONFLICT (user_id) DO UPDATE "
             "SET not_before_us = GREATEST(token_revocations.not_before_us, "
             "excluded.not_before_us) RETURNING user_id";
    // The rows an append of the two locks too (kLockUsers), in id order.
    case kLockUserPair:
      return "SELECT id FROM users WHERE id = $1 OR id = $2 ORDER BY id FOR "
             "UPDATE";
    case kInsertBlock:
      return "INSERT INTO blocks(user_id, blocked) VALUES ($1, $2) ON "
             "CONFLICT DO NOTHING RETURNING 1";
    case kDeleteBlock:
      return "DELETE FROM blocks WHERE user_id = $1 AND blocked = $2 "
             "RETURNING 1";
    case kCountBlocks:
      return "SELECT count(*) FROM blocks WHERE user_id = $1";
    case kGetUser:
      return "SELECT u.id, u.display_name, u.created_us, r.not_before_us "
             "FROM users u LEFT JOIN token_revocations r ON r.user_id = u.id "
             "WHERE u.id = $1";
    case kListUsers:
      return "SELECT u.id, u.display_name, u.created_us, r.not_before_us "
             "FROM users u LEFT JOIN token_revocations r ON r.user_id = u.id "
             "WHERE u.id > $1 ORDER BY u.id LIMIT $2";
    case kUserExists:
      return "SELECT 1 FROM users WHERE id = $1";
    case kGetGroup:
      return "SELECT id, display_name, created_us FROM chat_groups WHERE id "
             "= $1";
    case kGroupMembers:
      return "SELECT user_id, role FROM members WHERE group_id = $1 ORDER BY "
             "user_id";
    case kListGroupIds:
      return "SELECT id FROM chat_groups WHERE id > $1 ORDER BY id LIMIT $2";
    case kInboxHead:
      return "SELECT inbox_head FROM users WHERE id = $1";
    case kReadInbox:
      return ReadInboxSql();
    case kReadHistory:
      return absl::StrCat("SELECT ", kMessageColumns,
                          " FROM messages m WHERE m.conversation = $1 AND "
                          "m.seq < $2 ORDER BY m.seq DESC LIMIT $3");
    case kConversationHead:
      return "SELECT last_seq FROM conversations WHERE id = $1";
    case kReadCursor:
      return "SELECT seq FROM read_cursors WHERE user_id = $1 AND "
             "conversation = $2";
    case kContacts:
      return "SELECT m2.user_id FROM members m1 JOIN members m2 ON "
             "m2.group_id = m1.group_id WHERE m1.user_id = $1 AND m2.user_id "
             "<> $1 AND (SELECT count(*) FROM members m3 WHERE m3.group_id = "
             "m1.group_id) <= $2::int8 "
             "UNION SELECT c.user_b FROM conversations c JOIN users u ON u.id "
             "= c.user_b WHERE c.user_a = $1 AND c.user_b <> $1 "
             "UNION SELECT c.user_a FROM conversations c JOIN users u ON u.id "
             "= c.user_a WHERE c.user_b = $1 AND c.user_a <> $1 "
             "EXCEPT SELECT blocked FROM blocks WHERE user_id = $1 "
             "EXCEPT SELECT user_id FROM blocks WHERE blocked = $1 ORDER BY 1";
    case kListBlocked:
      return "SELECT blocked FROM blocks WHERE user_id = $1 ORDER BY blocked";
    case kBlockedEitherWay:
      return "SELECT 1 FROM blocks WHERE (user_id = $1 AND blocked = $2) OR "
             "(user_id = $2 AND blocked = $1)";
    case kStats:
      return "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM "
             "messages)";
    case kListConversations:
      return kListConversationsSql;
    case kCountUnread:
      return "SELECT count(*) FROM messages WHERE conversation = $1 AND seq "
             "> $2 AND sender <> $3 AND kind = 0 AND NOT deleted";
    case kReadCommitMark:
      return "SELECT xact::text FROM writer_commits WHERE writer = $1";
    case kEndOtherBackends:
      return "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
             "WHERE application_name = $1 AND pid <> pg_backend_pid()";
    case kStmtCount:
      break;
  }
  return "";
}

std::string StmtName(int stmt) { return absl::StrCat("parley_", stmt); }

// A PostgreSQL array literal of text values; nullopt is NULL.
std::string TextArray(const std::vector<std::optional<std::string>>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    if (!values[i].has_value()) {
      out += "NULL";
      continue;
    }
    out += '"';
    for (char ch : *values[i]) {
      if (ch == '"' || ch == '\\') out += '\\';
      out += ch;
    }
    out += '"';
  }
  out += '}';
  return out;
}

std::string TextArray(const std::vector<std::string>& values) {
  return TextArray(
      std::vector<std::optional<std::string>>(values.begin(), values.end()));
}

template <typename Int>
std::string IntArray(const std::vector<Int>& values) {
  return absl::StrCat("{", absl::StrJoin(values, ","), "}");
}

std::string BoolArray(const std::vector<bool>& values) {
  std::string out = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i > 0) out += ',';
    out += values[i] ? 't' : 'f';
  }
  out += '}';
  return out;
}

absl::Status NotFoundUser(absl::string_view id) {
  return absl::NotFoundError(absl::StrCat("user \"", id, "\" does not exist"));
}
absl::Status NotFoundGroup(absl::string_view id) {
  return absl::NotFoundError(absl::StrCat("group \"", id, "\" does not exist"));
}

// "host:port" of a libpq URL or keyword string, for log lines and errors
// (never the URL itself: it may carry a password).
std::string ServerName(const std::string& url) {
  char* err = nullptr;
  PQconninfoOption* options = PQconninfoParse(url.c_str(), &err);
  if (err != nullptr) PQfreemem(err);
  if (options == nullptr) return "(unparsable PostgreSQL URL)";
  std::string host = "localhost";
  std::string port = "5432";
  for (PQconninfoOption* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr || *o->val == '\0') continue;
    const absl::string_view key = o->keyword;
    if (key == "host" || key == "hostaddr") host = o->val;
    if (key == "port") port = o->val;
  }
  PQconninfoFree(options);
  return absl::StrCat(host, ":", port);
}

// One libpq result, freed on destruction.
class Result {
 public:
  explicit Result(PGresult* r) : r_(r) {}
  ~Result() {
    if (r_ != nullptr) PQclear(r_);
  }
  Result(Result&& other) noexcept : r_(std::exchange(other.r_, nullptr)) {}
  Result& operator=(Result&& other) noexcept {
    if (this != &other) {
      if (r_ != nullptr) PQclear(r_);
      r_ = std::exchange(other.r_, nullptr);
    }
    return *this;
  }

  const PGresult* raw() const { return r_; }
  int rows() const { return PQntuples(r_); }
  bool IsNull(int row, int col) const { return PQgetisnull(r_, row, col); }
  std::string Text(int row, int col) const {
    return std::string(PQgetvalue(r_, row, col), PQgetlength(r_, row, col));
  }
  int64_t Int(int row, int col) const {
    int64_t v = 0;
    (void)absl::SimpleAtoi(PQgetvalue(r_, row, col), &v);
    return v;
  }
  uint64_t UInt(int row, int col) const {
    return static_cast<uint64_t>(Int(row, col));
  }
  bool Bool(int row, int col) const { return *PQgetvalue(r_, row, col) == 't'; }

 private:
  PGresult* r_;
};

StoredMessage ReadMessage(const Result& r, int row, int first) {
  StoredMessage m;
  m.message_id = r.Text(row, first);
  m.conversation = r.Text(row, first + 1);
  m.seq = r.UInt(row, first + 2);
  m.from = r.Text(row, first + 3);
  m.to_group = r.Bool(row, first + 4);
  m.to = r.Text(row, first + 5);
  m.text = r.Text(row, first + 6);
  m.sent_at = absl::FromUnixMicros(r.Int(row, first + 7));
  m.client_msg_id = r.Text(row, first + 8);
  m.kind = static_cast<MessageKind>(r.Int(row, first + 9));
  m.target_seq = r.UInt(row, first + 10);
  if (!r.IsNull(row, first + 11)) {
    m.edited_at = absl::FromUnixMicros(r.Int(row, first + 11));
  }
  m.deleted = r.Bool(row, first + 12);
  if (!r.IsNull(row, first + 13)) {
    m.group_event = DecodeGroupEvent(r.Text(row, first + 13));
  }
  return m;
}

bool HasNul(std::initializer_list<const std::string*> fields) {
  for (const std::string* f : fields) {
    if (f->find('\0') != std::string::npos) return true;
  }
  return false;
}

// One statement to run: prepared (`stmt`) or, without parameters, `sql`.
struct Call {
  int stmt = -1;
  std::vector<std::string> params;
  const char* sql = nullptr;
};

// Row `i` of kGetUser / kListUsers.
UserRecord ReadUser(const Result& r, int i) {
  UserRecord user{r.Text(i, 0), r.Text(i, 1),
                  absl::FromUnixMicros(r.Int(i, 2))};
  if (!r.IsNull(i, 3))
    user.tokens_not_before = absl::FromUnixMicros(r.Int(i, 3));
  return user;
}

}  // namespace

class PgStore::Connection {
 public:
  // Connects to options.url (statements are prepared on first use), as
  // `application_name` if not empty. UNAVAILABLE naming the server when it
  // cannot be reached.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(
      const PgStoreOptions& options, const std::string& server,
      const std::string& application_name = "") {
    const std::string& url = options.url;
    // Defaults first: the URL's own parameters, expanded after them, win.
    // Without them a server that vanished without closing its sockets
    // would hang a connect for the kernel's minutes and a query forever.
    // An application_name after the URL wins over the URL's.
    const char* keywords[] = {
        "connect_timeout",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "fallback_application_name",
        "dbname",
        application_name.empty() ? nullptr : "application_name",
        nullptr};
    const char* values[] = {"5",         "10",
                            "5",         "3",
                            "30000",     "parley-service",
                            url.c_str(), application_name.c_str(),
                            nullptr};
    auto conn = std::unique_ptr<Connection>(new Connection(
        PQconnectdbParams(keywords, values, /*expand_dbname=*/1)));
    conn->server_ = server;
    if (PQstatus(conn->conn_) != CONNECTION_OK) {
      return absl::UnavailableError(absl::StrCat(
          "cannot connect to PostgreSQL at ", server, ": ",
          absl::StripAsciiWhitespace(PQerrorMessage(conn->conn_))));
    }
    // Server notices ("relation already exists, skipping") are not errors;
    // libpq would print them on stderr, outside the service's log format.
    PQsetNoticeProcessor(
        conn->conn_,
        [](void*, const char* message) {
          LogDebug("store.pg_notice",
                   {{"message", absl::StripAsciiWhitespace(message)}});
        },
        nullptr);
    // Acks wait for the commit's WAL flush, whatever the server's default.
    // A backend left inside a transaction by a client it cannot see gone
    // ends itself (PgStoreOptions::idle_in_transaction_timeout).
    RETURN_IF_ERROR(conn->Exec(absl::StrCat(
        "SET synchronous_commit = on; SET client_encoding = 'UTF8'; "
        "SET idle_in_transaction_session_timeout = ",
        absl::ToInt64Milliseconds(options.idle_in_transaction_timeout))));
    return conn;
  }

  ~Connection() { PQfinish(conn_); }

  // Why the last statement failed ("" if none did).
  const std::string& last_error() const { return last_error_; }

  // The connection is lost (or in a state no statement can follow).
  bool broken() const { return poisoned_ || PQstatus(conn_) != CONNECTION_OK; }
  bool in_transaction() const {
    return PQtransactionStatus(conn_) != PQTRANS_IDLE;
  }

  // Runs `sql` (one or more statements, no parameters).
  absl::Status Exec(const std::string& sql) {
    Result r(PQexec(conn_, sql.c_str()));
    return Check(r, sql);
  }

  // Runs one statement (prepared on first use on this connection).
  absl::StatusOr<Result> Run(const Call& call) {
    RETURN_IF_ERROR(CheckParams(call));
    if (call.stmt >= 0) RETURN_IF_ERROR(Prepare(call.stmt));
    std::vector<const char*> values;
    for (const std::string& p : call.params) values.push_back(p.c_str());
    Result r(call.stmt >= 0 ? PQexecPrepared(conn_, StmtName(call.stmt).c_str(),
                                             static_cast<int>(values.size()),
                                             values.data(), nullptr, nullptr, 0)
                            : PQexecParams(conn_, call.sql, 0, nullptr, nullptr,
                                           nullptr, nullptr, 0));
    RETURN_IF_ERROR(Check(r, What(call)));
    return r;
  }

  absl::StatusOr<Result> Run(int stmt, std::vector<std::string> params) {
    return Run(Call{stmt, std::move(params)});
  }

  // Sends `calls` in one pipeline (one round trip) and returns each result;
  // the first failure if any failed (the statements after it did not run).
  absl::StatusOr<std::vector<Result>> Pipeline(const std::vector<Call>& calls) {
    for (const Call& call : calls) {
      RETURN_IF_ERROR(CheckParams(call));
      if (call.stmt >= 0) RETURN_IF_ERROR(Prepare(call.stmt));
    }
    if (PQenterPipelineMode(conn_) != 1) return Lost("entering pipeline mode");
    for (const Call& call : calls) {
      std::vector<const char*> values;
      for (const std::string& p : call.params) values.push_back(p.c_str());
      const int sent =
          call.stmt >= 0
              ? PQsendQueryPrepared(conn_, StmtName(call.stmt).c_str(),
                                    static_cast<int>(values.size()),
                                    values.data(), nullptr, nullptr, 0)
              : PQsendQueryParams(conn_, call.sql, 0, nullptr, nullptr, nullptr,
                                  nullptr, 0);
      if (sent != 1) return Lost("sending a statement");
    }
    if (PQpipelineSync(conn_) != 1) return Lost("sending the batch");
    std::vector<Result> out;
    absl::Status first;
    for (const Call& call : calls) {
      PGresult* r = PQgetResult(conn_);
      if (r == nullptr) return Lost("reading results");
      out.emplace_back(r);
      if (PQresultStatus(r) != PGRES_PIPELINE_ABORTED) {
        absl::Status s = Check(out.back(), What(call));
        if (!s.ok() && broken()) return s;
        if (first.ok()) first = std::move(s);
      }
      // The end of this statement's results.
      if (PGresult* end = PQgetResult(conn_); end != nullptr) {
        PQclear(end);
        return Lost("reading results (more than one)");
      }
    }
    Result sync(PQgetResult(conn_));
    if (PQresultStatus(sync.raw()) != PGRES_PIPELINE_SYNC) {
      return Lost("reading the end of the batch");
    }
    if (PQexitPipelineMode(conn_) != 1) return Lost("leaving pipeline mode");
    if (!first.ok()) return first;
    return out;
  }

 private:
  explicit Connection(PGconn* conn) : conn_(conn) {}

  // libpq passes parameters as C strings: one holding NUL would be cut
  // there (and PostgreSQL's text cannot hold NUL anyway).
  static absl::Status CheckParams(const Call& call) {
    for (const std::string& p : call.params) {
      if (p.find('\0') != std::string::npos) {
        return absl::InvalidArgumentError(
            "the PostgreSQL store cannot hold a NUL character");
      }
    }
    return absl::OkStatus();
  }

  std::string What(const Call& call) const {
    return call.stmt >= 0 ? StmtName(call.stmt) : std::string(call.sql);
  }

  absl::Status Prepare(int stmt) {
    if (prepared_.count(stmt) > 0) return absl::OkStatus();
    Result r(PQprepare(conn_, StmtName(stmt).c_str(),
                       StatementSql(stmt).c_str(), 0, nullptr));
    RETURN_IF_ERROR(Check(r, StatementSql(stmt)));
    prepared_.insert(stmt);
    return absl::OkStatus();
  }

  // The connection cannot be used after this: UNAVAILABLE.
  absl::Status Lost(absl::string_view doing) {
    poisoned_ = true;
    last_error_ = absl::StrCat(
        "lost the connection to PostgreSQL at ", server_, " while ", doing,
        ": ", absl::StripAsciiWhitespace(PQerrorMessage(conn_)));
    return absl::UnavailableError(last_error_);
  }

  // The status of a finished statement: UNAVAILABLE when the connection is
  // lost or the server is shutting down, ABORTED for failures a retry of
  // the transaction resolves (deadlock, serialization failure, a unique key
  // a concurrent transaction inserted), INTERNAL otherwise.
  absl::Status Check(const Result& r, absl::string_view what) {
    const PGresult* raw = r.raw();
    const ExecStatusType status = PQresultStatus(raw);
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
      return absl::OkStatus();
    }
    const std::string message(absl::StripAsciiWhitespace(
        raw != nullptr ? PQresultErrorMessage(raw) : PQerrorMessage(conn_)));
    last_error_ = message;
    if (raw == nullptr || PQstatus(conn_) != CONNECTION_OK) {
      poisoned_ = true;
      return absl::UnavailableError(absl::StrCat(
          "lost the connection to PostgreSQL at ", server_, ": ", message));
    }
    const char* state_ptr = PQresultErrorField(raw, PG_DIAG_SQLSTATE);
    const absl::string_view state = state_ptr == nullptr ? "" : state_ptr;
    if (state == "40P01" || state == "40001" || state == "23505") {
      return absl::AbortedError(message);
    }
    // Connection exceptions, operator intervention (shutdown), and lack of
    // resources: the server, not the statement.
    if (absl::StartsWith(state, "08") || absl::StartsWith(state, "57P") ||
        absl::StartsWith(state, "53")) {
      return absl::UnavailableError(
          absl::StrCat("PostgreSQL at ", server_, ": ", message));
    }
    return absl::InternalError(absl::StrCat("PostgreSQL at ", server_, ": ",
                                            message, " (in ",
                                            what.substr(0, 200), ")"));
  }

  PGconn* conn_;
  bool poisoned_ = false;
  std::string last_error_;
  std::set<int> prepared_;
  std::string server_;
};

// What an operation's callback receives, filled by the writer.
struct PgOutcome {
  absl::Status status;
  AppendResult append;
  bool advanced = false;
};

struct PgStore::WriteOp {
  // An append, or (when `cursor`) a read-cursor advance.
  bool cursor = false;
  AppendRequest append;
  std::string user;
  std::string conversation;
  uint64_t seq = 0;
  std::shared_ptr<PgOutcome> out;
  std::function<void(absl::Status)> done;
};

namespace {

using Connection = PgStore::Connection;

// Creates the schema or brings it to the newest version, one replica at a
// time, and returns the database's generation (`fresh` if it had none).
absl::StatusOr<std::string> Migrate(Connection& c, const std::string& fresh) {
  RETURN_IF_ERROR(
      c.Exec(absl::StrCat("SELECT pg_advisory_lock(", kMigrationLock, ")")));
  auto migrate = [&]() -> absl::StatusOr<std::string> {
    RETURN_IF_ERROR(
        c.Exec("CREATE TABLE IF NOT EXISTS schema_version(version integer NOT "
               "NULL)"));
    ASSIGN_OR_RETURN(Result v,
                     c.Run(Call{-1,
                                {},
                                "SELECT coalesce(max(version), 0) FROM "
                                "schema_version"}));
    const int64_t version = v.Int(0, 0);
    const int64_t latest = std::size(kMigrations);
    if (version > latest) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the PostgreSQL database has schema version ", version,
          ", newer than this parley-service knows (", latest,
          "): run a parley-service at least as new as the one that "
          "migrated it"));
    }
    for (int64_t next = version + 1; next <= latest; ++next) {
      absl::Status applied = c.Exec(absl::StrCat(
          "BEGIN; ", kMigrations[next - 1],
          "; INSERT INTO schema_version(version) VALUES (", next, "); COMMIT"));
      if (!applied.ok()) {
        if (!c.broken() && c.in_transaction()) (void)c.Exec("ROLLBACK");
        return absl::Status(applied.code(),
                            absl::StrCat("migrating the schema to version ",
                                         next, ": ", applied.message()));
      }
      LogInfo("store.pg_schema_migrated", {{"version", next}});
    }
    // The generation's characters are hex digits: safe in a literal.
    RETURN_IF_ERROR(
        c.Exec(absl::StrCat("INSERT INTO meta(key, value) VALUES "
                            "('generation', '",
                            fresh, "') ON CONFLICT DO NOTHING")));
    ASSIGN_OR_RETURN(Result g, c.Run(Call{-1,
                                          {},
                                          "SELECT value FROM meta WHERE key = "
                                          "'generation'"}));
    if (g.rows() != 1)
      return absl::DataLossError("the store has no generation");
    return g.Text(0, 0);
  };
  absl::StatusOr<std::string> generation = migrate();
  if (!c.broken()) {
    (void)c.Exec(
        absl::StrCat("SELECT pg_advisory_unlock(", kMigrationLock, ")"));
  }
  return generation;
}

absl::Status InsertMembers(Connection& c, const std::string& group_id,
                           const std::vector<std::string>& user_ids,
                           size_t max_members) {
  ASSIGN_OR_RETURN(Result found, c.Run(kShareUsers, {TextArray(user_ids)}));
  std::set<std::string> exists;
  for (int i = 0; i < found.rows(); ++i) exists.insert(found.Text(i, 0));
  for (const std::string& u : user_ids) {
    if (exists.count(u) == 0) return NotFoundUser(u);
  }
  RETURN_IF_ERROR(
      c.Run(kInsertMembers, {group_id, TextArray(user_ids)}).status());
  ASSIGN_OR_RETURN(Result count, c.Run(kCountMembers, {group_id}));
  const uint64_t n = count.UInt(0, 0);
  if (n > max_members) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "group would have ", n, " members; the limit is ", max_members));
  }
  return absl::OkStatus();
}

absl::StatusOr<GroupRecord> LoadGroup(Connection& c, const std::string& id) {
  ASSIGN_OR_RETURN(Result g, c.Run(kGetGroup, {id}));
  if (g.rows() == 0) return NotFoundGroup(id);
  GroupRecord out{
      g.Text(0, 0), g.Text(0, 1), {}, absl::FromUnixMicros(g.Int(0, 2))};
  ASSIGN_OR_RETURN(Result m, c.Run(kGroupMembers, {id}));
  for (int i = 0; i < m.rows(); ++i) {
    out.members.push_back(m.Text(i, 0));
    const auto role = static_cast<GroupRole>(m.Int(i, 1));
    if (role != GroupRole::kMember) out.roles[m.Text(i, 0)] = role;
  }
  return out;
}

// The writes of the groups a batch's group events changed
// (append_rules.h's group_writes).
void AppendGroupWrites(const AppendSnapshot& snapshot,
                       std::vector<Call>& writes) {
  if (snapshot.group_writes.empty()) return;
  std::vector<std::string> new_ids, new_titles, new_conversations, renamed,
      titles, up_groups, up_users, out_groups, out_users;
  std::vector<int64_t> new_created, up_roles;
  for (const auto& [id, write] : snapshot.group_writes) {
    if (write.created) {
      new_ids.push_back(id);
      new_titles.push_back(write.title.value_or(""));
      new_created.push_back(absl::ToUnixMicros(write.created_at));
      new_conversations.push_back(absl::StrCat("g:", id));
    } else if (write.title.has_value()) {
      renamed.push_back(id);
      titles.push_back(*write.title);
    }
    for (const auto& [user, role] : write.members) {
      if (role.has_value()) {
        up_groups.push_back(id);
        up_users.push_back(user);
        up_roles.push_back(static_cast<int64_t>(*role));
      } else {
        out_groups.push_back(id);
        out_users.push_back(user);
      }
    }
  }
  if (!new_ids.empty()) {
    writes.push_back(Call{
        kInsertGroups,
        {TextArray(new_ids), TextArray(new_titles), IntArray(new_created)}});
    writes.push_back(
        Call{kInsertGroupConversations, {TextArray(new_conversations)}});
  }
  if (!renamed.empty()) {
    writes.push_back(
        Call{kRenameGroups, {TextArray(renamed), TextArray(titles)}});
  }
  if (!out_users.empty()) {
    writes.push_back(
        Call{kRemoveMembers, {TextArray(out_groups), TextArray(out_users)}});
  }
  if (!up_users.empty()) {
    writes.push_back(
        Call{kUpsertMembers,
             {TextArray(up_groups), TextArray(up_users), IntArray(up_roles)}});
  }
}

}  // namespace

PgStore::PgStore(PgStoreOptions options)
    : options_(std::move(options)),
      writer_id_(NewStoreGeneration()),
      writer_backoff_(options_.reconnect_min) {}

int PgStore::LatestSchemaVersion() { return std::size(kMigrations); }

absl::StatusOr<std::unique_ptr<PgStore>> PgStore::Open(PgStoreOptions options) {
  if (options.pipeline.max_batch == 0 || options.read_connections < 1 ||
      options.max_attempts < 1) {
    return absl::InvalidArgumentError(
        "max_batch, read_connections and max_attempts must be at least 1");
  }
  if (options.idle_in_transaction_timeout < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "idle_in_transaction_timeout must not be negative");
  }
  auto store = std::unique_ptr<PgStore>(new PgStore(std::move(options)));
  const PgStoreOptions& o = store->options_;
  store->server_ = ServerName(o.url);
  ASSIGN_OR_RETURN(
      store->writer_conn_,
      Connection::Open(o, store->server_, store->WriterApplicationName()));
  ASSIGN_OR_RETURN(store->generation_,
                   Migrate(*store->writer_conn_, NewStoreGeneration()));
  for (int i = 0; i < o.read_connections; ++i) {
    ASSIGN_OR_RETURN(std::unique_ptr<Connection> conn,
                     Connection::Open(o, store->server_));
    absl::MutexLock lock(&store->pool_mu_);
    store->idle_.push_back(std::move(conn));
  }
  PgStore* s = store.get();
  store->pipeline_ = std::make_unique<CommitPipeline<WriteOp>>(
      o.pipeline,
      [s](std::vector<WriteOp>& batch) { return s->CommitBatch(batch); });
  return store;
}

PgStore::~PgStore() {
  pipeline_.reset();
  // Its mark is of no use to anyone now (a writer killed leaves its row).
  if (writer_conn_ != nullptr && !writer_conn_->broken()) {
    (void)writer_conn_->Exec(absl::StrCat(
        "DELETE FROM writer_commits WHERE writer = '", writer_id_, "'"));
  }
}

void PgStore::Flush() { pipeline_->Flush(); }

uint64_t PgStore::transactions() const { return pipeline_->transactions(); }

absl::Status PgStore::EnsureWriter() {
  if (writer_conn_ != nullptr) return absl::OkStatus();
  const absl::Time now = absl::Now();
  if (now < writer_retry_at_) {
    return absl::UnavailableError(
        absl::StrCat("PostgreSQL at ", server_, " is unreachable (",
                     writer_lost_reason_, "); reconnecting"));
  }
  absl::StatusOr<std::unique_ptr<Connection>> conn =
      Connection::Open(options_, server_, WriterApplicationName());
  if (conn.ok()) {
    // A backend of the lost connection may not have noticed that its client
    // is gone (a network cut, not a restart) and still hold a transaction
    // open, with its row locks: ended, it aborts that transaction unless it
    // was committing.
    absl::StatusOr<Result> ended =
        (*conn)->Run(kEndOtherBackends, {WriterApplicationName()});
    if (ended.ok() && ended->Int(0, 0) > 0) {
      LogWarn("store.pg_writer_backend_ended",
              {{"server", server_}, {"backends", ended->Int(0, 0)}});
    } else if (!ended.ok() && (*conn)->broken()) {
      conn = ended.status();
    } else if (!ended.ok()) {
      LogWarn("store.pg_writer_backend_not_ended",
              {{"server", server_}, {"reason", ended.status().message()}});
    }
  }
  if (!conn.ok()) {
    writer_lost_reason_ = std::string(conn.status().message());
    writer_retry_at_ = now + writer_backoff_;
    writer_backoff_ = std::min(writer_backoff_ * 2, options_.reconnect_max);
    return conn.status();
  }
  writer_conn_ = std::move(conn).value();
  writer_backoff_ = options_.reconnect_min;
  LogInfo("store.pg_reconnected",
          {{"server", server_},
           {"connection", "writer"},
           {"after_ms", absl::ToInt64Milliseconds(now - writer_lost_at_)}});
  return absl::OkStatus();
}

std::string PgStore::WriterApplicationName() const {
  return absl::StrCat("parley-service writer ", writer_id_);
}

void PgStore::WriterLost(const absl::Status& why) {
  writer_lost_reason_ = std::string(why.message());
  LogWarn("store.pg_connection_lost", {{"server", server_},
                                       {"connection", "writer"},
                                       {"reason", writer_lost_reason_}});
  writer_conn_.reset();
  writer_lost_at_ = absl::Now();
  // The first attempt at once: a restarted server is often back already.
  writer_retry_at_ = absl::InfinitePast();
  writer_backoff_ = options_.reconnect_min;
}

std::vector<absl::Status> PgStore::CommitBatch(std::vector<WriteOp>& batch) {
  const absl::Time start = absl::Now();
  std::vector<WriteOp*> ops;
  for (WriteOp& op : batch) {
    // PostgreSQL's text cannot hold NUL, and libpq would cut a parameter
    // there: refuse such a write alone rather than store it cut or fail the
    // batch around it.
    const bool nul =
        op.cursor
            ? HasNul({&op.user, &op.conversation})
            : HasNul({&op.append.sender, &op.append.to, &op.append.conversation,
                      &op.append.text, &op.append.client_msg_id});
    if (nul) {
      op.out->status = absl::InvalidArgumentError(
          "the PostgreSQL store cannot hold a NUL character");
    } else {
      ops.push_back(&op);
    }
  }
  absl::Status status = ops.empty() ? absl::OkStatus() : RunBatch(ops);
  if (!status.ok() && !absl::IsUnavailable(status) && ops.size() > 1) {
    // A write the server refuses must not fail the others of its batch:
    // run each alone.
    LogWarn("store.pg_batch_failed",
            {{"server", server_},
             {"operations", ops.size()},
             {"reason", status.message()},
             {"retry", "one operation per transaction"}});
    for (WriteOp* op : ops) {
      absl::Status alone = RunBatch({op});
      if (!alone.ok()) op->out->status = std::move(alone);
    }
    status = absl::OkStatus();
  }
  std::vector<absl::Status> statuses(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    statuses[i] = status.ok() ? batch[i].out->status : status;
  }
  if (options_.on_commit) options_.on_commit(batch.size(), absl::Now() - start);
  return statuses;
}

absl::Status PgStore::RunBatch(const std::vector<WriteOp*>& ops) {
  bool reconnected = false;
  for (int attempt = 1;; ++attempt) {
    const bool fresh = writer_conn_ == nullptr;
    RETURN_IF_ERROR(EnsureWriter());
    uint64_t sent_xact = 0;
    absl::Status status = TryBatch(ops, &sent_xact);
    if (writer_conn_->broken()) {
      WriterLost(status);
      // The COMMIT may have reached the server before the connection went.
      if (sent_xact != 0) return ResolveInDoubt(sent_xact, status);
      // Nothing committed. A connection opened before this batch may have
      // been closed while it sat idle (the server restarted since): the
      // batch runs once more on a new one, as reads do.
      if (!fresh && !reconnected) {
        reconnected = true;
        --attempt;
        continue;
      }
    } else if (writer_conn_->in_transaction()) {
      (void)writer_conn_->Exec("ROLLBACK");
    }
    if (!absl::IsAborted(status)) return status;
    if (attempt >= options_.max_attempts) {
      return absl::UnavailableError(absl::StrCat(
          "the store's transaction conflicted with other writers ", attempt,
          " times; retry later (", status.message(), ")"));
    }
    LogDebug("store.pg_batch_retried",
             {{"attempt", attempt}, {"reason", status.message()}});
  }
}

absl::Status PgStore::ResolveInDoubt(uint64_t sent_xact,
                                     const absl::Status& lost) {
  LogWarn("store.pg_commit_in_doubt", {{"server", server_},
                                       {"transaction", sent_xact},
                                       {"reason", lost.message()}});
  const absl::Time deadline = absl::Now() + options_.commit_in_doubt_timeout;
  const std::string xact = absl::StrCat(sent_xact);
  const std::string status_sql =
      absl::StrCat("SELECT pg_xact_status('", xact, "'::xid8)");
  std::string reason(lost.message());
  for (;;) {
    absl::Duration wait = options_.reconnect_min;
    absl::Status status = EnsureWriter();
    if (status.ok()) {
      absl::StatusOr<Result> r =
          writer_conn_->Run(Call{-1, {}, status_sql.c_str()});
      if (r.ok() && !r->IsNull(0, 0) && r->Text(0, 0) == "in progress") {
        // Its backend, ended by the reconnect, has not exited yet.
        reason = "the transaction was still open";
      } else if (r.ok()) {
        // It has ended. Whether it committed is in the writer's mark: after
        // a crash, a transaction that never reached the WAL leaves its id to
        // another one, whose status pg_xact_status() would give.
        r = writer_conn_->Run(kReadCommitMark, {writer_id_});
        if (r.ok()) {
          const bool committed = r->rows() == 1 && r->Text(0, 0) == xact;
          LogInfo("store.pg_commit_resolved",
                  {{"server", server_},
                   {"transaction", sent_xact},
                   {"committed", committed ? "yes" : "no"}});
          return committed ? absl::OkStatus() : lost;
        }
      }
      if (!r.ok()) {
        reason = std::string(r.status().message());
        // The server answers, but not this: asking again will not help.
        if (!writer_conn_->broken()) break;
        WriterLost(r.status());
      }
    } else {
      reason = std::string(status.message());
      wait = writer_retry_at_ - absl::Now();
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) break;
    absl::SleepFor(std::min(wait, left));
  }
  LogWarn(
      "store.pg_commit_unknown",
      {{"server", server_}, {"transaction", sent_xact}, {"reason", reason}});
  return absl::UnavailableError(
      absl::StrCat("lost the connection to PostgreSQL at ", server_,
                   " during a commit and could not learn within ",
                   absl::FormatDuration(options_.commit_in_doubt_timeout),
                   " whether it was stored (", reason,
                   "); retry with the same client_msg_id"));
}

absl::Status PgStore::TryBatch(const std::vector<WriteOp*>& batch,
                               uint64_t* sent_xact) {
  Connection& c = *writer_conn_;
  std::vector<const AppendRequest*> appends;
  std::vector<WriteOp*> append_ops;
  std::vector<WriteOp*> cursor_ops;
  // id -> (user_a, user_b, group): what the counter row needs.
  std::map<std::string,
           std::tuple<std::optional<std::string>, std::optional<std::string>,
                      std::optional<std::string>>>
      conversations;
  std::set<std::string> users;
  std::set<std::string> groups;
  std::set<std::pair<std::string, std::string>> keys;
  std::set<std::pair<std::string, std::string>> cursor_keys;
  std::set<std::pair<std::string, uint64_t>> targets;
  // (blocker, blocked) pairs that would refuse a direct append.
  std::set<std::pair<std::string, std::string>> block_keys;
  for (WriteOp* op_ptr : batch) {
    WriteOp& op = *op_ptr;
    if (op.cursor) {
      cursor_ops.push_back(&op);
      users.insert(op.user);
      cursor_keys.insert({op.user, op.conversation});
      continue;
    }
    const AppendRequest& r = op.append;
    appends.push_back(&r);
    append_ops.push_back(&op);
    if (!ByOperator(r)) users.insert(r.sender);
    keys.insert({r.sender, r.client_msg_id});
    if (r.kind == MessageKind::kEdit || r.kind == MessageKind::kDelete) {
      targets.insert({r.conversation, r.target_seq});
    }
    users.insert(r.group_event.users.begin(), r.group_event.users.end());
    if (r.to_group) {
      groups.insert(r.to);
      conversations[r.conversation] = {std::nullopt, std::nullopt, r.to};
    } else {
      // An operator is not blocked.
      if (!ByOperator(r) && r.sender != r.to) {
        block_keys.insert({r.sender, r.to});
        block_keys.insert({r.to, r.sender});
      }
      const std::vector<std::string> pair = DirectPair(r);
      if (pair.empty()) continue;  // Refused by the rules: no users named.
      users.insert(pair.begin(), pair.end());
      conversations[r.conversation] = {pair.front(), pair.back(), std::nullopt};
    }
  }

  std::vector<std::optional<std::string>> conv_ids, conv_a, conv_b, conv_g;
  for (const auto& [id, row] : conversations) {
    conv_ids.push_back(id);
    conv_a.push_back(std::get<0>(row));
    conv_b.push_back(std::get<1>(row));
    conv_g.push_back(std::get<2>(row));
  }
  std::vector<std::string> key_senders, key_ids, cursor_users, cursor_convs;
  for (const auto& [sender, key] : keys) {
    key_senders.push_back(sender);
    key_ids.push_back(key);
  }
  for (const auto& [user, conversation] : cursor_keys) {
    cursor_users.push_back(user);
    cursor_convs.push_back(conversation);
  }
  std::vector<std::string> blockers, blocked;
  for (const auto& [a, b] : block_keys) {
    blockers.push_back(a);
    blocked.push_back(b);
  }
  const std::vector<std::string> group_list(groups.begin(), groups.end());
  std::vector<std::string> target_convs;
  std::vector<uint64_t> target_seqs;
  for (const auto& [conversation, seq] : targets) {
    target_convs.push_back(conversation);
    target_seqs.push_back(seq);
  }

  // Round trip 1: lock the counters in the global order, read the rest.
  std::vector<Call> reads = {
      Call{-1, {}, "BEGIN"},
      Call{kLockConversations,
           {TextArray(conv_ids), TextArray(conv_a), TextArray(conv_b),
            TextArray(conv_g)}},
      Call{kLockUsers,
           {TextArray(std::vector<std::string>(users.begin(), users.end())),
            TextArray(group_list)}},
      Call{kReadGroups, {TextArray(group_list)}},
      // After the user locks: a SetBlocked that held them has committed.
      Call{kReadBlocks, {TextArray(blockers), TextArray(blocked)}},
      Call{kReadSent, {TextArray(key_senders), TextArray(key_ids)}},
      Call{kReadCursors, {TextArray(cursor_users), TextArray(cursor_convs)}},
      // Ids for every append; those a duplicate or a refusal leaves
      // unused are gaps, as message ids may have.
      Call{kAllocateMessageIds, {absl::StrCat(appends.size())}},
  };
  // Only a batch with edit or delete events reads their targets.
  if (!targets.empty()) {
    reads.push_back(
        Call{kReadTargets, {TextArray(target_convs), IntArray(target_seqs)}});
  }
  // Last: the transaction's id, to learn its fate if the COMMIT's answer
  // is lost.
  reads.push_back(Call{-1, {}, "SELECT pg_current_xact_id()"});
  ASSIGN_OR_RETURN(std::vector<Result> read, c.Pipeline(reads));
  const uint64_t xact_id = read.back().UInt(0, 0);
  AppendSnapshot snapshot;
  if (!targets.empty()) {
    for (int i = 0; i < read[8].rows(); ++i) {
      StoredMessage m = ReadMessage(read[8], i, 0);
      snapshot.targets[{m.conversation, m.seq}] = std::move(m);
    }
  }
  for (int i = 0; i < read[1].rows(); ++i) {
    snapshot.conversation_heads[read[1].Text(i, 0)] = read[1].UInt(i, 1);
  }
  for (int i = 0; i < read[2].rows(); ++i) {
    snapshot.users.insert(read[2].Text(i, 0));
    snapshot.inbox_heads[read[2].Text(i, 0)] = read[2].UInt(i, 1);
  }
  for (int i = 0; i < read[3].rows(); ++i) {
    MemberRoles& members = snapshot.groups[read[3].Text(i, 0)];
    if (!read[3].IsNull(i, 1)) {
      members[read[3].Text(i, 1)] = static_cast<GroupRole>(read[3].Int(i, 2));
    }
  }
  for (int i = 0; i < read[4].rows(); ++i) {
    snapshot.blocks.insert({read[4].Text(i, 0), read[4].Text(i, 1)});
  }
  for (int i = 0; i < read[5].rows(); ++i) {
    AppendResult original;
    original.sender_inbox_seq = read[5].UInt(i, 2);
    original.message = ReadMessage(read[5], i, 3);
    snapshot.sent[{read[5].Text(i, 0), read[5].Text(i, 1)}] =
        std::move(original);
  }
  std::map<std::pair<std::string, std::string>, uint64_t> cursors;
  for (int i = 0; i < read[6].rows(); ++i) {
    cursors[{read[6].Text(i, 0), read[6].Text(i, 1)}] = read[6].UInt(i, 2);
  }

  // The rules decide; then the rows of what they store.
  std::vector<PlannedAppend> plan = PlanAppends(appends, snapshot);
  std::vector<std::string> m_conv, m_sender, m_to, m_text, m_key;
  std::vector<std::optional<std::string>> m_event;
  std::vector<int64_t> m_id, m_sent, m_kind;
  std::vector<uint64_t> m_seq, m_target;
  std::vector<bool> m_group;
  std::vector<std::string> i_user;
  std::vector<uint64_t> i_seq;
  std::vector<int64_t> i_msg;
  std::vector<std::string> s_sender, s_key;
  std::vector<int64_t> s_msg;
  std::vector<uint64_t> s_inbox;
  std::map<std::string, uint64_t> conv_heads;
  std::map<std::string, uint64_t> inbox_heads;
  for (size_t i = 0; i < plan.size(); ++i) {
    if (!plan[i].store()) continue;
    const AppendRequest& r = *appends[i];
    AppendResult& a = *plan[i].result;
    const int64_t id = read[7].Int(static_cast<int>(m_id.size()), 0);
    a.message.message_id = absl::StrCat(id);
    m_id.push_back(id);
    m_conv.push_back(r.conversation);
    m_seq.push_back(a.message.seq);
    m_sender.push_back(r.sender);
    m_group.push_back(a.message.to_group);
    m_to.push_back(a.message.to);
    m_text.push_back(a.message.text);
    m_sent.push_back(absl::ToUnixMicros(r.sent_at));
    m_key.push_back(r.client_msg_id);
    m_kind.push_back(static_cast<int64_t>(a.message.kind));
    m_target.push_back(a.message.target_seq);
    m_event.push_back(a.message.kind == MessageKind::kGroupEvent
                          ? std::optional<std::string>(
                                EncodeGroupEvent(a.message.group_event))
                          : std::nullopt);
    for (const InboxEntry& e : a.recipients) {
      i_user.push_back(e.user);
      i_seq.push_back(e.inbox_seq);
      i_msg.push_back(id);
      uint64_t& head = inbox_heads[e.user];
      head = std::max(head, e.inbox_seq);
    }
    s_sender.push_back(r.sender);
    s_key.push_back(r.client_msg_id);
    s_msg.push_back(id);
    s_inbox.push_back(a.sender_inbox_seq);
    uint64_t& head = conv_heads[r.conversation];
    head = std::max(head, a.message.seq);
  }
  ResolveDuplicates(plan);
  std::map<std::pair<std::string, std::string>, uint64_t> cursor_writes;
  for (WriteOp* op : cursor_ops) {
    if (snapshot.users.count(op->user) == 0) {
      op->out->status = NotFoundUser(op->user);
      continue;
    }
    uint64_t& current = cursors[{op->user, op->conversation}];
    op->out->advanced = op->seq > current;
    op->out->status = absl::OkStatus();
    if (op->out->advanced) {
      current = op->seq;
      cursor_writes[{op->user, op->conversation}] = op->seq;
    }
  }

  // Round trip 2: write and commit.
  std::vector<Call> writes;
  // The groups first: a new group's conversation row is advanced below.
  AppendGroupWrites(snapshot, writes);
  if (!m_id.empty()) {
    std::vector<std::string> c_ids, u_ids;
    std::vector<uint64_t> c_heads, u_heads;
    for (const auto& [id, head] : conv_heads) {
      c_ids.push_back(id);
      c_heads.push_back(head);
    }
    for (const auto& [id, head] : inbox_heads) {
      u_ids.push_back(id);
      u_heads.push_back(head);
    }
    writes.push_back(
        Call{kInsertMessages,
             {IntArray(m_id), TextArray(m_conv), IntArray(m_seq),
              TextArray(m_sender), BoolArray(m_group), TextArray(m_to),
              TextArray(m_text), IntArray(m_sent), TextArray(m_key),
              IntArray(m_kind), IntArray(m_target), TextArray(m_event)}});
    writes.push_back(Call{
        kInsertInbox, {TextArray(i_user), IntArray(i_seq), IntArray(i_msg)}});
    writes.push_back(Call{kInsertSent,
                          {TextArray(s_sender), TextArray(s_key),
                           IntArray(s_msg), IntArray(s_inbox)}});
    writes.push_back(
        Call{kAdvanceConversations, {TextArray(c_ids), IntArray(c_heads)}});
    writes.push_back(
        Call{kAdvanceInboxHeads, {TextArray(u_ids), IntArray(u_heads)}});
  }
  if (!snapshot.changed_targets.empty()) {
    // Each changed target once, in its final state (after every event of
    // the batch), after the inserts: a target may be a message of the batch.
    std::vector<std::string> t_conv, t_text, d_conv;
    std::vector<std::optional<std::string>> t_edited;
    std::vector<uint64_t> t_seq, d_seq;
    std::vector<bool> t_deleted;
    for (const auto& key : snapshot.changed_targets) {
      const StoredMessage& t = snapshot.targets.at(key);
      t_conv.push_back(key.first);
      t_seq.push_back(key.second);
      t_text.push_back(t.text);
      t_edited.push_back(t.edited_at == absl::InfinitePast()
                             ? std::nullopt
                             : std::optional<std::string>(absl::StrCat(
                                   absl::ToUnixMicros(t.edited_at))));
      t_deleted.push_back(t.deleted);
      if (t.deleted) {
        d_conv.push_back(key.first);
        d_seq.push_back(key.second);
      }
    }
    writes.push_back(
        Call{kUpdateTargets,
             {TextArray(t_conv), IntArray(t_seq), TextArray(t_text),
              TextArray(t_edited), BoolArray(t_deleted)}});
    if (!d_conv.empty()) {
      writes.push_back(Call{kScrubEdits, {TextArray(d_conv), IntArray(d_seq)}});
    }
  }
  if (!cursor_writes.empty()) {
    std::vector<std::string> w_user, w_conv;
    std::vector<uint64_t> w_seq;
    for (const auto& [key, seq] : cursor_writes) {
      w_user.push_back(key.first);
      w_conv.push_back(key.second);
      w_seq.push_back(seq);
    }
    writes.push_back(
        Call{kWriteCursors,
             {TextArray(w_user), TextArray(w_conv), IntArray(w_seq)}});
  }
  writes.push_back(Call{kMarkCommit, {writer_id_}});
  writes.push_back(Call{-1, {}, "COMMIT"});

  // The outcomes, which hold once the COMMIT does (the caller reports the
  // batch's failure otherwise).
  for (size_t i = 0; i < plan.size(); ++i) {
    if (plan[i].result.ok()) {
      append_ops[i]->out->append = std::move(*plan[i].result);
      append_ops[i]->out->status = absl::OkStatus();
    } else {
      append_ops[i]->out->status = plan[i].result.status();
    }
  }
  *sent_xact = xact_id;
  return c.Pipeline(writes).status();
}

template <typename T>
T PgStore::WithConnection(const std::function<T(Connection&)>& fn,
                          bool read_only) {
  std::unique_ptr<Connection> conn;
  {
    absl::MutexLock lock(&pool_mu_);
    auto available = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(pool_mu_) {
      return !idle_.empty();
    };
    pool_mu_.Await(absl::Condition(&available));
    conn = std::move(idle_.back());
    idle_.pop_back();
  }
  auto give_back = [&] {
    absl::MutexLock lock(&pool_mu_);
    idle_.push_back(std::move(conn));
  };
  for (bool fresh = false;;) {
    if (conn == nullptr || conn->broken()) {
      if (conn != nullptr) {
        LogWarn("store.pg_connection_lost", {{"server", server_},
                                             {"connection", "pool"},
                                             {"reason", conn->last_error()}});
        conn.reset();
      }
      absl::StatusOr<std::unique_ptr<Connection>> opened =
          Connection::Open(options_, server_);
      if (!opened.ok()) {
        give_back();  // Empty: the next use tries again.
        return T(opened.status());
      }
      conn = std::move(opened).value();
      fresh = true;
      LogInfo("store.pg_reconnected",
              {{"server", server_}, {"connection", "pool"}});
    }
    T result = fn(*conn);
    // A pooled connection that the server closed (it restarted) fails its
    // first statement; a read runs again on a new connection. A write may
    // have committed before the answer was lost: it does not.
    if (read_only && !fresh && conn->broken()) continue;
    give_back();
    return result;
  }
}

absl::Status PgStore::InTransaction(
    const std::function<absl::Status(Connection&)>& fn) {
  for (int attempt = 1;; ++attempt) {
    absl::Status status = WithConnection<absl::Status>(
        [&](Connection& c) -> absl::Status {
          absl::Status s = c.Exec("BEGIN");
          if (s.ok()) s = fn(c);
          if (s.ok()) s = c.Exec("COMMIT");
          if (!c.broken() && c.in_transaction()) (void)c.Exec("ROLLBACK");
          return s;
        },
        /*read_only=*/false);
    if (!absl::IsAborted(status) || attempt >= options_.max_attempts) {
      return status;
    }
  }
}

absl::Status PgStore::CreateUser(const UserRecord& user) {
  return WithConnection<absl::Status>(
      [&](Connection& c) -> absl::Status {
        ASSIGN_OR_RETURN(
            Result r,
            c.Run(kInsertUser,
                  {user.id, user.display_name,
                   absl::StrCat(absl::ToUnixMicros(user.created_at))}));
        if (r.rows() == 0) {
          return absl::AlreadyExistsError(
              absl::StrCat("user \"", user.id, "\" already exists"));
        }
        return absl::OkStatus();
      },
      /*read_only=*/false);
}

absl::StatusOr<UserRecord> PgStore::GetUser(absl::string_view id) {
  return WithConnection<absl::StatusOr<UserRecord>>(
      [&](Connection& c) -> absl::StatusOr<UserRecord> {
        ASSIGN_OR_RETURN(Result r, c.Run(kGetUser, {std::string(id)}));
        if (r.rows() == 0) return NotFoundUser(id);
        return ReadUser(r, 0);
      },
      /*read_only=*/true);
}

absl::StatusOr<std::vector<UserRecord>> PgStore::ListUsers(
    absl::string_view after_id, int limit) {
  return WithConnection<absl::StatusOr<std::vector<UserRecord>>>(
      [&](Connection& c) -> absl::StatusOr<std::vector<UserRecord>> {
        ASSIGN_OR_RETURN(Result r, c.Run(kListUsers, {std::string(after_id),
                                                      absl::StrCat(limit)}));
        std::vector<UserRecord> out;
        for (int i = 0; i < r.rows(); ++i) out.push_back(ReadUser(r, i));
        return out;
      },
      /*read_only=*/true);
}

absl::Status PgStore::RevokeTokens(absl::string_view id,
                                   absl::Time not_before) {
  return WithConnection<absl::Status>(
      [&](Connection& c) -> absl::Status {
        ASSIGN_OR_RETURN(Result r,
                         c.Run(kRevokeTokens,
                               {std::string(id),
                                absl::StrCat(absl::ToUnixMicros(not_before))}));
        if (r.rows() == 0) return NotFoundUser(id);
        return absl::OkStatus();
      },
      /*read_only=*/false);
}

absl::Status PgStore::DeleteUser(absl::string_view id) {
  const std::string user(id);
  return InTransaction([&](Connection& c) -> absl::Status {
    // Membership changes lock the group's counter first, as appends do.
    RETURN_IF_ERROR(c.Run(kLockUserGroups, {user}).status());
    ASSIGN_OR_RETURN(Result found, c.Run(kLockUser, {user}));
    if (found.rows() == 0) return NotFoundUser(user);
    return c.Run(kDeleteUser, {user}).status();
  });
}

absl::Status PgStore::CreateGroup(const GroupRecord& group,
                                  size_t max_members) {
  return InTransaction([&](Connection& c) -> absl::Status {
    ASSIGN_OR_RETURN(
        Result r, c.Run(kInsertGroup,
                        {group.id, group.display_name,
                         absl::StrCat(absl::ToUnixMicros(group.created_at))}));
    if (r.rows() == 0) {
      return absl::AlreadyExistsError(
          absl::StrCat("group \"", group.id, "\" already exists"));
    }
    RETURN_IF_ERROR(
        c.Run(kInsertGroupConversation, {absl::StrCat("g:", group.id)})
            .status());
    return InsertMembers(c, group.id, group.members, max_members);
  });
}

absl::StatusOr<GroupRecord> PgStore::GetGroup(absl::string_view id) {
  return WithConnection<absl::StatusOr<GroupRecord>>(
      [&](Connection& c) { return LoadGroup(c, std::string(id)); },
      /*read_only=*/true);
}

absl::StatusOr<std::vector<GroupRecord>> PgStore::ListGroups(
    absl::string_view after_id, int limit) {
  return WithConnection<absl::StatusOr<std::vector<GroupRecord>>>(
      [&](Connection& c) -> absl::StatusOr<std::vector<GroupRecord>> {
        ASSIGN_OR_RETURN(Result r, c.Run(kListGroupIds, {std::string(after_id),
                                                         absl::StrCat(limit)}));
        std::vector<GroupRecord> out;
        for (int i = 0; i < r.rows(); ++i) {
          ASSIGN_OR_RETURN(GroupRecord g, LoadGroup(c, r.Text(i, 0)));
          out.push_back(std::move(g));
        }
        return out;
      },
      /*read_only=*/true);
}

absl::StatusOr<GroupRecord> PgStore::AddMembers(
    absl::string_view group_id, const std::vector<std::string>& user_ids,
    size_t max_members) {
  const std::string id(group_id);
  GroupRecord out;
  RETURN_IF_ERROR(InTransaction([&](Connection& c) -> absl::Status {
    RETURN_IF_ERROR(
        c.Run(kLockGroupConversation, {absl::StrCat("g:", id)}).status());
    ASSIGN_OR_RETURN(out, LoadGroup(c, id));
    RETURN_IF_ERROR(InsertMembers(c, id, user_ids, max_members));
    ASSIGN_OR_RETURN(out, LoadGroup(c, id));
    return absl::OkStatus();
  }));
  return out;
}

absl::StatusOr<GroupRecord> PgStore::RemoveMembers(
    absl::string_view group_id, const std::vector<std::string>& user_ids) {
  const std::string id(group_id);
  GroupRecord out;
  RETURN_IF_ERROR(InTransaction([&](Connection& c) -> absl::Status {
    RETURN_IF_ERROR(
        c.Run(kLockGroupConversation, {absl::StrCat("g:", id)}).status());
    ASSIGN_OR_RETURN(out, LoadGroup(c, id));
    RETURN_IF_ERROR(c.Run(kDeleteMembers, {id, TextArray(user_ids)}).status());
    ASSIGN_OR_RETURN(out, LoadGroup(c, id));
    return absl::OkStatus();
  }));
  return out;
}

void PgStore::Append(AppendRequest request, AppendCallback done) {
  auto out = std::make_shared<PgOutcome>();
  WriteOp op;
  op.append = std::move(request);
  op.out = out;
  op.done = [out, done = std::move(done)](absl::Status status) {
    if (!status.ok()) {
      done(std::move(status));
    } else {
      done(std::move(out->append));
    }
  };
  pipeline_->Submit(std::move(op));
}

absl::StatusOr<uint64_t> PgStore::InboxHead(absl::string_view user) {
  return WithConnection<absl::StatusOr<uint64_t>>(
      [&](Connection& c) -> absl::StatusOr<uint64_t> {
        ASSIGN_OR_RETURN(Result r, c.Run(kInboxHead, {std::string(user)}));
        if (r.rows() == 0) return NotFoundUser(user);
        return r.UInt(0, 0);
      },
      /*read_only=*/true);
}

absl::StatusOr<std::vector<InboxMessage>> PgStore::ReadInbox(
    absl::string_view user, uint64_t after_seq, uint64_t upto_seq, int limit) {
  return WithConnection<absl::StatusOr<std::vector<InboxMessage>>>(
      [&](Connection& c) -> absl::StatusOr<std::vector<InboxMessage>> {
        ASSIGN_OR_RETURN(Result exists,
                         c.Run(kUserExists, {std::string(user)}));
        if (exists.rows() == 0) return NotFoundUser(user);
        ASSIGN_OR_RETURN(
            Result r,
            c.Run(kReadInbox,
                  {std::string(user), absl::StrCat(after_seq),
                   absl::StrCat(upto_seq == 0 ? INT64_MAX
                                              : static_cast<int64_t>(upto_seq)),
                   absl::StrCat(limit)}));
        std::vector<InboxMessage> out;
        for (int i = 0; i < r.rows(); ++i) {
          out.push_back({r.UInt(i, 0), ReadMessage(r, i, 1)});
        }
        return out;
      },
      /*read_only=*/true);
}

absl::StatusOr<HistoryPage> PgStore::ReadHistory(absl::string_view conversation,
                                                 uint64_t before_seq,
                                                 int limit) {
  return WithConnection<absl::StatusOr<HistoryPage>>(
      [&](Connection& c) -> absl::StatusOr<HistoryPage> {
        // One more than asked tells whether older messages exist.
        ASSIGN_OR_RETURN(
            Result r,
            c.Run(kReadHistory,
                  {std::string(conversation),
                   absl::StrCat(before_seq == 0
                                    ? INT64_MAX
                                    : static_cast<int64_t>(before_seq)),
                   absl::StrCat(int64_t{limit} + 1)}));
        HistoryPage page;
        for (int i = 0; i < r.rows(); ++i) {
          page.messages.push_back(ReadMessage(r, i, 0));
        }
        if (page.messages.size() > static_cast<size_t>(limit)) {
          page.more = true;
          page.messages.pop_back();
        }
        std::reverse(page.messages.begin(), page.messages.end());
        return page;
      },
      /*read_only=*/true);
}

absl::StatusOr<uint64_t> PgStore::ConversationHead(
    absl::string_view conversation) {
  return WithConnection<absl::StatusOr<uint64_t>>(
      [&](Connection& c) -> absl::StatusOr<uint64_t> {
        ASSIGN_OR_RETURN(Result r,
                         c.Run(kConversationHead, {std::string(conversation)}));
        return r.rows() == 0 ? 0 : r.UInt(0, 0);
      },
      /*read_only=*/true);
}

absl::StatusOr<ConversationPage> PgStore::ListConversations(
    absl::string_view user, absl::string_view page_token, int limit) {
  if (limit < 1) return absl::InvalidArgumentError("limit must be at least 1");
  ConversationCursor after{INT64_MAX, ""};
  if (!page_token.empty()) {
    ASSIGN_OR_RETURN(after, DecodeConversationCursor(page_token));
  }
  return WithConnection<absl::StatusOr<ConversationPage>>(
      [&](Connection& c) -> absl::StatusOr<ConversationPage> {
        ASSIGN_OR_RETURN(Result exists,
                         c.Run(kUserExists, {std::string(user)}));
        if (exists.rows() == 0) return NotFoundUser(user);
        // One more than asked tells whether a next page exists.
        ASSIGN_OR_RETURN(
            Result r, c.Run(kListConversations,
                            {std::string(user), absl::StrCat(after.activity_us),
                             after.conversation, absl::StrCat(limit + 1)}));
        ConversationPage page;
        for (int i = 0; i < r.rows(); ++i) {
          ConversationSummary& out = page.conversations.emplace_back();
          out.conversation = r.Text(i, 0);
          out.group = r.IsNull(i, 1);
          out.peer = r.Text(i, 1);
          out.head_seq = r.UInt(i, 2);
          out.last_activity = absl::FromUnixMicros(r.Int(i, 3));
          out.read_seq = r.UInt(i, 4);
          out.unread = r.UInt(i, 5);
          out.peer_read_seq = r.UInt(i, 6);
          out.title = r.Text(i, 7);
          if (!out.group && out.title.empty()) out.title = out.peer;
          if (!r.IsNull(i, 8)) out.last_message = ReadMessage(r, i, 8);
        }
        if (page.conversations.size() > static_cast<size_t>(limit)) {
          page.conversations.pop_back();
          const ConversationSummary& last = page.conversations.back();
          page.next_page_token = EncodeConversationCursor(
              {absl::ToUnixMicros(last.last_activity), last.conversation});
        }
        return page;
      },
      /*read_only=*/true);
}

absl::StatusOr<uint64_t> PgStore::CountUnread(absl::string_view user,
                                              absl::string_view conversation,
                                              uint64_t after_seq) {
  return WithConnection<absl::StatusOr<uint64_t>>(
      [&](Connection& c) -> absl::StatusOr<uint64_t> {
        ASSIGN_OR_RETURN(
            Result r,
            c.Run(kCountUnread, {std::string(conversation),
                                 absl::StrCat(after_seq), std::string(user)}));
        return r.UInt(0, 0);
      },
      /*read_only=*/true);
}

void PgStore::AdvanceReadCursor(std::string user, std::string conversation,
                                uint64_t seq, CursorCallback done) {
  auto out = std::make_shared<PgOutcome>();
  WriteOp op;
  op.cursor = true;
  op.user = std::move(user);
  op.conversation = std::move(conversation);
  op.seq = seq;
  op.out = out;
  op.done = [out, done = std::move(done)](absl::Status status) {
    if (!status.ok()) {
      done(std::move(status));
    } else {
      done(out->advanced);
    }
  };
  pipeline_->Submit(std::move(op));
}

absl::StatusOr<uint64_t> PgStore::ReadCursor(absl::string_view user,
                                             absl::string_view conversation) {
  return WithConnection<absl::StatusOr<uint64_t>>(
      [&](Connection& c) -> absl::StatusOr<uint64_t> {
        ASSIGN_OR_RETURN(
            Result r,
            c.Run(kReadCursor, {std::string(user), std::string(conversation)}));
        return r.rows() == 0 ? 0 : r.UInt(0, 0);
      },
      /*read_only=*/true);
}

absl::StatusOr<std::vector<std::string>> PgStore::Contacts(
    absl::string_view user, size_t max_group_members) {
  return WithConnection<absl::StatusOr<std::vector<std::string>>>(
      [&](Connection& c) -> absl::StatusOr<std::vector<std::string>> {
        ASSIGN_OR_RETURN(Result r,
                         c.Run(kContacts, {std::string(user),
                                           absl::StrCat(max_group_members)}));
        std::vector<std::string> out;
        for (int i = 0; i < r.rows(); ++i) out.push_back(r.Text(i, 0));
        return out;
      },
      /*read_only=*/true);
}

absl::StatusOr<bool> PgStore::SetBlocked(absl::string_view user,
                                         absl::string_view other, bool blocked,
                                         size_t max_blocked) {
  if (user == other) {
    return absl::InvalidArgumentError(
        absl::StrCat("user \"", user, "\" cannot block themselves"));
  }
  const std::string a(user), b(other);
  bool changed = false;
  RETURN_IF_ERROR(InTransaction([&](Connection& c) -> absl::Status {
    // Appends of the two lock these rows before they read the blocks, so one
    // that commits after this transaction sees its change.
    ASSIGN_OR_RETURN(Result found, c.Run(kLockUserPair, {a, b}));
    std::set<std::string> exists;
    for (int i = 0; i < found.rows(); ++i) exists.insert(found.Text(i, 0));
    for (const std::string& id : {a, b}) {
      if (exists.count(id) == 0) return NotFoundUser(id);
    }
    ASSIGN_OR_RETURN(Result r,
                     c.Run(blocked ? kInsertBlock : kDeleteBlock, {a, b}));
    changed = r.rows() > 0;
    if (!blocked || !changed) return absl::OkStatus();
    ASSIGN_OR_RETURN(Result count, c.Run(kCountBlocks, {a}));
    const uint64_t n = count.UInt(0, 0);
    if (n > max_blocked) {
      return TooManyBlocksError(a, n - 1, max_blocked);
    }
    return absl::OkStatus();
  }));
  return changed;
}

absl::StatusOr<std::vector<std::string>> PgStore::ListBlocked(
    absl::string_view user) {
  return WithConnection<absl::StatusOr<std::vector<std::string>>>(
      [&](Connection& c) -> absl::StatusOr<std::vector<std::string>> {
        ASSIGN_OR_RETURN(Result found, c.Run(kUserExists, {std::string(user)}));
        if (found.rows() == 0) return NotFoundUser(user);
        ASSIGN_OR_RETURN(Result r, c.Run(kListBlocked, {std::string(user)}));
        std::vector<std::string> out;
        for (int i = 0; i < r.rows(); ++i) out.push_back(r.Text(i, 0));
        return out;
      },
      /*read_only=*/true);
}

absl::StatusOr<bool> PgStore::BlockedEitherWay(absl::string_view a,
                                               absl::string_view b) {
  return WithConnection<absl::StatusOr<bool>>(
      [&](Connection& c) -> absl::StatusOr<bool> {
        ASSIGN_OR_RETURN(Result r, c.Run(kBlockedEitherWay,
                                         {std::string(a), std::string(b)}));
        return r.rows() > 0;
      },
      /*read_only=*/true);
}

absl::StatusOr<StoreStats> PgStore::Stats() {
  return WithConnection<absl::StatusOr<StoreStats>>(
      [&](Connection& c) -> absl::StatusOr<StoreStats> {
        ASSIGN_OR_RETURN(Result r, c.Run(kStats, {}));
        return StoreStats{r.UInt(0, 0), r.UInt(0, 1)};
      },
      /*read_only=*/true);
}

}  // namespace parley::service
