#include "service/append_rules.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::service {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::IsEmpty;

AppendRequest Direct(const std::string& from, const std::string& to,
                     const std::string& key) {
  AppendRequest r;
  r.sender = from;
  r.to = to;
  r.client_msg_id = key;
  r.conversation = "d:" + std::min(from, to) + ":" + std::max(from, to);
  return r;
}

AppendRequest ToGroup(const std::string& from, const std::string& group,
                      const std::string& key) {
  AppendRequest r;
  r.sender = from;
  r.to = group;
  r.to_group = true;
  r.client_msg_id = key;
  r.conversation = "g:" + group;
  return r;
}

AppendRequest Change(const std::string& from, const std::string& to,
                     const std::string& key, uint64_t target_seq,
                     const std::string& text) {
  AppendRequest r = Direct(from, to, key);
  r.kind = text.empty() ? MessageKind::kDelete : MessageKind::kEdit;
  r.target_seq = target_seq;
  r.text = text;
  r.sent_at = absl::FromUnixSeconds(200);
  return r;
}

AppendRequest GroupEventOf(const std::string& from, const std::string& group,
                           const std::string& key, GroupEventType type,
                           std::vector<std::string> users = {}) {
  AppendRequest r = ToGroup(from, group, key);
  r.kind = MessageKind::kGroupEvent;
  r.group_event.type = type;
  r.group_event.users = std::move(users);
  r.max_group_members = 10;
  return r;
}

std::vector<PlannedAppend> Plan(const std::vector<AppendRequest>& requests,
                                AppendSnapshot& snapshot) {
  std::vector<const AppendRequest*> batch;
  for (const AppendRequest& r : requests) batch.push_back(&r);
  return PlanAppends(batch, snapshot);
}

TEST(AppendRulesTest, OneBatchNumbersConsecutivelyFromTheCounters) {
  AppendSnapshot s;
  s.users = {"alice", "bob", "carol"};
  s.conversation_heads["d:alice:bob"] = 7;
  s.inbox_heads["alice"] = 3;
  auto plan = Plan({Direct("alice", "bob", "k1"), Direct("bob", "alice", "k2"),
                    Direct("alice", "carol", "k3")},
                   s);
  ASSERT_TRUE(plan[0].store() && plan[1].store() && plan[2].store());
  EXPECT_EQ(plan[0].result->message.seq, 8u);
  EXPECT_EQ(plan[1].result->message.seq, 9u);
  EXPECT_EQ(plan[2].result->message.seq, 1u);
  EXPECT_THAT(plan[1].result->recipients,
              ElementsAre(Field(&InboxEntry::inbox_seq, 5u),    // alice
                          Field(&InboxEntry::inbox_seq, 2u)));  // bob
  EXPECT_EQ(plan[2].result->sender_inbox_seq, 6u);
  EXPECT_EQ(s.conversation_heads["d:alice:bob"], 9u);
  EXPECT_EQ(s.inbox_heads["alice"], 6u);
}

TEST(AppendRulesTest, BlockRefusesDirectMessagesBothWaysButNotGroups) {
  AppendSnapshot s;
  s.users = {"alice", "bob", "carol"};
  s.blocks = {{"alice", "bob"}};
  s.groups["g"] = {{"alice", GroupRole::kMember}, {"bob", GroupRole::kMember}};
  auto plan = Plan({Direct("bob", "alice", "k1"), Direct("alice", "bob", "k2"),
                    ToGroup("bob", "g", "k3"), Direct("bob", "carol", "k4")},
                   s);
  EXPECT_TRUE(IsBlockedError(plan[0].result.status()));
  EXPECT_EQ(plan[0].result.status().message(),
            "user \"alice\" does not accept your messages");
  EXPECT_TRUE(IsBlockedError(plan[1].result.status()));
  EXPECT_EQ(plan[1].result.status().message(),
            "you blocked \"bob\"; unblock them to send");
  EXPECT_TRUE(plan[2].store());
  EXPECT_TRUE(plan[3].store());
  // Refusals number nothing.
  EXPECT_EQ(s.conversation_heads["d:alice:bob"], 0u);
  EXPECT_EQ(plan[2].result->message.seq, 1u);
}

