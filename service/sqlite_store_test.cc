// SqliteStore specifics: group commit, durability across reopen, gapless
// sequences and commit-order callbacks under concurrent writers.
#include "service/sqlite_store.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/wal_write_vfs.h"

namespace parley::service {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::string TempDbPath() {
  std::string pattern = ::testing::TempDir() + "/sqlite_store_test.XXXXXX";
  EXPECT_NE(mkdtemp(pattern.data()), nullptr);
  return pattern + "/parley.db";
}

AppendRequest Direct(const std::string& from, const std::string& to,
                     const std::string& client_msg_id) {
  AppendRequest r;
  r.sender = from;
  r.to = to;
  r.client_msg_id = client_msg_id;
  r.text = "text of " + client_msg_id;
  r.sent_at = absl::FromUnixSeconds(1000);
  r.conversation = "d:" + std::min(from, to) + ":" + std::max(from, to);
  return r;
}

// `rounds` times: 40 appends from a to b (client ids prefixed by `tag`),
// then a Flush, so each round commits before the next one starts.
void AppendRounds(SqliteStore& store, const std::string& tag, int rounds) {
  for (int round = 0; round < rounds; ++round) {
    for (int i = 0; i < 40; ++i) {
      store.Append(Direct("a", "b", absl::StrCat(tag, round, ".", i)),
                   [](absl::StatusOr<AppendResult> r) { ASSERT_TRUE(r.ok()); });
    }
    store.Flush();
  }
}

std::unique_ptr<SqliteStore> OpenOrDie(SqliteStoreOptions options) {
  auto store = SqliteStore::Open(std::move(options));
  EXPECT_TRUE(store.ok()) << store.status();
  return std::move(store).value();
}

TEST(SqliteStoreTest, RejectsUnknownSynchronousMode) {
  SqliteStoreOptions options;
  options.path = TempDbPath();
  options.synchronous = "SOMETIMES";
  EXPECT_EQ(SqliteStore::Open(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SqliteStoreTest, ConcurrentAppendsShareTransactions) {
  SqliteStoreOptions options;
  options.path = TempDbPath();
  absl::Mutex mu;
  std::vector<size_t> batch_sizes;
  options.on_commit = [&](size_t n, absl::Duration) {
    absl::MutexLock lock(&mu);
    batch_sizes.push_back(n);
  };
  auto store = OpenOrDie(options);
  ASSERT_TRUE(store->CreateUser({"a", "", absl::Now()}).ok());
  ASSERT_TRUE(store->CreateUser({"b", "", absl::Now()}).ok());
  const uint64_t before = store->transactions();

  constexpr int kAppends = 500;
  std::atomic<int> ok{0};
  for (int i = 0; i < kAppends; ++i) {
    store->Append(Direct("a", "b", "c" + std::to_string(i)),
                  [&](absl::StatusOr<AppendResult> r) {
                    if (r.ok()) ok.fetch_add(1);
                  });
  }
  store->Flush();
  EXPECT_EQ(ok.load(), kAppends);
  // Appends queued while a commit runs go into the next one: far fewer
  // transactions (and fsyncs) than appends.
  const uint64_t transactions = store->transactions() - before;
  EXPECT_LT(transactions, static_cast<uint64_t>(kAppends / 5));
  absl::MutexLock lock(&mu);
  size_t largest = 0;
  for (size_t n : batch_sizes) largest = std::max(largest, n);
  EXPECT_GT(largest, 10u);
}

TEST(SqliteStoreTest, FailingOperationRollsBackAloneInItsBatch) {
  SqliteStoreOptions options;
  options.path = TempDbPath();
  auto store = OpenOrDie(options);
  ASSERT_TRUE(store->CreateUser({"a", "", absl::Now()}).ok());
  ASSERT_TRUE(store->CreateUser({"b", "", absl::Now()}).ok());
  std::vector<absl::StatusCode> codes(3);
  store->Append(Direct("a", "b", "1"), [&](absl::StatusOr<AppendResult> r) {
    codes[0] = r.status().code();
  });
  store->Append(Direct("a", "ghost", "2"), [&](absl::StatusOr<AppendResult> r) {
    codes[1] = r.status().code();
  });
  store->Append(Direct("b", "a", "3"), [&](absl::StatusOr<AppendResult> r) {
    codes[2] = r.status().code();
  });
  store->Flush();
  EXPECT_EQ(codes[0], absl::StatusCode::kOk);
  EXPECT_EQ(codes[1], absl::StatusCode::kNotFound);
  EXPECT_EQ(codes[2], absl::StatusCode::kOk);
  EXPECT_EQ(*store->InboxHead("a"), 2u);
  EXPECT_EQ(*store->ConversationHead("d:a:b"), 2u);
  EXPECT_EQ(*store->ConversationHead("d:a:ghost"), 0u);
}

// A batch runs first without savepoints; an operation that fails after it
// wrote (AddMembers past the size limit inserts the members, then counts
// them) makes the store run the batch again with a savepoint per operation.
// Its neighbours in the batch must commit, and its own writes must not.
TEST(SqliteStoreTest, OperationFailingAfterItWroteRollsBackAloneInItsBatch) {
  SqliteStoreOptions options;
  options.path = TempDbPath();
  absl::Notification writer_held, release;
  std::atomic<bool> hold{false};
  options.on_commit = [&](size_t, absl::Duration) {
    if (hold.exchange(false)) {
      writer_held.Notify();
      release.WaitForNotification();
    }
  };
  auto store = OpenOrDie(options);
  for (const char* u : {"a", "b", "c"}) {
    ASSERT_TRUE(store->CreateUser({u, "", absl::Now()}).ok());
  }
  ASSERT_TRUE(store->CreateGroup({"g", "", {"a", "b"}, absl::Now()}, 2).ok());

  // Park the writer after one commit so that the next three operations
  // queue up and go into one batch.
  hold = true;
  store->Append(Direct("a", "b", "0"), [](absl::StatusOr<AppendResult>) {});
  writer_held.WaitForNotification();
  std::vector<absl::StatusCode> codes(2);
  store->Append(Direct("a", "b", "1"), [&](absl::StatusOr<AppendResult> r) {
    codes[0] = r.status().code();
  });
  absl::Status add;
  std::thread adder([&] { add = store->AddMembers("g", {"c"}, 2).status(); });
  while (store->queued_writes() < 2) std::this_thread::yield();
  store->Append(Direct("b", "a", "2"), [&](absl::StatusOr<AppendResult> r) {
    codes[1] = r.status().code();
  });
  ASSERT_EQ(store->queued_writes(), 3u);
  const uint64_t before = store->transactions();
  release.Notify();
  adder.join();
  store->Flush();

  EXPECT_EQ(store->transactions() - before, 2u);  // Batch "0", then all three.
  EXPECT_EQ(add.code(), absl::StatusCode::kResourceExhausted) << add;
  EXPECT_EQ(codes[0], absl::StatusCode::kOk);
  EXPECT_EQ(codes[1], absl::StatusCode::kOk);
  EXPECT_THAT(store->GetGroup("g")->members, ::testing::ElementsAre("a", "b"));
  EXPECT_EQ(*store->ConversationHead("d:a:b"), 3u);
  EXPECT_EQ(*store->InboxHead("a"), 3u);
}

// Checkpoints run on the checkpointer's own thread, and the WAL stays
// bounded while the writer keeps committing.
TEST(SqliteStoreTest, CheckpointerKeepsTheWalBounded) {
  SqliteStoreOptions options;
  options.path = TempDbPath();
  options.checkpoint_frames = 16;
  auto store = OpenOrDie(options);
  ASSERT_TRUE(store->CreateUser({"a", "", absl::Now()}).ok());
  ASSERT_TRUE(store->CreateUser({"b", "", absl::Now()}).ok());
  AppendRounds(*store, "", 50);
  EXPECT_GT(store->checkpoints(), 0u);
  // Without checkpoints the WAL would hold every page written: 2,000
  // messages' worth. Bounded: a few times the threshold plus one batch.
  struct stat wal;
  ASSERT_EQ(stat((options.path + "-wal").c_str(), &wal), 0);
  EXPECT_LT(wal.st_size, 200 * 4096);
  EXPECT_EQ(*store->ConversationHead("d:a:b"), 2000u);
}

// A reader that holds an old snapshot keeps checkpoints from copying the
// whole WAL: the checkpointer waits for the next interval instead of trying
// again at once (it spun while the read lasted), the WAL grows past four
// intervals and the writer checkpoints between transactions. Both kinds are
// reported. Once the reader lets go, the WAL starts over.
TEST(SqliteStoreTest, ReaderHoldingTheWalBackDoesNotSpinTheCheckpointer) {
  absl::Mutex mu;
  std::map<CheckpointBy, int> seen;
  SqliteStoreOptions options;
  options.path = TempDbPath();
  options.checkpoint_frames = 16;
  options.on_checkpoint = [&](CheckpointBy by, absl::Duration took) {
    EXPECT_GE(took, absl::ZeroDuration());
    absl::MutexLock lock(&mu);
    ++seen[by];
  };
  auto store = OpenOrDie(options);
  ASSERT_TRUE(store->CreateUser({"a", "", absl::Now()}).ok());
  ASSERT_TRUE(store->CreateUser({"b", "", absl::Now()}).ok());
  auto count = [&](CheckpointBy by) {
    absl::MutexLock lock(&mu);
    return seen[by];
  };

  sqlite3* reader = nullptr;
  ASSERT_EQ(sqlite3_open(options.path.c_str(), &reader), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(reader, "BEGIN; SELECT count(*) FROM users;", nullptr,
                         nullptr, nullptr),
            SQLITE_OK);
  const uint64_t transactions_before = store->transactions();
  const int passes_before = count(CheckpointBy::kCheckpointer);
  AppendRounds(*store, "pinned", 30);
  EXPECT_GT(count(CheckpointBy::kWriter), 0);
  // At most one pass per interval written; spinning made thousands.
  EXPECT_LE(count(CheckpointBy::kCheckpointer) - passes_before,
            static_cast<int>(store->transactions() - transactions_before));
  struct stat wal;
  ASSERT_EQ(stat((options.path + "-wal").c_str(), &wal), 0);
  const off_t pinned_size = wal.st_size;
  EXPECT_GT(pinned_size, 4 * 16 * 4096);

  ASSERT_EQ(sqlite3_exec(reader, "COMMIT", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(reader);
  AppendRounds(*store, "free", 30);
  ASSERT_EQ(stat((options.path + "-wal").c_str(), &wal), 0);
  // Started over: the file keeps its length, but no longer grows.
  EXPECT_EQ(wal.st_size, pinned_size);
  EXPECT_EQ(*store->ConversationHead("d:a:b"), 2400u);
  EXPECT_GT(count(CheckpointBy::kCheckpointer), 0);
}

TEST(SqliteStoreTest, GaplessAndCommitOrderedUnderConcurrentWriters) {
  SqliteStoreOptions options;
  options.path = TempDbPath();
  auto store = OpenOrDie(options);
  const std::vector<std::string> users = {"u0", "u1", "u2", "u3"};
  for (const auto& u : users) {
    ASSERT_TRUE(store->CreateUser({u, "", absl::Now()}).ok());
  }
  ASSERT_TRUE(store->CreateGroup({"g", "", users, absl::Now()}, 10).ok());

  // Callbacks run one at a time in commit order, so every user's inbox_seqs
  // must arrive here as 1, 2, 3, ... and every conversation's seqs too.
  absl::Mutex mu;
  std::map<std::string, uint64_t> last_inbox;
  std::map<std::string, uint64_t> last_seq;
  std::atomic<int> out_of_order{0};
  constexpr int kThreads = 8;
  constexpr int kPerThread = 100;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        AppendRequest r;
        const std::string& from = users[(t + i) % users.size()];
        if (i % 3 == 0) {
          r.sender = from;
          r.to = "g";
          r.to_group = true;
          r.conversation = "g:g";
        } else {
          r = Direct(from, users[(t + i + 1) % users.size()], "");
        }
        r.client_msg_id = absl::StrCat("t", t, "-", i);
        r.text = "x";
        store->Append(r, [&](absl::StatusOr<AppendResult> result) {
          ASSERT_TRUE(result.ok()) << result.status();
          absl::MutexLock lock(&mu);
          uint64_t& seq = last_seq[result->message.conversation];
          if (result->message.seq != seq + 1) out_of_order.fetch_add(1);
          seq = result->message.seq;
          for (const InboxEntry& e : result->recipients) {
            uint64_t& inbox = last_inbox[e.user];
            if (e.inbox_seq != inbox + 1) out_of_order.fetch_add(1);
            inbox = e.inbox_seq;
          }
        });
      }
    });
  }
  for (auto& th : threads) th.join();
  store->Flush();
  EXPECT_EQ(out_of_order.load(), 0);
  for (const auto& u : users) {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(*store->InboxHead(u), last_inbox[u]);
    auto inbox = store->ReadInbox(u, 0, 0, 100000);
    ASSERT_TRUE(inbox.ok());
    ASSERT_EQ(inbox->size(), last_inbox[u]);
    for (size_t i = 0; i < inbox->size(); ++i) {
      EXPECT_EQ((*inbox)[i].inbox_seq, i + 1);
    }
  }
  EXPECT_EQ(store->Stats()->messages,
            static_cast<uint64_t>(kThreads * kPerThread));
}

TEST(SqliteStoreTest, CommittedDataSurvivesReopen) {
  SqliteStoreOptions options;
  options.path = TempDbPath();
  std::string message_id;
  {
    auto store = OpenOrDie(options);
    ASSERT_TRUE(store->CreateUser({"a", "Ann", absl::FromUnixSeconds(7)}).ok());
    ASSERT_TRUE(store->CreateUser({"b", "", absl::Now()}).ok());
    absl::Notification done;
    store->Append(Direct("a", "b", "k"), [&](absl::StatusOr<AppendResult> r) {
      ASSERT_TRUE(r.ok());
      message_id = r->message.message_id;
      done.Notify();
    });
    done.WaitForNotification();
  }
  auto store = OpenOrDie(options);
  EXPECT_EQ(store->GetUser("a")->display_name, "Ann");
  EXPECT_EQ(store->GetUser("a")->created_at, absl::FromUnixSeconds(7));
  auto inbox = store->ReadInbox("b", 0, 0, 10);
  ASSERT_TRUE(inbox.ok());
  ASSERT_EQ(inbox->size(), 1u);
  EXPECT_EQ((*inbox)[0].message.message_id, message_id);
  EXPECT_EQ((*inbox)[0].message.text, "text of k");
  // Idempotency keys survive too.
  absl::Notification again;
  store->Append(Direct("a", "b", "k"), [&](absl::StatusOr<AppendResult> r) {
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->duplicate);
    EXPECT_EQ(r->message.message_id, message_id);
    again.Notify();
  });
  again.WaitForNotification();
}

