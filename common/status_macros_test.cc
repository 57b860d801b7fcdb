#include "common/status_macros.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace {

absl::Status Fails() { return absl::NotFoundError("no such user"); }
absl::Status Succeeds() { return absl::OkStatus(); }

absl::Status Chain(bool fail, int* reached) {
  RETURN_IF_ERROR(Succeeds());
  *reached = 1;
  if (fail) RETURN_IF_ERROR(Fails());
  *reached = 2;
  return absl::OkStatus();
}

absl::StatusOr<std::string> Name(bool ok) {
  if (!ok) return absl::InvalidArgumentError("bad id");
  return std::string("alice");
}

absl::StatusOr<size_t> NameLength(bool ok) {
  ASSIGN_OR_RETURN(std::string name, Name(ok));
  return name.size();
}

TEST(StatusMacrosTest, ReturnIfErrorReturnsTheFirstFailureUnchanged) {
  int reached = 0;
  absl::Status s = Chain(/*fail=*/true, &reached);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "no such user");
  EXPECT_EQ(reached, 1);
}

TEST(StatusMacrosTest, ReturnIfErrorContinuesOnOk) {
  int reached = 0;
  EXPECT_TRUE(Chain(/*fail=*/false, &reached).ok());
  EXPECT_EQ(reached, 2);
}

TEST(StatusMacrosTest, AssignOrReturnAssignsTheValue) {
  absl::StatusOr<size_t> n = NameLength(true);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 5u);
}

TEST(StatusMacrosTest, AssignOrReturnPropagatesTheError) {
  absl::StatusOr<size_t> n = NameLength(false);
  EXPECT_EQ(n.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(n.status().message(), "bad id");
}

TEST(StatusMacrosTest, ArgumentsAreEvaluatedOnce) {
  int calls = 0;
  auto counted = [&]() -> absl::StatusOr<int> { return ++calls; };
  auto use = [&]() -> absl::Status {
    ASSIGN_OR_RETURN(int v, counted());
    RETURN_IF_ERROR(v == 1 ? absl::OkStatus() : absl::InternalError("twice"));
    return absl::OkStatus();
  };
  EXPECT_TRUE(use().ok());
  EXPECT_EQ(calls, 1);
}

}  // namespace
