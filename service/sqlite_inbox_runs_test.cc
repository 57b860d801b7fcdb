// SqliteStore's inboxes as runs (sqlite_store.h): what a message costs in
// rows, and that the runs read back exactly as one row per message would,
// checked against FakeStore (a plain vector per inbox) over random
// interleavings of direct and group messages, membership changes by events
// and by operators, deleted and recreated users, batches with refused
// appends, and reopening the database (the writer's memory lost).
#include <sqlite3.h>
#include <stdlib.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/conversation.h"
#include "service/fake_store.h"
#include "service/sqlite_store.h"
#include "service/testing/append_sync.h"

namespace parley::service {
namespace {

std::string TempDbPath() {
  std::string pattern = ::testing::TempDir() + "/inbox_runs_test.XXXXXX";
  EXPECT_NE(mkdtemp(pattern.data()), nullptr);
  return pattern + "/parley.db";
}

std::unique_ptr<SqliteStore> OpenOrDie(const std::string& path) {
  SqliteStoreOptions options;
  options.path = path;
  auto store = SqliteStore::Open(options);
  EXPECT_TRUE(store.ok()) << store.status();
  return std::move(store).value();
}

// The single value of `sql` over the database at `path`.
int64_t QueryInt(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr),
            SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr), SQLITE_OK)
      << sqlite3_errmsg(db);
  EXPECT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  const int64_t value = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return value;
}

AppendRequest Text(const std::string& from, const std::string& to, bool group,
                   const std::string& client_msg_id) {
  AppendRequest r;
  r.sender = from;
  r.to = to;
  r.to_group = group;
  r.conversation = group ? GroupConversation(to) : DirectConversation(from, to);
  r.client_msg_id = client_msg_id;
  r.text = "text " + client_msg_id;
  r.sent_at = absl::FromUnixSeconds(1000);
  return r;
}

// An operator's change of a group's members.
AppendRequest Members(const std::string& group, GroupEventType type,
                      std::vector<std::string> users,
                      const std::string& client_msg_id) {
  AppendRequest r;
  r.to = group;
  r.to_group = true;
  r.conversation = GroupConversation(group);
  r.client_msg_id = client_msg_id;
  r.kind = MessageKind::kGroupEvent;
  r.group_event.type = type;
  r.group_event.users = std::move(users);
  r.max_group_members = 100;
  r.sent_at = absl::FromUnixSeconds(1000);
  return r;
}

using testing::AppendSync;

TEST(SqliteInboxRunsTest, AGroupMessageAddsNoRowPerMemberAfterTheFirst) {
  const std::string path = TempDbPath();
  {
    auto store = OpenOrDie(path);
    GroupRecord team{"team", "Team", {}, absl::FromUnixSeconds(1)};
    for (int i = 0; i < 40; ++i) {
      const std::string user = absl::StrCat("u", i);
      ASSERT_TRUE(
          store->CreateUser({user, user, absl::FromUnixSeconds(1)}).ok());
      team.members.push_back(user);
    }
    ASSERT_TRUE(store->CreateGroup(team, 100).ok());
    for (int i = 0; i < 25; ++i) {
      store->Append(
          Text(absl::StrCat("u", i % 3), "team", true, absl::StrCat("g", i)),
          [](absl::StatusOr<AppendResult> r) { ASSERT_TRUE(r.ok()); });
    }
    // Ten messages each way between two users: two rows, one per inbox.
    for (int i = 0; i < 20; ++i) {
      store->Append(
          Text(i % 2 == 0 ? "u0" : "u1", i % 2 == 0 ? "u1" : "u0", false,
               absl::StrCat("d", i)),
          [](absl::StatusOr<AppendResult> r) { ASSERT_TRUE(r.ok()); });
    }
    store->Flush();
    auto inbox = store->ReadInbox("u39", 0, 0, 100);
    ASSERT_TRUE(inbox.ok()) << inbox.status();
    ASSERT_EQ(inbox->size(), 25u);
    for (size_t i = 0; i < inbox->size(); ++i) {
      EXPECT_EQ((*inbox)[i].inbox_seq, i + 1);
      EXPECT_EQ((*inbox)[i].message.seq, i + 1);
    }
    EXPECT_EQ(*store->InboxHead("u0"), 45u);
  }
  EXPECT_EQ(QueryInt(path, "SELECT COUNT(*) FROM inbox"), 40 + 2);
  EXPECT_EQ(QueryInt(path, "SELECT COUNT(*) FROM inbox_entries"),
            40 * 25 + 2 * 20);
}

