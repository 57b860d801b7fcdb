#include "common/config.h"

#include <map>
#include <string>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

ABSL_FLAG(int, test_max_connections, 100, "Test flag (connections).");
ABSL_FLAG(absl::Duration, test_idle_timeout, absl::Seconds(30),
          "Test flag (duration).");

namespace parley {
namespace {

using ::testing::HasSubstr;

struct FakeEnv {
  std::map<std::string, std::string> vars;
  std::function<const char*(const char*)> Getter() {
    return [this](const char* name) -> const char* {
      auto it = vars.find(name);
      return it == vars.end() ? nullptr : it->second.c_str();
    };
  }
};

TEST(ConfigTest, EnvironmentVariableNameIsPrefixedUpperCase) {
  EXPECT_EQ(EnvVarForFlag("listen_address"), "PARLEY_LISTEN_ADDRESS");
}

TEST(ConfigTest, EnvironmentOverridesTheDefault) {
  FakeEnv env;
  env.vars["PARLEY_TEST_MAX_CONNECTIONS"] = "7";
  env.vars["PARLEY_TEST_IDLE_TIMEOUT"] = "1500ms";
  ASSERT_TRUE(ApplyEnvironmentOverrides(env.Getter()).ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_test_max_connections), 7);
  EXPECT_EQ(absl::GetFlag(FLAGS_test_idle_timeout), absl::Milliseconds(1500));
}

TEST(ConfigTest, CommandLineWinsOverEnvironment) {
  FakeEnv env;
  env.vars["PARLEY_TEST_MAX_CONNECTIONS"] = "7";
  std::string prog = "prog";
  std::string arg = "--test_max_connections=9";
  char* argv[] = {prog.data(), arg.data()};
  setenv("PARLEY_TEST_MAX_CONNECTIONS", "7", 1);
  std::vector<char*> rest = ParseConfig(2, argv, "test");
  unsetenv("PARLEY_TEST_MAX_CONNECTIONS");
  EXPECT_EQ(absl::GetFlag(FLAGS_test_max_connections), 9);
  EXPECT_EQ(rest.size(), 1u);
}

TEST(ConfigTest, BadEnvironmentValueNamesTheVariable) {
  FakeEnv env;
  env.vars["PARLEY_TEST_MAX_CONNECTIONS"] = "lots";
  absl::Status s = ApplyEnvironmentOverrides(env.Getter());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("PARLEY_TEST_MAX_CONNECTIONS"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("--test_max_connections"));
}

TEST(ConfigTest, UnrelatedVariablesAreIgnored) {
  absl::SetFlag(&FLAGS_test_max_connections, 100);
  FakeEnv env;
  env.vars["TEST_MAX_CONNECTIONS"] = "3";
  ASSERT_TRUE(ApplyEnvironmentOverrides(env.Getter()).ok());
  EXPECT_EQ(absl::GetFlag(FLAGS_test_max_connections), 100);
}

}  // namespace
}  // namespace parley
