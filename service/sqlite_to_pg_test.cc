#include "service/sqlite_to_pg.h"

#include <stdlib.h>

#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/data_dir_lock.h"
#include "service/pg_store.h"
#include "service/sqlite_store.h"
#include "service/testing/postgres_server.h"

namespace parley::service {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

absl::StatusOr<AppendResult> AppendSync(Store& store, const std::string& from,
                                        const std::string& to, bool group,
                                        const std::string& key,
                                        const std::string& text = "hi") {
  AppendRequest r;
  r.sender = from;
  r.to = to;
  r.to_group = group;
  r.client_msg_id = key;
  r.text = text;
  r.sent_at = absl::FromUnixSeconds(100);
  r.conversation =
      group ? "g:" + to : "d:" + std::min(from, to) + ":" + std::max(from, to);
  absl::StatusOr<AppendResult> out;
  absl::Notification done;
  store.Append(r, [&](absl::StatusOr<AppendResult> result) {
    out = std::move(result);
    done.Notify();
  });
  done.WaitForNotification();
  return out;
}

class SqliteToPgTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string dir = ::testing::TempDir() + "/sqlite_to_pg.XXXXXX";
    ASSERT_NE(mkdtemp(dir.data()), nullptr);
    sqlite_path_ = dir + "/parley.db";
    auto server = testing::PostgresServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server).value();
    auto url = server_->CreateDatabase("target");
    ASSERT_TRUE(url.ok()) << url.status();
    url_ = *url;
  }

  // An SQLite store with users, a group, direct and group messages (one
  // text with the characters COPY escapes), a read cursor and a block.
  void FillSqlite() {
    SqliteStoreOptions options;
    options.path = sqlite_path_;
    auto store = SqliteStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    Store& s = **store;
    generation_ = s.Generation();
    for (const char* id : {"alice", "bob", "carol"}) {
      ASSERT_TRUE(s.CreateUser({id, std::string("name of ") + id,
                                absl::FromUnixSeconds(7)})
                      .ok());
    }
    ASSERT_TRUE(s.RevokeTokens("carol", absl::FromUnixSeconds(9)).ok());
    ASSERT_TRUE(*s.SetBlocked("bob", "carol", true, 10));
    ASSERT_TRUE(s.CreateGroup({"team",
                               "Team",
                               {"alice", "bob", "carol"},
                               absl::FromUnixSeconds(8)},
                              10)
                    .ok());
    ASSERT_TRUE(AppendSync(s, "alice", "bob", false, "k1",
                           "tab\there\nnew line \\ backslash")
                    .ok());
    ASSERT_TRUE(AppendSync(s, "bob", "team", true, "k2").ok());
    auto last = AppendSync(s, "carol", "alice", false, "k3");
    ASSERT_TRUE(last.ok());
    alice_k3_inbox_seq_ = last->recipients[0].inbox_seq;
    absl::Notification advanced;
    s.AdvanceReadCursor("bob", "d:alice:bob", 1,
                        [&](absl::StatusOr<bool>) { advanced.Notify(); });
    advanced.WaitForNotification();
  }

  std::unique_ptr<testing::PostgresServer> server_;
  std::string sqlite_path_;
  std::string url_;
  std::string generation_;
  uint64_t alice_k3_inbox_seq_ = 0;
};