// The schema parley-service wrote before edit and delete (its messages
// table without kind, target_seq, edited_us, deleted) and group roles (its
// members without role, messages without group_event), as a database file
// of that release holds it.
constexpr const char* kSchemaBeforeEdits = R"sql(
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
  UNIQUE(conversation, seq)
);
CREATE TABLE IF NOT EXISTS inbox(
  user_id TEXT NOT NULL,
  inbox_seq INTEGER NOT NULL,
  message_id INTEGER NOT NULL,
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
INSERT INTO users VALUES ('a', 'Ann', 7), ('b', '', 8);
INSERT INTO conversations VALUES ('d:a:b', 'a', 'b');
INSERT INTO messages(id, conversation, seq, sender, to_group, to_id, text,
  sent_us, client_msg_id) VALUES (1, 'd:a:b', 1, 'a', 0, 'b', 'old text',
  1000000000, 'k1'), (2, 'd:a:b', 2, 'b', 0, 'a', 'reply', 1000000001, 'k2');
INSERT INTO inbox VALUES ('a', 1, 1), ('b', 1, 1), ('a', 2, 2), ('b', 2, 2);
INSERT INTO sent VALUES ('a', 'k1', 1, 1), ('b', 'k2', 2, 2);
INSERT INTO meta VALUES ('generation', '00000000000000aa');
INSERT INTO chat_groups VALUES ('team', 'Team', 9);
INSERT INTO members VALUES ('team', 'a'), ('team', 'b');
INSERT INTO conversations VALUES ('g:team', NULL, NULL);
)sql";

