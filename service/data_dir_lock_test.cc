#include "service/data_dir_lock.h"

#include <stdlib.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::service {
namespace {

using ::testing::HasSubstr;

std::string TempDir() {
  std::string dir = ::testing::TempDir() + "/data_dir_lock_test.XXXXXX";
  EXPECT_NE(mkdtemp(dir.data()), nullptr);
  return dir;
}

TEST(DataDirLockTest, SecondHolderIsRefusedUntilTheFirstReleases) {
  const std::string dir = TempDir();
  auto first = DataDirLock::Acquire(dir);
  ASSERT_TRUE(first.ok()) << first.status();

  auto second = DataDirLock::Acquire(dir);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(second.status().message()), HasSubstr(dir));
  EXPECT_THAT(std::string(second.status().message()),
              HasSubstr("in use by another parley-service"));

  first->reset();
  EXPECT_TRUE(DataDirLock::Acquire(dir).ok());
}

TEST(DataDirLockTest, MissingDirectoryIsNamed) {
  const std::string missing = TempDir() + "/missing";
  auto lock = DataDirLock::Acquire(missing);
  EXPECT_EQ(lock.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(lock.status().message()), HasSubstr(missing));
  EXPECT_THAT(std::string(lock.status().message()),
              HasSubstr("No such file or directory"));
}

}  // namespace
}  // namespace parley::service