TEST_F(SqliteToPgTest, CopiesEverythingAndTheStoreGoesOnWhereItWas) {
  ASSERT_NO_FATAL_FAILURE(FillSqlite());
  auto summary = CopySqliteToPostgres(sqlite_path_, url_);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->users, 3u);
  EXPECT_EQ(summary->groups, 1u);
  EXPECT_EQ(summary->messages, 3u);
  EXPECT_EQ(summary->inbox_entries, 2u + 3u + 2u);
  EXPECT_EQ(summary->generation, generation_);

  PgStoreOptions options;
  options.url = url_;
  auto opened = PgStore::Open(options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  PgStore& pg = **opened;
  EXPECT_EQ(pg.Generation(), generation_);
  EXPECT_EQ(pg.GetUser("bob")->display_name, "name of bob");
  EXPECT_EQ(pg.GetUser("carol")->tokens_not_before, absl::FromUnixSeconds(9));
  EXPECT_EQ(pg.GetUser("bob")->tokens_not_before, absl::InfinitePast());
  EXPECT_THAT(pg.GetGroup("team")->members,
              ElementsAre("alice", "bob", "carol"));
  auto inbox = pg.ReadInbox("alice", 0, 0, 10);
  ASSERT_TRUE(inbox.ok()) << inbox.status();
  ASSERT_EQ(inbox->size(), 3u);
  EXPECT_EQ((*inbox)[0].message.text, "tab\there\nnew line \\ backslash");
  EXPECT_EQ((*inbox)[0].message.message_id, "1");
  EXPECT_EQ((*inbox)[1].message.conversation, "g:team");
  EXPECT_EQ(*pg.ReadCursor("bob", "d:alice:bob"), 1u);
  EXPECT_THAT(*pg.Contacts("alice", 10), ElementsAre("bob", "carol"));
  EXPECT_EQ(pg.Stats()->messages, 3u);
  EXPECT_THAT(*pg.ListBlocked("bob"), ElementsAre("carol"));
  EXPECT_TRUE(
      IsBlockedError(AppendSync(pg, "carol", "bob", false, "k5").status()));

  // A retried send is still a duplicate, with its original inbox_seq.
  auto dup = AppendSync(pg, "carol", "alice", false, "k3");
  ASSERT_TRUE(dup.ok());
  EXPECT_TRUE(dup->duplicate);
  EXPECT_EQ(dup->message.message_id, "3");
  // The counters go on: seq, inbox_seq and message ids (unique, not
  // gapless: every append of a batch reserves one).
  auto next = AppendSync(pg, "alice", "bob", false, "k4");
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->message.seq, 2u);
  EXPECT_EQ(next->sender_inbox_seq, alice_k3_inbox_seq_ + 1);
  EXPECT_GT(std::stoll(next->message.message_id), 3);
}

TEST_F(SqliteToPgTest, EditedAndDeletedMessagesKeepTheirStateAndEvents) {
  {
    SqliteStoreOptions options;
    options.path = sqlite_path_;
    auto store = SqliteStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    Store& s = **store;
    for (const char* id : {"alice", "bob"}) {
      ASSERT_TRUE(s.CreateUser({id, "", absl::FromUnixSeconds(7)}).ok());
    }
    ASSERT_TRUE(AppendSync(s, "alice", "bob", false, "k1", "edited").ok());
    ASSERT_TRUE(AppendSync(s, "alice", "bob", false, "k2", "deleted").ok());
    for (auto [seq, key, text] :
         {std::tuple<uint64_t, const char*, const char*>{1, "e1", "edited!"},
          {2, "x1", ""}}) {
      AppendRequest r;
      r.sender = "alice";
      r.to = "bob";
      r.conversation = "d:alice:bob";
      r.client_msg_id = key;
      r.kind = *text == '\0' ? MessageKind::kDelete : MessageKind::kEdit;
      r.target_seq = seq;
      r.text = text;
      r.sent_at = absl::FromUnixSeconds(150);
      absl::Notification done;
      s.Append(r, [&](absl::StatusOr<AppendResult> result) {
        EXPECT_TRUE(result.ok()) << result.status();
        done.Notify();
      });
      done.WaitForNotification();
    }
  }
  auto summary = CopySqliteToPostgres(sqlite_path_, url_);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->messages, 4u);
  PgStoreOptions options;
  options.url = url_;
  auto pg = PgStore::Open(options);
  ASSERT_TRUE(pg.ok()) << pg.status();
  auto history = (*pg)->ReadHistory("d:alice:bob", 0, 10);
  ASSERT_TRUE(history.ok()) << history.status();
  ASSERT_EQ(history->messages.size(), 4u);
  EXPECT_EQ(history->messages[0].text, "edited!");
  EXPECT_EQ(history->messages[0].edited_at, absl::FromUnixSeconds(150));
  EXPECT_TRUE(history->messages[1].deleted);
  EXPECT_EQ(history->messages[1].text, "");
  EXPECT_EQ(history->messages[2].kind, MessageKind::kEdit);
  EXPECT_EQ(history->messages[2].target_seq, 1u);
  EXPECT_EQ(history->messages[3].kind, MessageKind::kDelete);
  EXPECT_FALSE(history->messages[3].deleted);
}