TEST(SqliteStoreTest, ADatabaseFromBeforeEditsGainsTheColumnsAndKeepsItsData) {
  SqliteStoreOptions options;
  options.path = TempDbPath();
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(options.path.c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    ASSERT_EQ(sqlite3_exec(db, kSchemaBeforeEdits, nullptr, nullptr, &err),
              SQLITE_OK)
        << err;
    sqlite3_close(db);
  }
  for (int open = 0; open < 2; ++open) {  // Migrates once, then opens as is.
    SCOPED_TRACE(open);
    auto store = OpenOrDie(options);
    EXPECT_EQ(store->Generation(), "00000000000000aa");
    auto inbox = store->ReadInbox("b", 0, 0, 10);
    ASSERT_TRUE(inbox.ok()) << inbox.status();
    ASSERT_EQ(inbox->size(), open == 0 ? 2u : 4u);
    const StoredMessage& first = (*inbox)[0].message;
    EXPECT_EQ(first.message_id, "1");
    EXPECT_EQ(first.kind, MessageKind::kText);
    EXPECT_EQ(first.target_seq, 0u);
    EXPECT_FALSE(first.deleted);
    auto team = store->GetGroup("team");
    ASSERT_TRUE(team.ok()) << team.status();
    EXPECT_THAT(team->members, ElementsAre("a", "b"));
    if (open == 0) {
      EXPECT_THAT(team->roles, IsEmpty());  // Old members are plain ones.
      // An operator makes "a" its owner: a group event with its change.
      AppendRequest owner;
      owner.to = "team";
      owner.to_group = true;
      owner.conversation = "g:team";
      owner.client_msg_id = "o1";
      owner.kind = MessageKind::kGroupEvent;
      owner.group_event.type = GroupEventType::kRoleChanged;
      owner.group_event.users = {"a"};
      owner.group_event.role = GroupRole::kOwner;
      absl::Notification owned;
      store->Append(owner, [&](absl::StatusOr<AppendResult> r) {
        EXPECT_TRUE(r.ok()) << r.status();
        owned.Notify();
      });
      owned.WaitForNotification();
    } else {
      EXPECT_EQ(team->roles.at("a"), GroupRole::kOwner);
      auto events = store->ReadHistory("g:team", 0, 10);
      ASSERT_TRUE(events.ok()) << events.status();
      ASSERT_EQ(events->messages.size(), 1u);
      EXPECT_EQ(events->messages[0].group_event.type,
                GroupEventType::kRoleChanged);
      EXPECT_THAT(events->messages[0].group_event.users, ElementsAre("a"));
    }
    if (open == 0) {
      EXPECT_EQ(first.text, "old text");
      EXPECT_EQ(first.edited_at, absl::InfinitePast());
      // An old message can be edited; numbering continues after the rows.
      AppendRequest edit = Direct("a", "b", "e1");
      edit.kind = MessageKind::kEdit;
      edit.target_seq = 1;
      edit.text = "new text";
      absl::Notification done;
      store->Append(edit, [&](absl::StatusOr<AppendResult> r) {
        ASSERT_TRUE(r.ok()) << r.status();
        EXPECT_EQ(r->message.seq, 3u);
        EXPECT_EQ(r->sender_inbox_seq, 4u);  // After the group event.
        done.Notify();
      });
      done.WaitForNotification();
    } else {
      EXPECT_EQ(first.text, "new text");
      EXPECT_EQ(first.edited_at, absl::FromUnixSeconds(1000));
      EXPECT_EQ(*store->InboxHead("b"), 4u);
    }
  }
}

