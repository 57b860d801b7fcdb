#include "service/conversation.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::service {
namespace {

TEST(ValidateIdTest, AcceptsTheAllowedAlphabetUpTo64) {
  EXPECT_TRUE(ValidateId("user id", "Al-ice_1.x").ok());
  EXPECT_TRUE(ValidateId("user id", std::string(64, 'a')).ok());
}

TEST(ValidateIdTest, RejectsEmptyLongAndOtherCharactersNamingThem) {
  EXPECT_EQ(ValidateId("user id", "").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ValidateId("user id", std::string(65, 'a')).code(),
            absl::StatusCode::kInvalidArgument);
  absl::Status colon = ValidateId("group id", "a:b");
  EXPECT_EQ(colon.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(colon.message()), ::testing::HasSubstr("group id"));
  EXPECT_FALSE(ValidateId("user id", "caf\xc3\xa9").ok());
}

TEST(ConversationTest, DirectNamesAreSorted) {
  EXPECT_EQ(DirectConversation("bob", "alice"), "d:alice:bob");
  EXPECT_EQ(DirectConversation("alice", "bob"), "d:alice:bob");
  EXPECT_EQ(GroupConversation("team"), "g:team");
}

TEST(ConversationTest, ParsesBothKinds) {
  auto direct = ParseConversation("d:alice:bob");
  ASSERT_TRUE(direct.ok());
  EXPECT_FALSE(direct->group);
  EXPECT_EQ(direct->user_a, "alice");
  EXPECT_EQ(direct->user_b, "bob");
  auto group = ParseConversation("g:team");
  ASSERT_TRUE(group.ok());
  EXPECT_TRUE(group->group);
  EXPECT_EQ(group->group_id, "team");
}

TEST(ConversationTest, RejectsMalformedAndUnsortedNames) {
  for (const char* bad : {"", "x:a", "d:alice", "d:alice:bob:carol",
                          "g:", "g:a b", "d:bob:alice"}) {
    EXPECT_EQ(ParseConversation(bad).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad;
  }
}

TEST(Utf8Test, AcceptsValidAndRejectsBrokenSequences) {
  EXPECT_TRUE(IsValidUtf8("plain"));
  EXPECT_TRUE(IsValidUtf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xc3"));              // Truncated.
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // Overlong.
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // Surrogate.
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // Above U+10FFFF.
  EXPECT_FALSE(IsValidUtf8("\xff"));
}

}  // namespace
}  // namespace parley::service
