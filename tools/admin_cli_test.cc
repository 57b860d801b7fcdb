#include "tools/admin_cli.h"

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
using ::testing::HasSubstr;
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
                                  bool json = false) {
    AdminCliOptions options;
    options.admin_key = "k";
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