TEST(SqliteStoreTest, DatabaseFromBeforeBlocksOpensKeepsItsDataAndBlocks) {
  SqliteStoreOptions options;
  options.path = TempDbPath();
  {
    auto store = OpenOrDie(options);
    ASSERT_TRUE(store->CreateUser({"a", "", absl::Now()}).ok());
    ASSERT_TRUE(store->CreateUser({"b", "", absl::Now()}).ok());
    store->Append(Direct("a", "b", "k"),
                  [](absl::StatusOr<AppendResult> r) { ASSERT_TRUE(r.ok()); });
    store->Flush();
  }
  {
    // What binaries from before blocking made: no blocks table.
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(options.path.c_str(), &db), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db, "DROP TABLE blocks", nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  auto store = OpenOrDie(options);
  EXPECT_EQ(*store->InboxHead("b"), 1u);
  EXPECT_TRUE(*store->SetBlocked("b", "a", true, 10));
  absl::Notification refused;
  store->Append(Direct("a", "b", "k2"), [&](absl::StatusOr<AppendResult> r) {
    EXPECT_TRUE(IsBlockedError(r.status())) << r.status();
    refused.Notify();
  });
  refused.WaitForNotification();
}

TEST(SqliteStoreTest, TheGenerationIsCreatedWithTheDatabaseAndKept) {
  SqliteStoreOptions options;
  options.path = TempDbPath();
  std::string generation;
  {
    auto store = OpenOrDie(options);
    generation = store->Generation();
  }
  EXPECT_THAT(generation, ::testing::MatchesRegex("[0-9a-f]{16}"));
  EXPECT_EQ(OpenOrDie(options)->Generation(), generation);
  SqliteStoreOptions other;
  other.path = TempDbPath();
  EXPECT_NE(OpenOrDie(other)->Generation(), generation);
}

// Large group messages dirty ~one inbox page per member per commit: many
// WAL frames per commit, rewritten frames when a page changes twice, and
// checkpoints and WAL restarts in between.
TEST(SqliteStoreTest, LargeGroupCommitsAreReadBackAfterReopen) {
  SqliteStoreOptions options;
  options.path = TempDbPath();
  options.checkpoint_frames = 500;
  constexpr int kMembers = 1000;
  constexpr int kMessages = 60;
  WalWriteStats before;
  {
    auto store = OpenOrDie(options);
    GroupRecord group{"g", "", {}, absl::Now()};
    for (int i = 0; i < kMembers; ++i) {
      const std::string id = absl::StrCat("u", i);
      ASSERT_TRUE(store->CreateUser({id, "", absl::Now()}).ok());
      group.members.push_back(id);
    }
    ASSERT_TRUE(store->CreateGroup(group, kMembers).ok());
    before = GetWalWriteStats();
    std::atomic<int> ok{0};
    for (int i = 0; i < kMessages; ++i) {
      AppendRequest r;
      r.sender = absl::StrCat("u", i);
      r.client_msg_id = absl::StrCat("m", i);
      r.conversation = "g:g";
      r.to_group = true;
      r.to = "g";
      r.text = std::string(100 + i, 'x');
      r.sent_at = absl::Now();
      store->Append(r, [&](absl::StatusOr<AppendResult> result) {
        EXPECT_TRUE(result.ok()) << result.status();
        if (result.ok()) ok.fetch_add(1);
      });
    }
    store->Flush();
    ASSERT_EQ(ok.load(), kMessages);
    EXPECT_GT(store->checkpoints(), 0u);
  }
  const WalWriteStats after = GetWalWriteStats();
  // Two calls per frame from SQLite, far fewer reach the file (a frame is
  // 4 KiB and 24 bytes; a gathered write up to 64 KiB).
  EXPECT_GT(after.writes_requested - before.writes_requested,
            10 * (after.writes_issued - before.writes_issued));

  auto store = OpenOrDie(options);
  for (const char* user : {"u0", "u499", "u999"}) {
    auto inbox = store->ReadInbox(user, 0, 0, 1000);
    ASSERT_TRUE(inbox.ok()) << inbox.status();
    ASSERT_EQ(inbox->size(), static_cast<size_t>(kMessages)) << user;
    for (int i = 0; i < kMessages; ++i) {
      EXPECT_EQ((*inbox)[i].inbox_seq, static_cast<uint64_t>(i + 1));
      EXPECT_EQ((*inbox)[i].message.text, std::string(100 + i, 'x'));
    }
  }
}

TEST(SqliteStoreTest, WritesBeyondTheQueueLimitFailFastAsUnavailable) {
  SqliteStoreOptions options;
  options.path = TempDbPath();
  options.max_queued = 1;
  // Hold the writer in its commit hook so that writes pile up.
  absl::Notification in_commit, release;
  std::atomic<bool> hold{false};
  options.on_commit = [&](size_t, absl::Duration) {
    if (!hold.exchange(false)) return;
    in_commit.Notify();
    release.WaitForNotification();
  };
  auto store = OpenOrDie(options);
  ASSERT_TRUE(store->CreateUser({"a", "", absl::Now()}).ok());
  ASSERT_TRUE(store->CreateUser({"b", "", absl::Now()}).ok());
  hold.store(true);
  store->Append(Direct("a", "b", "1"), [](absl::StatusOr<AppendResult>) {});
  in_commit.WaitForNotification();
  absl::StatusCode queued = absl::StatusCode::kUnknown;
  store->Append(Direct("a", "b", "2"), [&](absl::StatusOr<AppendResult> r) {
    queued = r.status().code();
  });
  absl::StatusOr<AppendResult> refused;
  store->Append(Direct("a", "b", "3"),
                [&](absl::StatusOr<AppendResult> r) { refused = r; });
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(refused.status().message()),
              ::testing::HasSubstr("overloaded"));
  release.Notify();
  store->Flush();
  EXPECT_EQ(queued, absl::StatusCode::kOk);
  EXPECT_EQ(*store->InboxHead("b"), 2u);
}

