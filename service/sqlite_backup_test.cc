// SqliteBackup and RestoreSqliteBackup against a real SqliteStore: the copy
// is checked and complete, what cannot be backed up is refused loudly, and a
// restore puts exactly the backup's data in place under a new generation.
#include "service/sqlite_backup.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/data_dir_lock.h"
#include "service/sqlite_store.h"

namespace parley::service {
namespace {

using ::testing::HasSubstr;

std::string TempDir() {
  std::string dir = ::testing::TempDir() + "/sqlite_backup_test.XXXXXX";
  EXPECT_NE(mkdtemp(dir.data()), nullptr);
  return dir;
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

std::string Contents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

// A SqliteStore in a directory of its own.
class StoreFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir();
    db_ = dir_ + "/parley.db";
    backups_ = TempDir();
    Open();
  }

  void Open() {
    SqliteStoreOptions options;
    options.path = db_;
    // No checkpoint: the WAL keeps every commit (see the crash test).
    options.checkpoint_frames = 1 << 20;
    auto store = SqliteStore::Open(options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(store).value();
  }

  // alice and bob, the group "team" of both, and `messages` direct messages.
  void Populate(int messages) {
    ASSERT_TRUE(store_->CreateUser({"alice", "Alice", absl::Now()}).ok());
    ASSERT_TRUE(store_->CreateUser({"bob", "Bob", absl::Now()}).ok());
    GroupRecord team;
    team.id = "team";
    team.members = {"alice", "bob"};
    team.created_at = absl::Now();
    ASSERT_TRUE(store_->CreateGroup(team, 10).ok());
    Send(messages, "m");
  }

  void Send(int messages, const std::string& tag) {
    for (int i = 0; i < messages; ++i) {
      AppendRequest r;
      r.sender = "alice";
      r.to = "bob";
      r.conversation = "d:alice:bob";
      r.client_msg_id = tag + std::to_string(i);
      r.text = "hello " + r.client_msg_id;
      r.sent_at = absl::Now();
      store_->Append(r, [](absl::StatusOr<AppendResult> result) {
        ASSERT_TRUE(result.ok()) << result.status();
      });
    }
    store_->Flush();
  }

  uint64_t StoredMessages() {
    absl::StatusOr<StoreStats> stats = store_->Stats();
    EXPECT_TRUE(stats.ok()) << stats.status();
    return stats.ok() ? stats->messages : 0;
  }

  std::string dir_;
  std::string db_;
  std::string backups_;
  std::unique_ptr<SqliteStore> store_;
};

using SqliteBackupTest = StoreFixture;

TEST_F(SqliteBackupTest, CopyOfTheLiveStoreIsCheckedAndComplete) {
  Populate(5);
  SqliteBackup backup(db_, store_->Generation());
  const std::string path = backups_ + "/a.db";

  absl::StatusOr<BackupSummary> copy = backup.Write(path);
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ(copy->path, path);
  EXPECT_EQ(copy->users, 2u);
  EXPECT_EQ(copy->groups, 1u);
  EXPECT_EQ(copy->messages, 5u);
  EXPECT_EQ(copy->last_message_id, 5u);
  EXPECT_EQ(copy->generation, store_->Generation());
  EXPECT_EQ(copy->size_bytes, std::filesystem::file_size(path));

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr),
            SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM messages", -1, &stmt,
                               nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt, 0), 5);
  sqlite3_finalize(stmt);
  sqlite3_close(db);

  // The live store goes on.
  Send(1, "after");
  EXPECT_EQ(StoredMessages(), 6u);
}

TEST_F(SqliteBackupTest, EmptyStoreIsRefusedAndLeavesNoFile) {
  SqliteBackup backup(db_, store_->Generation());
  const std::string path = backups_ + "/empty.db";
  absl::StatusOr<BackupSummary> copy = backup.Write(path);
  EXPECT_EQ(copy.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(copy.status().message()),
              HasSubstr("nothing to back up"));
  EXPECT_THAT(std::string(copy.status().message()),
              HasSubstr("is the service on the right data volume?"));
  EXPECT_FALSE(Exists(path));
}