TEST(AppendRulesTest, RepeatInTheSameBatchIsADuplicateOfTheFirst) {
  AppendSnapshot s;
  s.users = {"alice", "bob"};
  auto plan =
      Plan({Direct("alice", "bob", "k"), Direct("alice", "bob", "k")}, s);
  ASSERT_TRUE(plan[0].store());
  ASSERT_TRUE(plan[1].result.ok());
  EXPECT_FALSE(plan[1].store());
  EXPECT_TRUE(plan[1].result->duplicate);
  EXPECT_EQ(plan[1].same_as, 0);
  plan[0].result->message.message_id = "42";
  ResolveDuplicates(plan);
  EXPECT_EQ(plan[1].result->message.message_id, "42");
  EXPECT_THAT(plan[1].result->recipients, IsEmpty());
  EXPECT_EQ(s.conversation_heads["d:alice:bob"], 1u);
}

TEST(AppendRulesTest, StoredKeyAnswersWithTheOriginal) {
  AppendSnapshot s;
  s.users = {"alice", "bob"};
  AppendResult original;
  original.message.message_id = "9";
  original.sender_inbox_seq = 4;
  s.sent[{"alice", "k"}] = original;
  auto plan = Plan({Direct("alice", "bob", "k")}, s);
  ASSERT_TRUE(plan[0].result.ok());
  EXPECT_TRUE(plan[0].result->duplicate);
  EXPECT_EQ(plan[0].result->message.message_id, "9");
  EXPECT_EQ(plan[0].result->sender_inbox_seq, 4u);
  EXPECT_TRUE(s.conversation_heads.empty());
}