TEST(SqliteStoreTest, CallbacksDoNotHoldUpTheNextCommit) {
  SqliteStoreOptions options;
  options.path = TempDbPath();
  std::atomic<int> commits{0};
  absl::Notification second_append_committed;
  options.on_commit = [&](size_t, absl::Duration) {
    // Two CreateUser commits, then the two appends.
    if (commits.fetch_add(1) + 1 == 4) second_append_committed.Notify();
  };
  auto store = OpenOrDie(options);
  ASSERT_TRUE(store->CreateUser({"a", "", absl::Now()}).ok());
  ASSERT_TRUE(store->CreateUser({"b", "", absl::Now()}).ok());
  absl::Notification in_callback, release;
  store->Append(Direct("a", "b", "1"), [&](absl::StatusOr<AppendResult>) {
    in_callback.Notify();
    release.WaitForNotification();
  });
  in_callback.WaitForNotification();
  // While the first callback runs, the next write commits; its callback
  // waits behind the first one (commit order).
  std::atomic<bool> second_called{false};
  store->Append(Direct("a", "b", "2"),
                [&](absl::StatusOr<AppendResult>) { second_called = true; });
  EXPECT_TRUE(second_append_committed.WaitForNotificationWithTimeout(
      absl::Seconds(10)));
  EXPECT_EQ(*store->InboxHead("b"), 2u);
  EXPECT_FALSE(second_called.load());
  release.Notify();
  store->Flush();
  EXPECT_TRUE(second_called.load());
}

