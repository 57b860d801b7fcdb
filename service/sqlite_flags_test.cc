#include "service/sqlite_flags.h"

#include <cstdint>
#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

ABSL_DECLARE_FLAG(std::string, sqlite_synchronous);
ABSL_DECLARE_FLAG(uint32_t, sqlite_max_batch);
ABSL_DECLARE_FLAG(uint32_t, sqlite_checkpoint_pages);
ABSL_DECLARE_FLAG(bool, sqlite_gather_wal_writes);

namespace parley::service {
namespace {

using ::testing::HasSubstr;

class SqliteFlagsTest : public ::testing::Test {
 private:
  absl::FlagSaver saver_;
};

std::string ErrorFromFlags() {
  absl::StatusOr<SqliteStoreOptions> options = SqliteStoreOptionsFromFlags();
  EXPECT_EQ(options.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(options.status().message());
}

TEST_F(SqliteFlagsTest, DefaultsAreTheStoreDefaults) {
  absl::StatusOr<SqliteStoreOptions> options = SqliteStoreOptionsFromFlags();
  ASSERT_TRUE(options.ok()) << options.status();
  const SqliteStoreOptions defaults;
  EXPECT_EQ(options->synchronous, "FULL");
  EXPECT_EQ(options->max_batch, defaults.max_batch);
  EXPECT_EQ(options->checkpoint_frames, defaults.checkpoint_frames);
  EXPECT_TRUE(options->gather_wal_writes);
  EXPECT_EQ(options->path, "");
}

TEST_F(SqliteFlagsTest, FlagsReachTheOptions) {
  absl::SetFlag(&FLAGS_sqlite_synchronous, "normal");
  absl::SetFlag(&FLAGS_sqlite_max_batch, 7);
  absl::SetFlag(&FLAGS_sqlite_checkpoint_pages, 2);
  absl::SetFlag(&FLAGS_sqlite_gather_wal_writes, false);
  absl::StatusOr<SqliteStoreOptions> options = SqliteStoreOptionsFromFlags();
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->synchronous, "NORMAL");
  EXPECT_EQ(options->max_batch, 7u);
  EXPECT_EQ(options->checkpoint_frames, 2);
  EXPECT_FALSE(options->gather_wal_writes);
}

TEST_F(SqliteFlagsTest, UnknownSynchronousModeIsNamed) {
  absl::SetFlag(&FLAGS_sqlite_synchronous, "sometimes");
  EXPECT_THAT(ErrorFromFlags(),
              HasSubstr("--sqlite_synchronous \"sometimes\" is not one of "
                        "FULL, NORMAL, OFF, EXTRA"));
}

TEST_F(SqliteFlagsTest, ZeroLimitsAreRefused) {
  absl::SetFlag(&FLAGS_sqlite_max_batch, 0);
  EXPECT_THAT(ErrorFromFlags(), HasSubstr("--sqlite_max_batch"));
  absl::SetFlag(&FLAGS_sqlite_max_batch, 1);
  absl::SetFlag(&FLAGS_sqlite_checkpoint_pages, 0);
  EXPECT_THAT(ErrorFromFlags(), HasSubstr("--sqlite_checkpoint_pages"));
  absl::SetFlag(&FLAGS_sqlite_checkpoint_pages, 1u << 31);
  EXPECT_THAT(ErrorFromFlags(), HasSubstr("at most 2147483647"));
}

}  // namespace
}  // namespace parley::service