TEST_F(SqliteBackupTest, PathsThatCannotBeANewBackupAreRefused) {
  Populate(1);
  SqliteBackup backup(db_, store_->Generation());

  EXPECT_EQ(backup.Write("relative.db").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(backup.Write("").status().code(),
            absl::StatusCode::kInvalidArgument);

  absl::StatusOr<BackupSummary> missing_dir =
      backup.Write(backups_ + "/missing/a.db");
  EXPECT_EQ(missing_dir.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(missing_dir.status().message()),
              HasSubstr(backups_ + "/missing"));

  const std::string taken = backups_ + "/taken.db";
  std::ofstream(taken) << "someone else's file";
  absl::StatusOr<BackupSummary> exists = backup.Write(taken);
  EXPECT_EQ(exists.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(exists.status().message()), HasSubstr(taken));
  EXPECT_EQ(Contents(taken), "someone else's file");
}

TEST_F(SqliteBackupTest, CopyThatFailsItsCheckIsRemoved) {
  Populate(2);
  // A copy of a store other than the one the service serves.
  SqliteBackup backup(db_, "0000000000000000");
  const std::string path = backups_ + "/a.db";
  absl::StatusOr<BackupSummary> copy = backup.Write(path);
  EXPECT_EQ(copy.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(copy.status().message()), HasSubstr("generation"));
  EXPECT_FALSE(Exists(path));
}

using RestoreTest = StoreFixture;

TEST_F(RestoreTest, RestoreKeepsTheBackupsDataUnderANewGeneration) {
  Populate(3);
  const std::string generation = store_->Generation();
  const std::string path = backups_ + "/a.db";
  ASSERT_TRUE(SqliteBackup(db_, generation).Write(path).ok());
  Send(2, "later");
  store_.reset();

  absl::StatusOr<RestoreSummary> restored = RestoreSqliteBackup(path, db_);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->restored.path, db_);
  EXPECT_EQ(restored->restored.users, 2u);
  EXPECT_EQ(restored->restored.groups, 1u);
  EXPECT_EQ(restored->restored.messages, 3u);
  EXPECT_EQ(restored->restored.last_message_id, 3u);
  EXPECT_EQ(restored->backup_generation, generation);
  ASSERT_TRUE(restored->old_generation.ok());
  EXPECT_EQ(*restored->old_generation, generation);
  EXPECT_NE(restored->restored.generation, generation);
  EXPECT_FALSE(Exists(db_ + ".restoring"));

  Open();
  EXPECT_EQ(store_->Generation(), restored->restored.generation);
  EXPECT_EQ(StoredMessages(), 3u);
  absl::StatusOr<HistoryPage> history =
      store_->ReadHistory("d:alice:bob", 0, 10);
  ASSERT_TRUE(history.ok()) << history.status();
  ASSERT_EQ(history->messages.size(), 3u);
  EXPECT_EQ(history->messages.back().client_msg_id, "m2");
  // A send acked after the backup is a new message after the restore.
  Send(1, "later");
  EXPECT_EQ(StoredMessages(), 4u);
}

TEST_F(RestoreTest, OverACrashedServicesDatabaseItsWalIsNotApplied) {
  Populate(3);
  const std::string path = backups_ + "/a.db";
  ASSERT_TRUE(SqliteBackup(db_, store_->Generation()).Write(path).ok());
  Send(4, "later");
  // What a SIGKILL leaves: the database and a WAL holding the later sends.
  const std::string crashed = TempDir();
  for (const char* suffix : {"", "-wal"}) {
    std::filesystem::copy_file(db_ + suffix, crashed + "/parley.db" + suffix);
  }
  ASSERT_GT(std::filesystem::file_size(crashed + "/parley.db-wal"), 0u);
  store_.reset();
  db_ = crashed + "/parley.db";

  absl::StatusOr<RestoreSummary> restored = RestoreSqliteBackup(path, db_);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_FALSE(Exists(db_ + "-wal"));
  Open();
  EXPECT_EQ(StoredMessages(), 3u);
}

TEST_F(RestoreTest, RestoreIsRefusedWhileTheDataDirectoryIsLocked) {
  Populate(3);
  const std::string path = backups_ + "/a.db";
  ASSERT_TRUE(SqliteBackup(db_, store_->Generation()).Write(path).ok());
  Send(2, "later");
  const std::string generation = store_->Generation();
  absl::StatusOr<std::unique_ptr<DataDirLock>> lock =
      DataDirLock::Acquire(dir_);
  ASSERT_TRUE(lock.ok()) << lock.status();

  absl::StatusOr<RestoreSummary> restored = RestoreSqliteBackup(path, db_);
  EXPECT_EQ(restored.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(restored.status().message()),
              HasSubstr("in use by another parley-service"));
  EXPECT_EQ(StoredMessages(), 5u);
  store_.reset();
  Open();
  EXPECT_EQ(store_->Generation(), generation);
  EXPECT_EQ(StoredMessages(), 5u);
}

TEST_F(RestoreTest, BackupsThatFailTheirCheckChangeNothing) {
  Populate(2);
  store_.reset();
  const std::string before = Contents(db_);

  const std::string garbage = backups_ + "/garbage.db";
  std::ofstream(garbage) << std::string(8192, 'x');
  absl::StatusOr<RestoreSummary> restored = RestoreSqliteBackup(garbage, db_);
  EXPECT_EQ(restored.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(restored.status().message()), HasSubstr("database"));

  // A database of something else.
  const std::string other = backups_ + "/other.db";
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(other.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "CREATE TABLE t(x)", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  restored = RestoreSqliteBackup(other, db_);
  EXPECT_EQ(restored.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(restored.status().message()),
              HasSubstr("not a Parley store"));

  EXPECT_EQ(RestoreSqliteBackup(backups_ + "/missing.db", db_).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(Contents(db_), before);
  EXPECT_FALSE(Exists(db_ + ".restoring"));
}

TEST_F(RestoreTest, LiveDatabaseIsNotTakenForABackup) {
  Populate(2);
  // The store is open: its WAL is beside it.
  const std::string other_dir = TempDir();
  absl::StatusOr<RestoreSummary> restored =
      RestoreSqliteBackup(db_, other_dir + "/parley.db");
  EXPECT_EQ(restored.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(restored.status().message()),
              HasSubstr("write-ahead log"));
}

TEST_F(RestoreTest, BackupFromBeforeGenerationsGetsOne) {
  Populate(2);
  const std::string path = backups_ + "/a.db";
  ASSERT_TRUE(SqliteBackup(db_, store_->Generation()).Write(path).ok());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "DROP TABLE meta", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  store_.reset();

  absl::StatusOr<RestoreSummary> restored = RestoreSqliteBackup(path, db_);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->backup_generation, "");
  EXPECT_EQ(restored->restored.generation.size(), 16u);
  Open();
  EXPECT_EQ(store_->Generation(), restored->restored.generation);
}

}  // namespace
}  // namespace parley::service