TEST(SqliteStoreTest, DestructionCommitsQueuedWrites) {
  SqliteStoreOptions options;
  options.path = TempDbPath();
  std::atomic<int> acked{0};
  {
    auto store = OpenOrDie(options);
    ASSERT_TRUE(store->CreateUser({"a", "", absl::Now()}).ok());
    ASSERT_TRUE(store->CreateUser({"b", "", absl::Now()}).ok());
    for (int i = 0; i < 50; ++i) {
      store->Append(Direct("a", "b", std::to_string(i)),
                    [&](absl::StatusOr<AppendResult> r) {
                      if (r.ok()) acked.fetch_add(1);
                    });
    }
  }
  EXPECT_EQ(acked.load(), 50);
  auto store = OpenOrDie(options);
  EXPECT_EQ(*store->InboxHead("b"), 50u);
}

// A disk that fills up: the default VFS, registered again as the default
// (so that a store opened with gather_wal_writes=false uses it), except that
// a WAL file cannot grow past `limit` bytes (-1: no limit).
class FullWalVfs {
 public:
  static std::atomic<int64_t> limit;

  static void Install() {
    static std::once_flag once;
    std::call_once(once, [] {
      real_ = sqlite3_vfs_find(nullptr);
      vfs_ = *real_;
      vfs_.zName = "full-wal-test";
      vfs_.xOpen = Open;
      ASSERT_EQ(sqlite3_vfs_register(&vfs_, /*makeDflt=*/1), SQLITE_OK);
    });
  }