TEST_F(SqliteToPgTest, GroupRolesAndEventsAreCopied) {
  {
    SqliteStoreOptions options;
    options.path = sqlite_path_;
    auto store = SqliteStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    Store& s = **store;
    for (const char* id : {"alice", "bob"}) {
      ASSERT_TRUE(s.CreateUser({id, "", absl::FromUnixSeconds(7)}).ok());
    }
    for (auto [type, key] : {std::pair<GroupEventType, const char*>{
                                 GroupEventType::kCreated, "k1"},
                             {GroupEventType::kRoleChanged, "k2"}}) {
      AppendRequest r;
      r.sender = "alice";
      r.to = "g1";
      r.to_group = true;
      r.conversation = "g:g1";
      r.client_msg_id = key;
      r.kind = MessageKind::kGroupEvent;
      r.text = "Team";
      r.sent_at = absl::FromUnixSeconds(150);
      r.group_event.type = type;
      r.group_event.users = {"bob"};
      r.group_event.role = GroupRole::kAdmin;
      r.max_group_members = 10;
      absl::Notification done;
      s.Append(r, [&](absl::StatusOr<AppendResult> result) {
        EXPECT_TRUE(result.ok()) << result.status();
        done.Notify();
      });
      done.WaitForNotification();
    }
  }
  auto summary = CopySqliteToPostgres(sqlite_path_, url_);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->messages, 2u);
  PgStoreOptions options;
  options.url = url_;
  auto pg = PgStore::Open(options);
  ASSERT_TRUE(pg.ok()) << pg.status();
  auto group = (*pg)->GetGroup("g1");
  ASSERT_TRUE(group.ok()) << group.status();
  EXPECT_EQ(group->display_name, "Team");
  EXPECT_EQ(group->roles,
            (std::map<std::string, GroupRole>{{"alice", GroupRole::kOwner},
                                              {"bob", GroupRole::kAdmin}}));
  auto history = (*pg)->ReadHistory("g:g1", 0, 10);
  ASSERT_TRUE(history.ok()) << history.status();
  ASSERT_EQ(history->messages.size(), 2u);
  EXPECT_EQ(history->messages[0].kind, MessageKind::kGroupEvent);
  EXPECT_THAT(history->messages[0].group_event.users,
              ElementsAre("alice", "bob"));
  EXPECT_EQ(history->messages[1].group_event.type,
            GroupEventType::kRoleChanged);
  EXPECT_EQ(history->messages[1].group_event.role, GroupRole::kAdmin);
  // The group conversation's counter is copied too.
  EXPECT_EQ(*(*pg)->ConversationHead("g:g1"), 2u);
}

