#include "service/store_factory.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <string>

#include "absl/synchronization/notification.h"
#include "common/metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/service_metrics.h"
#include "service/store_url.h"
#include "service/testing/postgres_server.h"

namespace parley::service {
namespace {

using ::testing::HasSubstr;

std::string TempDir() {
  std::string dir = ::testing::TempDir() + "/store_factory_test.XXXXXX";
  EXPECT_NE(mkdtemp(dir.data()), nullptr);
  return dir;
}

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

class StoreFactoryTest : public ::testing::Test {
 protected:
  StoreOptions Options(const std::string& url) {
    absl::StatusOr<StoreUrl> parsed = ParseStoreUrl(url);
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    StoreOptions options;
    options.url = *parsed;
    return options;
  }

  Registry registry_;
  ServiceMetrics metrics_{registry_};
};

TEST_F(StoreFactoryTest, SqliteUrlOpensThatFileCreatingItsDirectory) {
  const std::string db = TempDir() + "/nested/dir/x.db";
  absl::StatusOr<OpenedStore> opened =
      OpenStore(Options("sqlite://" + db), metrics_);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_TRUE(Exists(db));
  ASSERT_NE(opened->store, nullptr);
  ASSERT_NE(opened->backup, nullptr);
  ASSERT_TRUE(opened->store->CreateUser({"alice", "", absl::Now()}).ok());
  EXPECT_TRUE(opened->store->GetUser("alice").ok());
}

TEST_F(StoreFactoryTest, StoreReportsCommitsToTheMetrics) {
  absl::StatusOr<OpenedStore> opened =
      OpenStore(Options("sqlite://" + TempDir() + "/p.db"), metrics_);
  ASSERT_TRUE(opened.ok()) << opened.status();
  ASSERT_TRUE(opened->store->CreateUser({"alice", "", absl::Now()}).ok());
  EXPECT_GE(metrics_.commit_batch_size.Count(), 1u);
  EXPECT_GE(metrics_.commit_seconds.Count(), 1u);
}

TEST_F(StoreFactoryTest, BackupCopiesTheOpenedStore) {
  const std::string dir = TempDir();
  absl::StatusOr<OpenedStore> opened =
      OpenStore(Options("sqlite://" + dir + "/p.db"), metrics_);
  ASSERT_TRUE(opened.ok()) << opened.status();
  ASSERT_TRUE(opened->store->CreateUser({"alice", "", absl::Now()}).ok());
  absl::StatusOr<BackupSummary> copy = opened->backup->Write(dir + "/copy.db");
  ASSERT_TRUE(copy.ok()) << copy.status();
  EXPECT_EQ(copy->users, 1u);
  EXPECT_EQ(copy->generation, opened->store->Generation());
}

TEST_F(StoreFactoryTest, SecondStoreInTheSameDirectoryIsRefusedUntilClosed) {
  const std::string dir = TempDir();
  absl::StatusOr<OpenedStore> first =
      OpenStore(Options("sqlite://" + dir + "/a.db"), metrics_);
  ASSERT_TRUE(first.ok()) << first.status();
  // Another file in the same directory: the lock is the directory's.
  absl::StatusOr<OpenedStore> second =
      OpenStore(Options("sqlite://" + dir + "/b.db"), metrics_);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(second.status().message()),
              HasSubstr("\"" + dir + "\" is in use"));
  *first = OpenedStore();
  EXPECT_TRUE(OpenStore(Options("sqlite://" + dir + "/a.db"), metrics_).ok());
}

TEST_F(StoreFactoryTest, UncreatableDirectoryIsNamed) {
  const std::string dir = TempDir();
  const std::string file = dir + "/plain-file";
  ASSERT_TRUE(
      OpenStore(Options("sqlite://" + dir + "/plain-file"), metrics_).ok());
  absl::StatusOr<OpenedStore> opened =
      OpenStore(Options("sqlite://" + file + "/x.db"), metrics_);
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(opened.status().message()),
              HasSubstr("cannot create the database's directory \"" + file));
}

TEST_F(StoreFactoryTest, PostgresUrlOpensPgStoreReportingCommits) {
  auto server = testing::PostgresServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  auto url = (*server)->CreateDatabase("factory");
  ASSERT_TRUE(url.ok()) << url.status();
  absl::StatusOr<OpenedStore> opened = OpenStore(Options(*url), metrics_);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_NE(dynamic_cast<PgStore*>(opened->store.get()), nullptr);
  EXPECT_EQ(opened->lock, nullptr);
  EXPECT_EQ(opened->backup, nullptr);
  absl::Notification done;
  opened->store->AdvanceReadCursor(
      "nobody", "d:a:b", 1, [&](absl::StatusOr<bool>) { done.Notify(); });
  done.WaitForNotification();
  EXPECT_EQ(metrics_.commit_batch_size.Count(), 1u);
  EXPECT_EQ(metrics_.commit_seconds.Count(), 1u);
}

TEST_F(StoreFactoryTest, UnreachablePostgresIsUnavailableWithoutThePassword) {
  absl::StatusOr<OpenedStore> opened = OpenStore(
      Options("postgres://parley:pw-x7@127.0.0.1:1/parley"), metrics_);
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(opened.status().message()),
              HasSubstr("cannot connect to PostgreSQL at 127.0.0.1:1"));
  EXPECT_THAT(std::string(opened.status().message()),
              ::testing::Not(HasSubstr("pw-x7")));
}

}  // namespace
}  // namespace parley::service