 private:
  // The real file with its methods, but for xWrite on WAL files.
  static int Open(sqlite3_vfs*, const char* name, sqlite3_file* file, int flags,
                  int* out_flags) {
    const int rc = real_->xOpen(real_, name, file, flags, out_flags);
    if (rc != SQLITE_OK || (flags & SQLITE_OPEN_WAL) == 0) return rc;
    static std::once_flag once;
    std::call_once(once, [file] {
      real_wal_ = file->pMethods;
      wal_ = *file->pMethods;
      wal_.xWrite = Write;
    });
    if (file->pMethods == real_wal_) file->pMethods = &wal_;
    return rc;
  }
  static int Write(sqlite3_file* f, const void* data, int n,
                   sqlite3_int64 offset) {
    const int64_t max = limit.load();
    if (max >= 0 && offset + n > max) return SQLITE_FULL;
    return real_wal_->xWrite(f, data, n, offset);
  }

  static sqlite3_vfs* real_;
  static sqlite3_vfs vfs_;
  static const sqlite3_io_methods* real_wal_;
  static sqlite3_io_methods wal_;
};
std::atomic<int64_t> FullWalVfs::limit{-1};
sqlite3_vfs* FullWalVfs::real_ = nullptr;
sqlite3_vfs FullWalVfs::vfs_;
const sqlite3_io_methods* FullWalVfs::real_wal_ = nullptr;
sqlite3_io_methods FullWalVfs::wal_;