TEST(SqliteInboxRunsTest, LeavingAGroupEndsTheRunAtTheEventThatRemovedThem) {
  const std::string path = TempDbPath();
  auto store = OpenOrDie(path);
  for (const char* user : {"a", "b", "c"}) {
    ASSERT_TRUE(store->CreateUser({user, user, absl::FromUnixSeconds(1)}).ok());
  }
  ASSERT_TRUE(
      store
          ->CreateGroup(
              {"team", "Team", {"a", "b", "c"}, absl::FromUnixSeconds(1)}, 10)
          .ok());
  ASSERT_TRUE(AppendSync(*store, Text("a", "team", true, "1")).ok());
  ASSERT_TRUE(
      AppendSync(*store,
                 Members("team", GroupEventType::kMembersRemoved, {"c"}, "2"))
          .ok());
  ASSERT_TRUE(AppendSync(*store, Text("a", "team", true, "3")).ok());
  // An operator's removal, without an event: b's run ends where it stands.
  ASSERT_TRUE(store->RemoveMembers("team", {"b"}).ok());
  ASSERT_TRUE(AppendSync(*store, Text("a", "team", true, "4")).ok());
  for (int reopen = 0; reopen < 2; ++reopen) {
    if (reopen == 1) store = OpenOrDie(path);
    EXPECT_EQ(*store->InboxHead("a"), 4u);
    EXPECT_EQ(*store->InboxHead("b"), 3u);
    EXPECT_EQ(*store->InboxHead("c"), 2u);
    EXPECT_EQ(store->ReadInbox("c", 0, 0, 10)->size(), 2u);
    EXPECT_EQ(store->ReadInbox("b", 0, 0, 10)->size(), 3u);
  }
  // Back in: a new run from the next message on.
  ASSERT_TRUE(store->AddMembers("team", {"c"}, 10).ok());
  ASSERT_TRUE(AppendSync(*store, Text("a", "team", true, "5")).ok());
  auto c = store->ReadInbox("c", 0, 0, 10);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->size(), 3u);
  EXPECT_EQ((*c)[2].inbox_seq, 3u);
  EXPECT_EQ((*c)[2].message.seq, 5u);
}

// A release before runs would take each run for one message: the database
// says which schema it has, and a newer one than this release's is refused.
TEST(SqliteInboxRunsTest, ADatabaseOfANewerSchemaIsRefusedNamingBoth) {
  const std::string path = TempDbPath();
  OpenOrDie(path).reset();
  EXPECT_EQ(QueryInt(path,
                     "SELECT value FROM meta WHERE key = "
                     "'schema_version'"),
            2);
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(db,
                           "UPDATE meta SET value = '3' WHERE key = "
                           "'schema_version'",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  SqliteStoreOptions options;
  options.path = path;
  auto refused = SqliteStore::Open(options);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(),
              ::testing::HasSubstr("newer parley-service (schema version 3; "
                                   "this release knows up to 2)"));
}

// What a user's inbox holds, comparably across stores (message ids differ).
std::vector<std::string> Describe(const std::vector<InboxMessage>& inbox) {
  std::vector<std::string> out;
  for (const InboxMessage& m : inbox) {
    out.push_back(absl::StrCat(m.inbox_seq, " ", m.message.conversation, "#",
                               m.message.seq, " ", m.message.text, " k",
                               static_cast<int>(m.message.kind)));
  }
  return out;
}

std::string Describe(const absl::StatusOr<AppendResult>& r) {
  if (!r.ok()) return absl::StrCat("error ", r.status().code());
  std::string out =
      absl::StrCat(r->message.conversation, "#", r->message.seq, " sender@",
                   r->sender_inbox_seq, r->duplicate ? " dup" : "");
  for (const InboxEntry& e : r->recipients) {
    absl::StrAppend(&out, " ", e.user, "@", e.inbox_seq);
  }
  return out;
}

class RandomHistory {
 public:
  explicit RandomHistory(uint32_t seed) : rng_(seed), path_(TempDbPath()) {
    sqlite_ = OpenOrDie(path_);
  }

