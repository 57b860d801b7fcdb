#include "service/sqlite_status.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::service {
namespace {

using ::testing::HasSubstr;

TEST(SqliteStatusTest, AFullDiskIsRetryableAndMarked) {
  absl::Status full = SqliteStatus(nullptr, SQLITE_FULL, "COMMIT");
  EXPECT_TRUE(absl::IsUnavailable(full));
  EXPECT_TRUE(IsDiskFull(full));
  EXPECT_THAT(full.message(), HasSubstr("disk is full"));
  EXPECT_THAT(full.message(), HasSubstr("in: COMMIT"));
}

TEST(SqliteStatusTest, EachResultHasItsCode) {
  EXPECT_TRUE(absl::IsDataLoss(SqliteStatus(nullptr, SQLITE_CORRUPT, "x")));
  EXPECT_TRUE(absl::IsDataLoss(SqliteStatus(nullptr, SQLITE_NOTADB, "x")));
  for (int rc : {SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_CANTOPEN}) {
    absl::Status status = SqliteStatus(nullptr, rc, "x");
    EXPECT_TRUE(absl::IsUnavailable(status)) << status;
    EXPECT_FALSE(IsDiskFull(status));
  }
  EXPECT_TRUE(absl::IsInternal(SqliteStatus(nullptr, SQLITE_ERROR, "x")));
}

TEST(SqliteStatusTest, MarkDiskFullMarksAnotherStatus) {
  absl::Status status = absl::UnavailableError("the transaction failed");
  EXPECT_FALSE(IsDiskFull(status));
  MarkDiskFull(status);
  EXPECT_TRUE(IsDiskFull(status));
}

}  // namespace
}  // namespace parley::service