// The disk fills up in the middle of a batch's second run (one savepoint per
// operation: the first operation's NOT_FOUND made it): a large message
// spills the page cache into the WAL, which cannot grow, and SQLite rolls
// the whole transaction back. The operation after it must not run outside
// the transaction, committed on its own while reported as failed (its
// recipients would never be sent it); every operation fails, as retryable,
// saying the disk is full; and once there is room again writes succeed.
TEST(SqliteStoreTest, TransactionLostToAFullDiskCommitsNothingOutsideIt) {
  FullWalVfs::Install();
  SqliteStoreOptions options;
  options.path = TempDbPath();
  options.gather_wal_writes = false;  // So it opens with the default VFS.
  options.cache_kib = 1;              // A large message spills mid-transaction.
  absl::Notification writer_held, release;
  std::atomic<bool> hold{false};
  options.on_commit = [&](size_t, absl::Duration) {
    if (hold.exchange(false)) {
      writer_held.Notify();
      release.WaitForNotification();
    }
  };
  auto store = OpenOrDie(options);
  for (const char* u : {"a", "b", "c"}) {
    ASSERT_TRUE(store->CreateUser({u, "", absl::Now()}).ok());
  }
  hold = true;
  store->Append(Direct("a", "b", "0"), [](absl::StatusOr<AppendResult>) {});
  writer_held.WaitForNotification();
  struct stat wal;
  ASSERT_EQ(stat((options.path + "-wal").c_str(), &wal), 0);
  // Room for a small transaction, not for a message of 400 KiB.
  FullWalVfs::limit = wal.st_size + 64 * 1024;

  std::vector<absl::Status> statuses(3);
  store->Append(Direct("a", "ghost", "1"), [&](absl::StatusOr<AppendResult> r) {
    statuses[0] = r.status();
  });
  AppendRequest big = Direct("c", "a", "2");
  big.text.assign(400 * 1024, 'x');
  store->Append(
      big, [&](absl::StatusOr<AppendResult> r) { statuses[1] = r.status(); });
  store->Append(Direct("b", "a", "3"), [&](absl::StatusOr<AppendResult> r) {
    statuses[2] = r.status();
  });
  release.Notify();
  store->Flush();
  FullWalVfs::limit = -1;

  EXPECT_EQ(*store->ConversationHead("d:a:b"), 1u);  // Only "0".
  EXPECT_EQ(*store->ConversationHead("d:a:c"), 0u);
  for (const absl::Status& s : statuses) {
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("disk is full"));
  }
  // Room again: the same writes succeed, with gapless sequences.
  absl::StatusOr<AppendResult> again;
  store->Append(Direct("b", "a", "3"),
                [&](absl::StatusOr<AppendResult> r) { again = r; });
  store->Flush();
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->message.seq, 2u);
  EXPECT_EQ(again->sender_inbox_seq, 2u);
  EXPECT_EQ(*store->InboxHead("a"), 2u);
}

}  // namespace
}  // namespace parley::service