  void Run(int steps) {
    for (const std::string& user : users_) CreateUser(user);
    for (const char* group : {"g0", "g1"}) {
      GroupRecord record{group, group, {}, absl::FromUnixSeconds(1)};
      for (const std::string& user : users_) {
        if (Chance(2)) record.members.push_back(user);
      }
      ASSERT_EQ(sqlite_->CreateGroup(record, 100).code(),
                fake_.CreateGroup(record, 100).code());
    }
    for (int step = 0; step < steps; ++step) {
      SCOPED_TRACE(absl::StrCat("step ", step));
      const int op = Pick(100);
      if (op < 30) {
        Batch({Text(User(), User(), false, Id())});
      } else if (op < 60) {
        Batch({Text(User(), Group(), true, Id())});
      } else if (op < 70) {
        // Several appends in one transaction, a refused one among them
        // sometimes (a non-member's group message).
        std::vector<AppendRequest> batch;
        const int n = 2 + Pick(6);
        for (int i = 0; i < n; ++i) {
          batch.push_back(Chance(2) ? Text(User(), Group(), true, Id())
                                    : Text(User(), User(), false, Id()));
        }
        Batch(std::move(batch));
      } else if (op < 76) {
        Batch(
            {Members(Group(), GroupEventType::kMembersAdded, {User()}, Id())});
      } else if (op < 82) {
        Batch({Members(Group(), GroupEventType::kMembersRemoved, {User()},
                       Id())});
      } else if (op < 86) {
        AppendRequest leave = Text(User(), Group(), true, Id());
        leave.kind = MessageKind::kGroupEvent;
        leave.group_event.type = GroupEventType::kMemberLeft;
        leave.text.clear();
        Batch({leave});
      } else if (op < 90) {
        const std::string group = Group();
        const std::vector<std::string> users = {User()};
        if (Chance(2)) {
          ASSERT_EQ(sqlite_->AddMembers(group, users, 100).status().code(),
                    fake_.AddMembers(group, users, 100).status().code());
        } else {
          ASSERT_EQ(sqlite_->RemoveMembers(group, users).status().code(),
                    fake_.RemoveMembers(group, users).status().code());
        }
      } else if (op < 93) {
        const std::string user = User();
        ASSERT_EQ(sqlite_->DeleteUser(user).code(),
                  fake_.DeleteUser(user).code());
        CreateUser(user);
      } else if (op < 96) {
        // A repeat of an earlier client_msg_id: a duplicate, nothing stored.
        if (!sent_.empty()) Batch({sent_[Pick(sent_.size())]});
      } else {
        sqlite_.reset();
        sqlite_ = OpenOrDie(path_);
      }
      ASSERT_NO_FATAL_FAILURE(Compare());
    }
  }

 private:
  void CreateUser(const std::string& user) {
    const UserRecord record{user, user, absl::FromUnixSeconds(1)};
    ASSERT_EQ(sqlite_->CreateUser(record).code(),
              fake_.CreateUser(record).code());
  }

  // Submits `batch` to both stores without waiting in between (SQLite puts
  // them in one transaction), then compares the outcomes.
  void Batch(std::vector<AppendRequest> batch) {
    std::vector<absl::StatusOr<AppendResult>> got(batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      sqlite_->Append(batch[i], [&got, i](absl::StatusOr<AppendResult> r) {
        got[i] = std::move(r);
      });
    }
    sqlite_->Flush();
    for (size_t i = 0; i < batch.size(); ++i) {
      const absl::StatusOr<AppendResult> want = AppendSync(fake_, batch[i]);
      EXPECT_EQ(Describe(got[i]), Describe(want)) << "append " << i;
      if (want.ok()) sent_.push_back(batch[i]);
    }
  }

  void Compare() {
    for (const std::string& user : users_) {
      SCOPED_TRACE(user);
      auto head = sqlite_->InboxHead(user);
      ASSERT_TRUE(head.ok()) << head.status();
      ASSERT_EQ(*head, *fake_.InboxHead(user));
      auto all = sqlite_->ReadInbox(user, 0, 0, 10000);
      ASSERT_TRUE(all.ok()) << all.status();
      ASSERT_EQ(Describe(*all), Describe(*fake_.ReadInbox(user, 0, 0, 10000)));
      // A page from anywhere, with or without an upper bound.
      const uint64_t after = Pick(*head + 2);
      const uint64_t upto = Chance(2) ? 0 : after + Pick(6);
      const int limit = 1 + Pick(5);
      ASSERT_EQ(Describe(*sqlite_->ReadInbox(user, after, upto, limit)),
                Describe(*fake_.ReadInbox(user, after, upto, limit)))
          << after << " " << upto << " " << limit;
    }
  }

  uint64_t Pick(uint64_t n) {
    return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_);
  }
  bool Chance(int one_in) { return Pick(one_in) == 0; }
  std::string User() { return users_[Pick(users_.size())]; }
  std::string Group() { return Chance(2) ? "g0" : "g1"; }
  std::string Id() { return absl::StrCat("m", next_id_++); }

  std::mt19937 rng_;
  std::string path_;
  std::unique_ptr<SqliteStore> sqlite_;
  FakeStore fake_;
  const std::vector<std::string> users_ = {"u0", "u1", "u2", "u3", "u4"};
  std::vector<AppendRequest> sent_;
  int next_id_ = 0;
};

TEST(SqliteInboxRunsTest, RunsReadBackAsARowPerMessageWouldInRandomHistories) {
  for (uint32_t seed = 1; seed <= 12; ++seed) {
    SCOPED_TRACE(absl::StrCat("seed ", seed));
    RandomHistory history(seed);
    ASSERT_NO_FATAL_FAILURE(history.Run(150));
  }
}

}  // namespace
}  // namespace parley::service
