#include "tools/admin_cli.h"

#include <algorithm>

#include "absl/strings/str_join.h"
#include "common/build_info.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpc/health/v1/health_mock.grpc.pb.h"
#include "gtest/gtest.h"
#include "parley/v1/admin_mock.grpc.pb.h"

namespace parley {
namespace {

using ::google::protobuf::util::MessageDifferencer;
using ::testing::_;
using ::testing::DoAll;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Return;
using ::testing::SetArgPointee;
using ::testing::Truly;

template <typename T>
auto EqualsProto(const T& expected) {
  return Truly([expected](const T& actual) {
    return MessageDifferencer::Equals(expected, actual);
  });
}

class AdminCliTest : public ::testing::Test {
 protected:
  absl::StatusOr<std::string> Run(std::vector<std::string> args,
                                  bool json = false,
                                  std::string admin_key = "k") {
    AdminCliOptions options;
    options.admin_key = admin_key;
    options.json = json;
    AdminCli cli(&admin_, &health_, options);
    return cli.Run(args);
  }

  v1::MockAdminStub admin_;
  grpc::health::v1::MockHealthStub health_;
};

TEST_F(AdminCliTest, UsersCreateSendsIdAndName) {
  v1::CreateUserRequest want;
  want.set_id("alice");
  want.set_display_name("Alice A");
  v1::User user;
  user.set_id("alice");
  EXPECT_CALL(admin_, CreateUser(_, EqualsProto(want), _))
      .WillOnce(DoAll(SetArgPointee<2>(user), Return(grpc::Status::OK)));
  absl::StatusOr<std::string> out =
      Run({"users", "create", "alice", "--name", "Alice A"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "created user alice\n");
}

TEST_F(AdminCliTest, UsersListFollowsEveryPage) {
  v1::ListUsersResponse page1, page2;
  page1.add_users()->set_id("alice");
  page1.set_next_page_token("p2");
  page2.add_users()->set_id("bob");
  v1::ListUsersRequest second;
  second.set_page_token("p2");
  EXPECT_CALL(admin_, ListUsers(_, EqualsProto(v1::ListUsersRequest()), _))
      .WillOnce(DoAll(SetArgPointee<2>(page1), Return(grpc::Status::OK)));
  EXPECT_CALL(admin_, ListUsers(_, EqualsProto(second), _))
      .WillOnce(DoAll(SetArgPointee<2>(page2), Return(grpc::Status::OK)));
  absl::StatusOr<std::string> out = Run({"users", "list"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(*out, HasSubstr("ID "));
  EXPECT_THAT(*out, HasSubstr("\nalice "));
  EXPECT_THAT(*out, HasSubstr("\nbob "));
}

TEST_F(AdminCliTest, TokenParsesTtlAndDevice) {
  v1::IssueTokenRequest want;
  want.set_user_id("alice");
  want.set_ttl_seconds(3600);
  want.set_device("laptop");
  v1::IssueTokenResponse resp;
  resp.set_token("a.b.c");
  EXPECT_CALL(admin_, IssueToken(_, EqualsProto(want), _))
      .WillOnce(DoAll(SetArgPointee<2>(resp), Return(grpc::Status::OK)));
  absl::StatusOr<std::string> out =
      Run({"token", "alice", "--ttl", "1h", "--device=laptop"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "a.b.c\n");
}

TEST_F(AdminCliTest, BadTtlIsRejectedWithoutACall) {
  EXPECT_CALL(admin_, IssueToken(_, _, _)).Times(0);
  absl::StatusOr<std::string> out = Run({"token", "alice", "--ttl", "soon"});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("--ttl"));
}

TEST_F(AdminCliTest, KickNoReconnectSendsReconnectFalse) {
  v1::DisconnectRequest want;
  want.set_user_id("alice");
  want.set_reason("spam");
  want.set_reconnect(false);
  v1::DisconnectResponse resp;
  resp.set_sessions_closed(2);
  EXPECT_CALL(admin_, Disconnect(_, EqualsProto(want), _))
      .WillOnce(DoAll(SetArgPointee<2>(resp), Return(grpc::Status::OK)));
  absl::StatusOr<std::string> out =
      Run({"kick", "alice", "--reason", "spam", "--no-reconnect"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "2 sessions closed\n");
}

TEST_F(AdminCliTest, SendNeedsExactlyOneRecipient) {
  EXPECT_CALL(admin_, SendMessage(_, _, _)).Times(0);
  EXPECT_EQ(Run({"send", "--from", "bot", "hi"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Run({"send", "--from", "bot", "--to", "a", "--group", "g", "hi"})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(AdminCliTest, SendToGroupAsUser) {
  v1::SendMessageRequest want;
  want.set_from("bot");
  want.mutable_to()->set_group("team");
  want.set_text("deploy done");
  v1::Ack ack;
  ack.set_conversation("g:team");
  ack.set_seq(7);
  ack.set_message_id("42");
  EXPECT_CALL(admin_, SendMessage(_, EqualsProto(want), _))
      .WillOnce(DoAll(SetArgPointee<2>(ack), Return(grpc::Status::OK)));
  absl::StatusOr<std::string> out =
      Run({"send", "--from", "bot", "--group", "team", "deploy done"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "stored g:team seq 7 (message 42)\n");
}

TEST_F(AdminCliTest, ServerErrorsKeepTheirCodeAndMessage) {
  EXPECT_CALL(admin_, GetUser(_, _, _))
      .WillOnce(Return(
          grpc::Status(grpc::StatusCode::NOT_FOUND, "user \"zed\" not found")));
  absl::StatusOr<std::string> out = Run({"users", "get", "zed"});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(out.status().message(), "user \"zed\" not found");
  EXPECT_EQ(ExitCodeFor(out.status()), 5);
}

TEST_F(AdminCliTest, ExitCodesAreDistinct) {
  EXPECT_EQ(ExitCodeFor(absl::OkStatus()), 0);
  EXPECT_EQ(ExitCodeFor(absl::InvalidArgumentError("")), 2);
  EXPECT_EQ(ExitCodeFor(absl::UnavailableError("")), 3);
  EXPECT_EQ(ExitCodeFor(absl::UnauthenticatedError("")), 4);
  EXPECT_EQ(ExitCodeFor(absl::NotFoundError("")), 5);
  EXPECT_EQ(ExitCodeFor(absl::AlreadyExistsError("")), 6);
  EXPECT_EQ(ExitCodeFor(absl::InternalError("")), 1);
}

TEST_F(AdminCliTest, UnknownCommandsAndOptionsAreUsageErrors) {
  absl::StatusOr<std::string> out = Run({"frobnicate"});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("usage:"));
  out = Run({"users", "create", "a", "--colour", "red"});
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("--colour"));
}

TEST_F(AdminCliTest, UnknownCommandSuggestsTheNearest) {
  absl::StatusOr<std::string> out = Run({"tokens", "alice"});
  EXPECT_EQ(ExitCodeFor(out.status()), 2);
  EXPECT_THAT(std::string(out.status().message()),
              HasSubstr("did you mean \"token\"?"));
  out = Run({"userz", "lst"});
  EXPECT_THAT(std::string(out.status().message()),
              HasSubstr("did you mean \"users list\"?"));
  out = Run({"groups", "lsit"});
  EXPECT_THAT(std::string(out.status().message()),
              HasSubstr("did you mean \"groups list\"?"));
  out = Run({"frobnicate"});
  EXPECT_THAT(std::string(out.status().message()), Not(HasSubstr("mean")));
}

TEST_F(AdminCliTest, HelpPrintsTheUsageWithoutACall) {
  for (const std::vector<std::string>& words :
       std::vector<std::vector<std::string>>{{"help"}, {"--help"}, {"-h"}}) {
    absl::StatusOr<std::string> out = Run(words);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(*out, AdminCli::Usage());
  }
  EXPECT_THAT(AdminCli::Usage(),
              HasSubstr("\n  users create ID [--name NAME]"));
}

TEST_F(AdminCliTest, VersionPrintsTheStampWithoutACall) {
  for (const std::vector<std::string>& words :
       std::vector<std::vector<std::string>>{{"version"}, {"--version"}}) {
    absl::StatusOr<std::string> out = Run(words);
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(*out, VersionLine("parleyctl") + "\n");
  }
  EXPECT_THAT(SplitCommandLine({"--admin_addr=x:1", "--version"}).command,
              ElementsAre("--version"));
}

TEST_F(AdminCliTest, CommandHelpDescribesThatCommandWithoutACall) {
  EXPECT_CALL(admin_, CreateUser(_, _, _)).Times(0);
  EXPECT_CALL(admin_, SendMessage(_, _, _)).Times(0);
  absl::StatusOr<std::string> out = Run({"users", "create", "--help"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(*out,
              HasSubstr("usage: parleyctl users create ID [--name NAME]"));
  EXPECT_THAT(*out, Not(HasSubstr("users list")));
  out = Run({"send", "--from", "bot", "-h"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(*out, HasSubstr("--system"));
  out = Run({"help", "history"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(*out, HasSubstr("usage: parleyctl history CONVERSATION"));
  // A word with subcommands lists them.
  out = Run({"users", "--help"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(*out, HasSubstr("users delete ID"));
  EXPECT_THAT(*out, Not(HasSubstr("groups")));
  EXPECT_EQ(Run({"help", "tokens"}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(AdminCliTest, EveryListedCommandIsDispatched) {
  // A command in the usage without a branch would answer INTERNAL here.
  for (const std::vector<std::string>& words :
       std::vector<std::vector<std::string>>{{"users", "create"},
                                             {"users", "get"},
                                             {"users", "list"},
                                             {"users", "delete"},
                                             {"token"},
                                             {"groups", "create"},
                                             {"groups", "add"},
                                             {"groups", "remove"},
                                             {"groups", "get"},
                                             {"groups", "list"},
                                             {"sessions"},
                                             {"kick"},
                                             {"send"},
                                             {"broadcast"},
                                             {"conversations"},
                                             {"delete-message"},
                                             {"history"},
                                             {"blocks"},
                                             {"stats"},
                                             {"backup"},
                                             {"health"}}) {
    std::vector<std::string> bad = words;
    bad.push_back("--no-such-option");
    absl::StatusOr<std::string> out = Run(bad);
    EXPECT_THAT(std::string(out.status().message()),
                HasSubstr("unknown option --no-such-option"))
        << absl::StrJoin(words, " ");
  }
}

TEST(SplitCommandLineTest, FlagsAfterTheCommandGoToAbsl) {
  CommandLine line = SplitCommandLine({"users", "list", "--json"});
  EXPECT_THAT(line.flags, ElementsAre("--json"));
  EXPECT_THAT(line.command, ElementsAre("users", "list"));
  line = SplitCommandLine({"--admin_key", "k", "backup", "/b/a.db", "--json",
                           "--timeout=5s", "--admin_addr", "h:1"});
  EXPECT_THAT(line.flags, ElementsAre("--admin_key", "k", "--json",
                                      "--timeout=5s", "--admin_addr", "h:1"));
  EXPECT_THAT(line.command, ElementsAre("backup", "/b/a.db"));
  // The command's own options stay with it.
  line = SplitCommandLine({"token", "alice", "--device", "laptop"});
  EXPECT_THAT(line.flags, IsEmpty());
  EXPECT_THAT(line.command,
              ElementsAre("token", "alice", "--device", "laptop"));
}

TEST(SplitCommandLineTest, HelpAndWordsAfterDoubleDashGoToTheCommand) {
  CommandLine line = SplitCommandLine({"--help"});
  EXPECT_THAT(line.flags, IsEmpty());
  EXPECT_THAT(line.command, ElementsAre("--help"));
  line = SplitCommandLine({"-h", "--json", "send"});
  EXPECT_THAT(line.flags, ElementsAre("--json"));
  EXPECT_THAT(line.command, ElementsAre("-h", "send"));
  line = SplitCommandLine({"--json", "--", "broadcast", "--", "--json"});
  EXPECT_THAT(line.flags, ElementsAre("--json"));
  EXPECT_THAT(line.command, ElementsAre("broadcast", "--", "--json"));
}

TEST_F(AdminCliTest, MissingAdminKeyIsReportedBeforeAnyCall) {
  EXPECT_CALL(admin_, ListUsers(_, _, _)).Times(0);
  absl::StatusOr<std::string> out =
      Run({"users", "list"}, /*json=*/false, /*admin_key=*/"");
  EXPECT_EQ(out.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(ExitCodeFor(out.status()), 4);
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("no admin key"));
  EXPECT_THAT(std::string(out.status().message()),
              HasSubstr("PARLEY_ADMIN_KEY"));
  // Health needs no key.
  grpc::health::v1::HealthCheckResponse serving;
  serving.set_status(grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_CALL(health_, Check(_, _, _))
      .WillOnce(DoAll(SetArgPointee<2>(serving), Return(grpc::Status::OK)));
  out = Run({"health"}, /*json=*/false, /*admin_key=*/"");
  ASSERT_TRUE(out.ok()) << out.status();
}

TEST_F(AdminCliTest, HistoryEscapesControlCharactersAndShowsTheZone) {
  v1::GetHistoryResponse resp;
  v1::Message* m = resp.add_messages();
  m->set_seq(3);
  m->set_from("alice");
  m->set_text("one\ntwo\r\x1b[31m \\n \xc2\x85 caf\xc3\xa9");
  m->mutable_sent_at()->set_seconds(1796409111);  // 2026-12-04 18:31:51 UTC
  EXPECT_CALL(admin_, GetHistory(_, _, _))
      .WillOnce(DoAll(SetArgPointee<2>(resp), Return(grpc::Status::OK)));
  absl::StatusOr<std::string> out = Run({"history", "d:alice:bob"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(*out,
              HasSubstr("2026-12-04T18:31:51Z  "
                        "one\\ntwo\\r\\x1b[31m \\\\n \\u0085 caf\xc3\xa9\n"));
  // The header and one row: the message's newline started no other line.
  EXPECT_EQ(std::count(out->begin(), out->end(), '\n'), 2);
}

TEST_F(AdminCliTest, ConversationsListsEveryPageWithUnreadCounts) {
  v1::ListConversationsRequest first;
  first.set_user_id("alice");
  v1::ListConversationsResponse page1;
  v1::ConversationSummary* dm = page1.add_conversations();
  dm->set_id("d:alice:bob");
  dm->set_kind(v1::CONVERSATION_KIND_DIRECT);
  dm->set_title("Bob");
  dm->set_peer("bob");
  dm->set_head_seq(5);
  dm->set_read_seq(2);
  dm->set_unread(3);
  dm->set_peer_read_seq(4);
  dm->mutable_last_activity()->set_seconds(1796409111);
  dm->mutable_last_message()->set_from("bob");
  dm->mutable_last_message()->set_text("see you\nlater");
  page1.set_next_page_token("t1");
  v1::ListConversationsRequest second = first;
  second.set_page_token("t1");
  v1::ListConversationsResponse page2;
  v1::ConversationSummary* group = page2.add_conversations();
  group->set_id("g:team");
  group->set_kind(v1::CONVERSATION_KIND_GROUP);
  group->set_title("Team");
  group->mutable_last_activity()->set_seconds(1796400000);
  ::testing::InSequence in_order;
  EXPECT_CALL(admin_, ListConversations(_, EqualsProto(first), _))
      .WillOnce(DoAll(SetArgPointee<2>(page1), Return(grpc::Status::OK)));
  EXPECT_CALL(admin_, ListConversations(_, EqualsProto(second), _))
      .WillOnce(DoAll(SetArgPointee<2>(page2), Return(grpc::Status::OK)));
  absl::StatusOr<std::string> out = Run({"conversations", "alice"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out,
            "CONVERSATION  TITLE  UNREAD  READ  HEAD  PEER READ  LAST ACTIVITY "
            "        LAST MESSAGE\n"
            "d:alice:bob   Bob    3       2     5     4          "
            "2026-12-04T18:31:51Z  bob: see you\\nlater\n"
            "g:team        Team   0       0     0     -          "
            "2026-12-04T16:00:00Z  -\n");
}

TEST_F(AdminCliTest, ConversationsLimitStopsPaging) {
  v1::ListConversationsRequest want;
  want.set_user_id("alice");
  want.set_page_size(1);
  v1::ListConversationsResponse page;
  page.add_conversations()->set_id("g:team");
  page.set_next_page_token("more");
  EXPECT_CALL(admin_, ListConversations(_, EqualsProto(want), _))
      .WillOnce(DoAll(SetArgPointee<2>(page), Return(grpc::Status::OK)));
  absl::StatusOr<std::string> out =
      Run({"conversations", "alice", "--limit", "1"}, /*json=*/true);
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(*out, HasSubstr("\"g:team\""));
  EXPECT_EQ(Run({"conversations"}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(AdminCliTest, BlocksListsTheUsersBlockedOnePerRow) {
  v1::ListBlocksRequest want;
  want.set_id("alice");
  v1::ListBlocksResponse resp;
  resp.add_users("bob");
  resp.add_users("carol");
  EXPECT_CALL(admin_, ListBlocks(_, EqualsProto(want), _))
      .WillOnce(DoAll(SetArgPointee<2>(resp), Return(grpc::Status::OK)));
  absl::StatusOr<std::string> out = Run({"blocks", "alice"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "BLOCKED\nbob\ncarol\n");
  // A user is required.
  EXPECT_EQ(Run({"blocks"}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(AdminCliTest, DeleteMessageSendsConversationSeqAndReason) {
  v1::DeleteMessageRequest want;
  want.set_conversation("g:team");
  want.set_seq(12);
  want.set_reason("spam");
  v1::Ack ack;
  ack.set_conversation("g:team");
  ack.set_seq(40);
  EXPECT_CALL(admin_, DeleteMessage(_, EqualsProto(want), _))
      .WillOnce(DoAll(SetArgPointee<2>(ack), Return(grpc::Status::OK)));
  absl::StatusOr<std::string> out =
      Run({"delete-message", "g:team", "12", "--reason", "spam"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(*out, "deleted g:team seq 12 (event seq 40)\n");
}

TEST_F(AdminCliTest, DeleteMessageNeedsAPositiveSeqAndKeepsServerErrors) {
  EXPECT_CALL(admin_, DeleteMessage(_, _, _))
      .WillOnce(Return(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                    "message 3 of \"g:team\" is already "
                                    "deleted")));
  for (const char* seq : {"0", "x", "-1"}) {
    EXPECT_EQ(Run({"delete-message", "g:team", seq}).status().code(),
              absl::StatusCode::kInvalidArgument)
        << seq;
  }
  EXPECT_EQ(Run({"delete-message", "g:team"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::string> out = Run({"delete-message", "g:team", "3"});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(out.status().message()),
              HasSubstr("already deleted"));
}

TEST_F(AdminCliTest, HistoryMarksEditsTombstonesAndEvents) {
  v1::GetHistoryResponse resp;
  v1::Message* edited = resp.add_messages();
  edited->set_seq(1);
  edited->set_from("alice");
  edited->set_text("fixed");
  edited->mutable_edited_at()->set_seconds(1796409111);
  v1::Message* gone = resp.add_messages();
  gone->set_seq(2);
  gone->set_from("bob");
  gone->set_deleted(true);
  v1::Message* edit = resp.add_messages();
  edit->set_seq(3);
  edit->set_from("alice");
  edit->set_kind(v1::MESSAGE_KIND_EDIT);
  edit->set_target_seq(1);
  edit->set_text("fixed");
  v1::Message* del = resp.add_messages();
  del->set_seq(4);
  del->set_kind(v1::MESSAGE_KIND_DELETE);
  del->set_target_seq(2);
  EXPECT_CALL(admin_, GetHistory(_, _, _))
      .WillOnce(DoAll(SetArgPointee<2>(resp), Return(grpc::Status::OK)));
  absl::StatusOr<std::string> out = Run({"history", "d:alice:bob"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(*out, HasSubstr("fixed [edited 2026-12-04T18:31:51Z]\n"));
  EXPECT_THAT(*out, HasSubstr("[deleted]\n"));
  EXPECT_THAT(*out, HasSubstr("[edit of 1] fixed\n"));
  EXPECT_THAT(*out, HasSubstr("(operator)"));
  EXPECT_THAT(*out, HasSubstr("[delete of 2]\n"));
}

TEST_F(AdminCliTest, SendAsSystemCreatesTheUserOnceAndJoinsTheGroup) {
  v1::CreateUserRequest create;
  create.set_id("system");
  create.set_display_name("System");
  v1::AddMembersRequest join;
  join.set_group_id("team");
  join.add_user_ids("system");
  v1::SendMessageRequest want;
  want.set_from("system");
  want.mutable_to()->set_group("team");
  want.set_text("maintenance done");
  ::testing::InSequence in_order;
  EXPECT_CALL(admin_, CreateUser(_, EqualsProto(create), _))
      .WillOnce(Return(grpc::Status(grpc::StatusCode::ALREADY_EXISTS, "")));
  EXPECT_CALL(admin_, AddMembers(_, EqualsProto(join), _))
      .WillOnce(Return(grpc::Status::OK));
  EXPECT_CALL(admin_, SendMessage(_, EqualsProto(want), _))
      .WillOnce(Return(grpc::Status::OK));
  absl::StatusOr<std::string> out =
      Run({"send", "--system", "--group", "team", "maintenance done"});
  ASSERT_TRUE(out.ok()) << out.status();
}

TEST_F(AdminCliTest, SendAsSystemToAUserJoinsNoGroup) {
  v1::SendMessageRequest want;
  want.set_from("system");
  want.mutable_to()->set_user("alice");
  want.set_text("hello");
  EXPECT_CALL(admin_, CreateUser(_, _, _)).WillOnce(Return(grpc::Status::OK));
  EXPECT_CALL(admin_, AddMembers(_, _, _)).Times(0);
  EXPECT_CALL(admin_, SendMessage(_, EqualsProto(want), _))
      .WillOnce(Return(grpc::Status::OK));
  ASSERT_TRUE(Run({"send", "--system", "--to", "alice", "hello"}).ok());
  // Either --from or --system, not both.
  EXPECT_EQ(Run({"send", "--system", "--from", "bot", "--to", "alice", "hi"})
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(AdminCliTest, JsonOutputUsesProtobufJsonNames) {
  v1::Stats stats;
  stats.set_live_sessions(3);
  EXPECT_CALL(admin_, GetStats(_, _, _))
      .WillOnce(DoAll(SetArgPointee<2>(stats), Return(grpc::Status::OK)));
  absl::StatusOr<std::string> out = Run({"stats"}, /*json=*/true);
  ASSERT_TRUE(out.ok());
  EXPECT_THAT(*out, HasSubstr("\"liveSessions\": 3"));
}

TEST_F(AdminCliTest, BackupSendsThePathWaitsLongAndPrintsWhatTheCopyHolds) {
  v1::BackupRequest want;
  want.set_path("/backups/a.db");
  v1::BackupResponse resp;
  resp.set_path("/backups/a.db");
  resp.set_size_bytes(40960);
  resp.set_users(3);
  resp.set_groups(1);
  resp.set_messages(120);
  resp.set_last_message_id("120");
  resp.set_generation("0123456789abcdef");
  EXPECT_CALL(admin_, Backup(_, EqualsProto(want), _))
      .WillOnce([&](grpc::ClientContext* context, const v1::BackupRequest&,
                    v1::BackupResponse* out) {
        // Far beyond the default 10 s: the service checks the whole copy.
        EXPECT_GT(context->deadline(),
                  std::chrono::system_clock::now() + std::chrono::minutes(59));
        *out = resp;
        return grpc::Status::OK;
      });
  absl::StatusOr<std::string> out = Run({"backup", "/backups/a.db"});
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_THAT(*out, HasSubstr("wrote /backups/a.db: integrity ok\n"));
  EXPECT_THAT(*out, HasSubstr("messages         120\n"));
  EXPECT_THAT(*out, HasSubstr("last message id  120\n"));
  EXPECT_THAT(*out, HasSubstr("generation       0123456789abcdef\n"));
}

TEST_F(AdminCliTest, BackupFailuresKeepTheirCodeAndMessage) {
  EXPECT_CALL(admin_, Backup(_, _, _))
      .WillOnce(Return(grpc::Status(
          grpc::StatusCode::FAILED_PRECONDITION,
          "nothing to back up: is the service on the right data volume?")));
  absl::StatusOr<std::string> out = Run({"backup", "/backups/a.db"});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(out.status().message()),
              HasSubstr("right data volume"));
  EXPECT_NE(ExitCodeFor(out.status()), 0);
  EXPECT_EQ(Run({"backup"}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(AdminCliTest, HealthNotServingIsUnavailable) {
  grpc::health::v1::HealthCheckResponse resp;
  resp.set_status(grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_CALL(health_, Check(_, _, _))
      .WillOnce(DoAll(SetArgPointee<2>(resp), Return(grpc::Status::OK)));
  absl::StatusOr<std::string> out = Run({"health"});
  EXPECT_EQ(out.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(out.status().message()), HasSubstr("NOT_SERVING"));
}

}  // namespace
}  // namespace parley