// SQLite keeps inboxes as runs (sqlite_store.h), PostgreSQL a row per
// message: the copy expands them, and each inbox reads the same in both.
TEST_F(SqliteToPgTest, InboxRunsAreCopiedAsARowPerMessage) {
  const std::vector<std::string> users = {"alice", "bob", "carol"};
  std::map<std::string,
           std::vector<std::tuple<uint64_t, std::string, uint64_t>>>
      want;
  {
    SqliteStoreOptions options;
    options.path = sqlite_path_;
    auto store = SqliteStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    Store& s = **store;
    for (const std::string& id : users) {
      ASSERT_TRUE(s.CreateUser({id, "", absl::FromUnixSeconds(7)}).ok());
    }
    ASSERT_TRUE(
        s.CreateGroup({"team", "Team", users, absl::FromUnixSeconds(8)}, 10)
            .ok());
    for (int i = 0; i < 4; ++i) {
      ASSERT_TRUE(
          AppendSync(s, "bob", "team", true, absl::StrCat("g", i)).ok());
    }
    ASSERT_TRUE(AppendSync(s, "alice", "bob", false, "d1").ok());
    ASSERT_TRUE(s.RemoveMembers("team", {"carol"}).ok());
    for (int i = 4; i < 7; ++i) {
      ASSERT_TRUE(
          AppendSync(s, "bob", "team", true, absl::StrCat("g", i)).ok());
    }
    for (const std::string& id : users) {
      auto inbox = s.ReadInbox(id, 0, 0, 100);
      ASSERT_TRUE(inbox.ok()) << inbox.status();
      for (const InboxMessage& m : *inbox) {
        want[id].emplace_back(m.inbox_seq, m.message.conversation,
                              m.message.seq);
      }
    }
  }
  ASSERT_EQ(want["alice"].size(), 8u);
  ASSERT_EQ(want["carol"].size(), 4u);
  auto summary = CopySqliteToPostgres(sqlite_path_, url_);
  ASSERT_TRUE(summary.ok()) << summary.status();
  EXPECT_EQ(summary->inbox_entries, 8u + 8u + 4u);
  PgStoreOptions options;
  options.url = url_;
  auto pg = PgStore::Open(options);
  ASSERT_TRUE(pg.ok()) << pg.status();
  for (const std::string& id : users) {
    SCOPED_TRACE(id);
    std::vector<std::tuple<uint64_t, std::string, uint64_t>> got;
    auto inbox = (*pg)->ReadInbox(id, 0, 0, 100);
    ASSERT_TRUE(inbox.ok()) << inbox.status();
    for (const InboxMessage& m : *inbox) {
      got.emplace_back(m.inbox_seq, m.message.conversation, m.message.seq);
    }
    EXPECT_EQ(got, want[id]);
    EXPECT_EQ(*(*pg)->InboxHead(id), want[id].size());
  }
  // Each inbox goes on after its last entry.
  auto next = AppendSync(**pg, "bob", "team", true, "g7");
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ(next->sender_inbox_seq, 9u);
}

TEST_F(SqliteToPgTest, NonEmptyTargetIsRefusedAndLeftAlone) {
  ASSERT_NO_FATAL_FAILURE(FillSqlite());
  {
    PgStoreOptions options;
    options.url = url_;
    auto pg = PgStore::Open(options);
    ASSERT_TRUE(pg.ok()) << pg.status();
    ASSERT_TRUE((*pg)->CreateUser({"zed", "", absl::Now()}).ok());
  }
  auto summary = CopySqliteToPostgres(sqlite_path_, url_);
  EXPECT_EQ(summary.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(summary.status().message()),
              HasSubstr("already holds"));
  PgStoreOptions options;
  options.url = url_;
  auto pg = PgStore::Open(options);
  ASSERT_TRUE(pg.ok());
  EXPECT_EQ((*pg)->Stats()->users, 1u);
  EXPECT_NE((*pg)->Generation(), generation_);
}

TEST_F(SqliteToPgTest, SourceInUseByAServiceIsRefused) {
  ASSERT_NO_FATAL_FAILURE(FillSqlite());
  const std::string dir = sqlite_path_.substr(0, sqlite_path_.rfind('/'));
  auto held = DataDirLock::Acquire(dir);
  ASSERT_TRUE(held.ok()) << held.status();
  EXPECT_EQ(CopySqliteToPostgres(sqlite_path_, url_).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace parley::service
