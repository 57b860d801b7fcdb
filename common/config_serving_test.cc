// ParseConfig's process-wide settings for the binaries (its own test binary:
// ParseConfig runs once per process).
#include "absl/synchronization/mutex.h"
#include "common/config.h"
#include "gtest/gtest.h"

namespace parley {
namespace {

TEST(ConfigServingTest, ProcessesDoNotAbortOnSuspectedLockOrderCycles) {
  char arg0[] = "test";
  char* argv[] = {arg0};
  ParseConfig(1, argv, "test");
  // Debian's Abseil checks lock order, and dies on a suspected cycle, unless
  // told not to; ParseConfig turns that off for the binaries.
  absl::Mutex a, b;
  {
    absl::MutexLock la(&a);
    absl::MutexLock lb(&b);
  }
  {
    absl::MutexLock lb(&b);
    absl::MutexLock la(&a);
  }
  SUCCEED();
}

}  // namespace
}  // namespace parley