TEST(AppendRulesTest, RefusedRequestsNumberNothing) {
  AppendSnapshot s;
  s.users = {"alice", "bob", "carol"};
  s.groups["team"] = {{"bob", GroupRole::kMember},
                      {"alice", GroupRole::kMember}};
  auto plan =
      Plan({ToGroup("carol", "team", "k1"), ToGroup("alice", "nogroup", "k2"),
            Direct("ghost", "alice", "k3"), Direct("alice", "nobody", "k4"),
            ToGroup("bob", "team", "k5")},
           s);
  EXPECT_EQ(plan[0].result.status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(plan[1].result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(plan[2].result.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(plan[3].result.status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(plan[4].store());
  EXPECT_EQ(plan[4].result->message.seq, 1u);
  EXPECT_THAT(plan[4].result->recipients,
              ElementsAre(Field(&InboxEntry::user, "alice"),
                          Field(&InboxEntry::user, "bob")));
  EXPECT_EQ(s.inbox_heads["alice"], 1u);
  EXPECT_EQ(s.inbox_heads.count("carol"), 0u);
}

TEST(AppendRulesTest, NoteToOneselfEntersOneInbox) {
  AppendSnapshot s;
  s.users = {"alice"};
  auto plan = Plan({Direct("alice", "alice", "k")}, s);
  ASSERT_TRUE(plan[0].store());
  EXPECT_THAT(plan[0].result->recipients,
              ElementsAre(Field(&InboxEntry::user, "alice")));
  EXPECT_EQ(plan[0].result->sender_inbox_seq, 1u);
}

// Events of one batch apply in order: the store writes each target once, as
// the last of them left it.
TEST(AppendRulesTest, EventsOfOneBatchChangeTheirTargetInOrder) {
  AppendSnapshot s;
  s.users = {"alice", "bob"};
  s.conversation_heads["d:alice:bob"] = 4;
  StoredMessage target;
  target.conversation = "d:alice:bob";
  target.seq = 4;
  target.from = "alice";
  target.to = "bob";
  target.text = "typo";
  target.sent_at = absl::FromUnixSeconds(100);
  s.targets[{"d:alice:bob", 4}] = target;
  auto plan = Plan({Change("alice", "bob", "e1", 4, "fixed"),
                    Change("alice", "bob", "x1", 4, ""),
                    Change("alice", "bob", "e2", 4, "too late")},
                   s);
  ASSERT_TRUE(plan[0].store() && plan[1].store());
  EXPECT_EQ(plan[0].result->message.seq, 5u);
  EXPECT_EQ(plan[0].result->message.text, "fixed");
  EXPECT_EQ(plan[1].result->message.seq, 6u);
  EXPECT_EQ(plan[1].result->message.kind, MessageKind::kDelete);
  EXPECT_EQ(plan[2].result.status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.changed_targets,
              ElementsAre(std::make_pair(std::string("d:alice:bob"), 4ul)));
  const StoredMessage& final_state = s.targets[{"d:alice:bob", 4u}];
  EXPECT_TRUE(final_state.deleted);
  EXPECT_EQ(final_state.text, "");
  EXPECT_EQ(final_state.edited_at, absl::FromUnixSeconds(200));
  EXPECT_EQ(s.conversation_heads["d:alice:bob"], 6u);
}

TEST(AppendRulesTest, AnEventMayTargetATextMessageOfTheSameBatch) {
  AppendSnapshot s;
  s.users = {"alice", "bob"};
  AppendRequest text = Direct("alice", "bob", "c1");
  text.text = "draft";
  auto plan = Plan({text, Change("alice", "bob", "e1", 1, "final")}, s);
  ASSERT_TRUE(plan[0].store() && plan[1].store()) << plan[1].result.status();
  EXPECT_EQ(plan[1].result->message.target_seq, 1u);
  EXPECT_EQ((s.targets[{"d:alice:bob", 1}].text), "final");
}

TEST(AppendRulesTest, TheWindowCountsFromTheTargetsSendingToTheEvent) {
  AppendSnapshot s;
  s.users = {"alice", "bob"};
  StoredMessage target;
  target.from = "alice";
  target.sent_at = absl::FromUnixSeconds(100);
  s.targets[{"d:alice:bob", 1}] = target;
  AppendRequest edge = Change("alice", "bob", "e1", 1, "at the edge");
  edge.edit_window = absl::Seconds(100);  // Sent at 200: exactly in time.
  AppendRequest late = Change("alice", "bob", "e2", 1, "late");
  late.edit_window = absl::Seconds(99);
  auto plan = Plan({edge, late}, s);
  EXPECT_TRUE(plan[0].store()) << plan[0].result.status();
  EXPECT_EQ(plan[1].result.status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(plan[1].result.status().message()),
              ::testing::HasSubstr("1m39s"));
}

// A batch's group events change the group for the appends after them: who
// may send, who gets what, and the rows the store writes (final state).
TEST(AppendRulesTest, GroupEventsOfOneBatchApplyInOrder) {
  using T = GroupEventType;
  AppendSnapshot s;
  s.users = {"alice", "bob", "carol"};
  AppendRequest rename = GroupEventOf("alice", "g", "k4", T::kRenamed);
  rename.text = "New";
  AppendRequest create = GroupEventOf("alice", "g", "k1", T::kCreated, {"bob"});
  create.text = "Old";
  create.sent_at = absl::FromUnixSeconds(5);
  auto plan =
      Plan({ToGroup("carol", "g", "k0"), create,
            GroupEventOf("bob", "g", "k2", T::kMembersAdded, {"carol"}),
            GroupEventOf("alice", "g", "k3", T::kMembersAdded, {"carol"}),
            ToGroup("carol", "g", "k5"), rename,
            GroupEventOf("alice", "g", "k6", T::kMembersRemoved, {"carol"}),
            ToGroup("carol", "g", "k7")},
           s);
  EXPECT_EQ(plan[0].result.status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(plan[1].store());
  EXPECT_EQ(plan[1].result->message.seq, 1u);
  EXPECT_EQ(plan[2].result.status().code(),
            absl::StatusCode::kPermissionDenied);  // bob is a plain member.
  ASSERT_TRUE(plan[3].store());
  ASSERT_TRUE(plan[4].store());  // carol is in now.
  EXPECT_EQ(plan[4].result->message.seq, 3u);
  ASSERT_TRUE(plan[6].store());
  EXPECT_THAT(plan[6].result->recipients,
              ElementsAre(Field(&InboxEntry::user, "alice"),
                          Field(&InboxEntry::user, "bob"),
                          Field(&InboxEntry::user, "carol")));
  EXPECT_EQ(plan[7].result.status().code(),
            absl::StatusCode::kPermissionDenied);
  ASSERT_EQ(s.group_writes.count("g"), 1u);
  const GroupWrite& w = s.group_writes["g"];
  EXPECT_TRUE(w.created);
  EXPECT_EQ(w.created_at, absl::FromUnixSeconds(5));
  EXPECT_EQ(w.title, "New");
  EXPECT_EQ(w.members.at("alice"), GroupRole::kOwner);
  EXPECT_EQ(w.members.at("bob"), GroupRole::kMember);
  EXPECT_EQ(w.members.at("carol"), std::nullopt);
  EXPECT_EQ(s.inbox_heads["carol"], 4u);
}

TEST(AppendRulesTest, PassingOwnershipMakesTheOldOwnerAnAdmin) {
  AppendSnapshot s;
  s.users = {"alice", "bob"};
  s.groups["g"] = {{"alice", GroupRole::kOwner}, {"bob", GroupRole::kMember}};
  AppendRequest pass =
      GroupEventOf("alice", "g", "k1", GroupEventType::kRoleChanged, {"bob"});
  pass.group_event.role = GroupRole::kOwner;
  auto plan = Plan({pass, GroupEventOf("alice", "g", "k2",
                                       GroupEventType::kRoleChanged, {"bob"})},
                   s);
  ASSERT_TRUE(plan[0].store());
  EXPECT_EQ(plan[0].result->message.group_event.role, GroupRole::kOwner);
  // alice is no owner any more: she may not change roles.
  EXPECT_EQ(plan[1].result.status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.groups["g"], (MemberRoles{{"alice", GroupRole::kAdmin},
                                        {"bob", GroupRole::kOwner}}));
  EXPECT_EQ(s.group_writes["g"].members.size(), 2u);
}

TEST(AppendRulesTest, RefusalsOfGroupEventsNameTheProblem) {
  using T = GroupEventType;
  AppendSnapshot s;
  s.users = {"alice", "bob", "carol"};
  s.groups["g"] = {{"alice", GroupRole::kOwner},
                   {"bob", GroupRole::kAdmin},
                   {"carol", GroupRole::kMember}};
  auto plan =
      Plan({GroupEventOf("bob", "g", "k1", T::kMembersRemoved, {"alice"}),
            GroupEventOf("alice", "g", "k2", T::kMemberLeft),
            GroupEventOf("alice", "g", "k3", T::kMembersRemoved, {"alice"}),
            GroupEventOf("", "g", "k4", T::kMemberLeft),
            GroupEventOf("carol", "g", "k5", T::kNone)},
           s);
  EXPECT_THAT(plan[0].result.status().message(),
              ::testing::HasSubstr("may not remove \"alice\" (the owner)"));
  EXPECT_THAT(plan[1].result.status().message(),
              ::testing::HasSubstr("make another member the owner"));
  EXPECT_EQ(plan[2].result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(plan[3].result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(plan[4].result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.group_writes, IsEmpty());
  EXPECT_THAT(s.conversation_heads, IsEmpty());
}

}  // namespace
}  // namespace parley::service
