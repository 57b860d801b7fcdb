// The gRPC surface of parley-service, end to end in process: a Server on
// port 0 addresses with a temporary data directory, real gRPC clients.
#include "service/server.h"

#include <stdlib.h>

#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/jwt.h"
#include "common/metrics.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"
#include "gtest/gtest.h"
#include "parley/v1/admin.grpc.pb.h"
#include "parley/v1/gateway_link.grpc.pb.h"
#include "service/bus_router.h"
#include "service/executor.h"
#include "service/local_router.h"
#include "service/messaging.h"
#include "service/nats_bus.h"
#include "service/nats_server_process.h"
#include "service/recording_link_stream.h"
#include "service/service_metrics.h"
#include "service/store_url.h"

namespace parley::service {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kSecret[] = "server-test-secret";
constexpr char kAdminKey[] = "server-test-admin-key";

// A gateway's end of one GatewayLink stream: writes batches, and a reader
// thread collects every event for the test to wait on.
class LinkClient {
 public:
  explicit LinkClient(const std::string& address)
      : stub_(v1::GatewayLink::NewStub(
            grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))),
        stream_(stub_->Connect(&context_)) {
    reader_ = std::thread([this] {
      v1::ServiceBatch batch;
      while (stream_->Read(&batch)) {
        absl::MutexLock lock(&mu_);
        for (const v1::ServiceEvent& e : batch.events()) events_.push_back(e);
      }
      absl::MutexLock lock(&mu_);
      ended_ = true;
    });
  }

  ~LinkClient() {
    context_.TryCancel();
    reader_.join();
  }

  bool Write(std::vector<v1::GatewayEvent> events) {
    v1::GatewayBatch batch;
    for (auto& e : events) *batch.add_events() = std::move(e);
    return stream_->Write(batch);
  }

  void Hello(const std::string& gateway_id = "gw-test") {
    v1::GatewayEvent e;
    e.mutable_hello()->set_gateway_id(gateway_id);
    ASSERT_TRUE(Write({e}));
  }

  // Opens a session and waits for its answer.
  v1::ServiceEvent Open(const std::string& session, const std::string& token,
                        uint64_t resume_after = 0, bool reannounce = false) {
    v1::GatewayEvent e;
    e.mutable_open()->set_session_id(session);
    e.mutable_open()->set_token(token);
    e.mutable_open()->set_peer_address("10.0.0.1:1234");
    e.mutable_open()->set_resume_after(resume_after);
    e.mutable_open()->set_reannounce(reannounce);
    EXPECT_TRUE(Write({e}));
    v1::ServiceEvent answer;
    EXPECT_TRUE(WaitFor([&](const v1::ServiceEvent& ev) {
      if ((ev.has_accepted() && ev.accepted().session_id() == session) ||
          (ev.has_rejected() && ev.rejected().session_id() == session)) {
        answer = ev;
        return true;
      }
      return false;
    })) << "no answer for "
        << session;
    return answer;
  }

  void Frame(const std::string& session, const v1::ClientFrame& frame) {
    v1::GatewayEvent e;
    e.mutable_frame()->set_session_id(session);
    *e.mutable_frame()->mutable_frame() = frame;
    ASSERT_TRUE(Write({e}));
  }

  void Send(const std::string& session, const std::string& to,
            const std::string& client_msg_id, const std::string& text,
            bool group = false) {
    v1::ClientFrame f;
    f.mutable_send()->set_client_msg_id(client_msg_id);
    if (group) {
      f.mutable_send()->mutable_to()->set_group(to);
    } else {
      f.mutable_send()->mutable_to()->set_user(to);
    }
    f.mutable_send()->set_text(text);
    Frame(session, f);
  }

  // Waits until some event satisfies `match`; false after 10 s.
  bool WaitFor(const std::function<bool(const v1::ServiceEvent&)>& match) {
    absl::MutexLock lock(&mu_);
    size_t seen = 0;
    bool found = false;
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      for (; seen < events_.size() && !found; ++seen) {
        found = match(events_[seen]);
      }
      return found || ended_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Seconds(10));
    return found;
  }

  // Waits until `session` received `n` frames of `kind`; returns them.
  std::vector<v1::ServerFrame> WaitForFrames(const std::string& session,
                                             v1::ServerFrame::FrameCase kind,
                                             size_t n) {
    std::vector<v1::ServerFrame> out;
    WaitFor([&](const v1::ServiceEvent& e) {
      if (!e.has_delivery() || e.delivery().frame().frame_case() != kind) {
        return false;
      }
      for (int i = 0; i < e.delivery().session_ids_size(); ++i) {
        if (e.delivery().session_ids(i) == session) {
          out.push_back(FrameForSession(e.delivery(), i));
        }
      }
      return out.size() >= n;
    });
    return out;
  }

  // Waits for the server to end the stream; returns its status.
  grpc::Status Finish() {
    {
      absl::MutexLock lock(&mu_);
      auto ended = [this]()
                       ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return ended_; };
      mu_.AwaitWithTimeout(absl::Condition(&ended), absl::Seconds(10));
    }
    stream_->WritesDone();
    return stream_->Finish();
  }

  std::vector<v1::ServiceEvent> events() {
    absl::MutexLock lock(&mu_);
    return events_;
  }

 private:
  std::unique_ptr<v1::GatewayLink::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<v1::GatewayBatch, v1::ServiceBatch>>
      stream_;
  std::thread reader_;
  absl::Mutex mu_;
  std::vector<v1::ServiceEvent> events_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
};

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    data_dir_ = ::testing::TempDir() + "/server_test.XXXXXX";
    ASSERT_NE(mkdtemp(data_dir_.data()), nullptr);
    ServerOptions& options = options_;
    options.link_address = "127.0.0.1:0";
    options.admin_address = "127.0.0.1:0";
    options.metrics_address = "127.0.0.1:0";
    options.store.url = SqliteInDataDir(data_dir_);
    options.token_secret = kSecret;
    options.admin_key = kAdminKey;
    options.max_sessions_per_user = 3;
    options.messaging.max_group_members = 3;
    options.admin.max_page_size = 2;
    options.messaging.max_page_size = 2;
    options.messaging.default_page_size = 2;
    options.messaging.max_text_bytes = 32;
    options.admin.max_text_bytes = 32;
    options.shutdown_timeout = absl::Seconds(5);
    auto server = Server::Start(options, registry_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server).value();
    admin_ = v1::Admin::NewStub(grpc::CreateChannel(
        server_->admin_address(), grpc::InsecureChannelCredentials()));
    for (const char* id : {"alice", "bob", "carol"}) {
      v1::CreateUserRequest req;
      req.set_id(id);
      req.set_display_name(std::string("User ") + id);
      v1::User user;
      grpc::ClientContext ctx;
      Authorize(ctx);
      ASSERT_TRUE(admin_->CreateUser(&ctx, req, &user).ok());
    }
  }

  static void Authorize(grpc::ClientContext& ctx,
                        const std::string& key = kAdminKey) {
    ctx.AddMetadata("authorization", "Bearer " + key);
  }

  std::string Token(const std::string& user) {
    return MintToken({user, absl::Now() + absl::Hours(1), absl::Now(), "web"},
                     kSecret);
  }

  std::unique_ptr<LinkClient> Link() {
    auto link = std::make_unique<LinkClient>(server_->link_address());
    link->Hello();
    return link;
  }

  // A unary call through the generic stub with raw protobuf bytes.
  grpc::Status RawUnary(const std::string& address, const std::string& method,
                        const std::string& request, std::string* response) {
    auto channel =
        grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
    grpc::GenericStub stub(channel);
    grpc::ClientContext ctx;
    grpc::Slice slice(request);
    grpc::ByteBuffer req(&slice, 1), resp;
    absl::Notification done;
    grpc::Status status;
    stub.UnaryCall(&ctx, method, grpc::StubOptions(), &req, &resp,
                   [&](grpc::Status s) {
                     status = std::move(s);
                     done.Notify();
                   });
    done.WaitForNotification();
    std::vector<grpc::Slice> slices;
    if (status.ok() && resp.Dump(&slices).ok()) {
      for (const grpc::Slice& s : slices) {
        response->append(reinterpret_cast<const char*>(s.begin()), s.size());
      }
    }
    return status;
  }

  std::string data_dir_;
  ServerOptions options_;
  Registry registry_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<v1::Admin::Stub> admin_;
};

TEST_F(ServerTest, AdminCallsWithoutTheKeyAreUnauthenticatedAndChangeNothing) {
  v1::CreateUserRequest req;
  req.set_id("mallory");
  v1::User user;
  {
    grpc::ClientContext ctx;
    grpc::Status s = admin_->CreateUser(&ctx, req, &user);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_THAT(s.error_message(), HasSubstr("authorization"));
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx, "wrong-key");
    EXPECT_EQ(admin_->CreateUser(&ctx, req, &user).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", kAdminKey);  // No "Bearer ".
    EXPECT_EQ(admin_->CreateUser(&ctx, req, &user).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  grpc::ClientContext ctx;
  Authorize(ctx);
  v1::GetUserRequest get;
  get.set_id("mallory");
  EXPECT_EQ(admin_->GetUser(&ctx, get, &user).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServerTest, AdminUserCallsReturnPreciseStatuses) {
  v1::User user;
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::CreateUserRequest req;
    req.set_id("alice");
    grpc::Status s = admin_->CreateUser(&ctx, req, &user);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
    EXPECT_THAT(s.error_message(), HasSubstr("alice"));
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::CreateUserRequest req;
    req.set_id("no spaces");
    EXPECT_EQ(admin_->CreateUser(&ctx, req, &user).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::GetUserRequest req;
    req.set_id("bob");
    ASSERT_TRUE(admin_->GetUser(&ctx, req, &user).ok());
    EXPECT_EQ(user.display_name(), "User bob");
    EXPECT_GT(user.created_at().seconds(), 0);
  }
  v1::ListUsersResponse page;
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::ListUsersRequest req;
    req.set_page_size(2);
    ASSERT_TRUE(admin_->ListUsers(&ctx, req, &page).ok());
    ASSERT_EQ(page.users_size(), 2);
    EXPECT_EQ(page.users(0).id(), "alice");
    EXPECT_EQ(page.next_page_token(), "bob");
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::ListUsersRequest req;
    req.set_page_size(2);
    req.set_page_token(page.next_page_token());
    ASSERT_TRUE(admin_->ListUsers(&ctx, req, &page).ok());
    ASSERT_EQ(page.users_size(), 1);
    EXPECT_EQ(page.users(0).id(), "carol");
    EXPECT_TRUE(page.next_page_token().empty());
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::DeleteUserRequest req;
    req.set_id("carol");
    v1::DeleteUserResponse resp;
    ASSERT_TRUE(admin_->DeleteUser(&ctx, req, &resp).ok());
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::DeleteUserRequest req;
    req.set_id("carol");
    v1::DeleteUserResponse resp;
    EXPECT_EQ(admin_->DeleteUser(&ctx, req, &resp).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
}

TEST_F(ServerTest, AdminListBlocksListsAUsersBlocks) {
  ASSERT_TRUE(*server_->store().SetBlocked("alice", "carol", true, 10));
  ASSERT_TRUE(*server_->store().SetBlocked("alice", "bob", true, 10));
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::ListBlocksRequest req;
    req.set_id("alice");
    v1::ListBlocksResponse resp;
    ASSERT_TRUE(admin_->ListBlocks(&ctx, req, &resp).ok());
    EXPECT_THAT(resp.users(), ElementsAre("bob", "carol"));
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::ListBlocksRequest req;
    req.set_id("nobody");
    v1::ListBlocksResponse resp;
    grpc::Status s = admin_->ListBlocks(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_THAT(s.error_message(), HasSubstr("nobody"));
  }
}

TEST_F(ServerTest, AdminGroupCallsEnforceMembersAndExistence) {
  v1::Group group;
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::CreateGroupRequest req;
    req.set_id("team");
    req.add_members("alice");
    req.add_members("ghost");
    grpc::Status s = admin_->CreateGroup(&ctx, req, &group);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
    EXPECT_THAT(s.error_message(), HasSubstr("ghost"));
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::CreateGroupRequest req;
    req.set_id("team");
    req.set_display_name("Team");
    req.add_members("bob");
    req.add_members("alice");
    ASSERT_TRUE(admin_->CreateGroup(&ctx, req, &group).ok());
    EXPECT_THAT(group.members(), ElementsAre("alice", "bob"));
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::AddMembersRequest req;
    req.set_group_id("team");
    req.add_user_ids("carol");
    ASSERT_TRUE(admin_->AddMembers(&ctx, req, &group).ok());
    EXPECT_THAT(group.members(), ElementsAre("alice", "bob", "carol"));
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::RemoveMembersRequest req;
    req.set_group_id("team");
    req.add_user_ids("bob");
    ASSERT_TRUE(admin_->RemoveMembers(&ctx, req, &group).ok());
    EXPECT_THAT(group.members(), ElementsAre("alice", "carol"));
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::GetGroupRequest req;
    req.set_id("nope");
    EXPECT_EQ(admin_->GetGroup(&ctx, req, &group).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::ListGroupsResponse resp;
    ASSERT_TRUE(admin_->ListGroups(&ctx, v1::ListGroupsRequest(), &resp).ok());
    ASSERT_EQ(resp.groups_size(), 1);
    EXPECT_EQ(resp.groups(0).display_name(), "Team");
  }
  {
    // Adding a member again changes nothing and stores no event.
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::AddMembersRequest req;
    req.set_group_id("team");
    req.add_user_ids("carol");
    ASSERT_TRUE(admin_->AddMembers(&ctx, req, &group).ok());
    EXPECT_THAT(group.members(), ElementsAre("alice", "carol"));
  }
  // Each change is an operator's group event in the conversation.
  grpc::ClientContext ctx;
  Authorize(ctx);
  v1::GetHistoryRequest req;
  req.set_conversation("g:team");
  v1::GetHistoryResponse history;
  ASSERT_TRUE(admin_->GetHistory(&ctx, req, &history).ok());
  ASSERT_EQ(history.messages_size(), 3);
  std::vector<v1::GroupEventType> types;
  for (const v1::Message& m : history.messages()) {
    EXPECT_EQ(m.kind(), v1::MESSAGE_KIND_GROUP_EVENT);
    EXPECT_EQ(m.from(), "");
    EXPECT_EQ(m.group_event().actor(), "");
    types.push_back(m.group_event().type());
  }
  EXPECT_THAT(types, ElementsAre(v1::GROUP_EVENT_TYPE_CREATED,
                                 v1::GROUP_EVENT_TYPE_MEMBERS_ADDED,
                                 v1::GROUP_EVENT_TYPE_MEMBERS_REMOVED));
  EXPECT_EQ(history.messages(0).group_event().title(), "Team");
  EXPECT_THAT(history.messages(2).group_event().users(), ElementsAre("bob"));
}

TEST_F(ServerTest, IssuedTokenOpensASessionAndUnknownUsersGetNone) {
  v1::IssueTokenResponse token;
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::IssueTokenRequest req;
    req.set_user_id("ghost");
    EXPECT_EQ(admin_->IssueToken(&ctx, req, &token).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  grpc::ClientContext ctx;
  Authorize(ctx);
  v1::IssueTokenRequest req;
  req.set_user_id("alice");
  req.set_ttl_seconds(60);
  req.set_device("laptop");
  ASSERT_TRUE(admin_->IssueToken(&ctx, req, &token).ok());
  EXPECT_NEAR(token.expires_at().seconds(),
              absl::ToUnixSeconds(absl::Now()) + 60, 2);
  auto link = Link();
  v1::ServiceEvent answer = link->Open("s1", token.token());
  ASSERT_TRUE(answer.has_accepted());
  EXPECT_EQ(answer.accepted().user_id(), "alice");
  EXPECT_EQ(answer.accepted().device(), "laptop");

  grpc::ClientContext list_ctx;
  Authorize(list_ctx);
  v1::ListSessionsResponse sessions;
  ASSERT_TRUE(
      admin_->ListSessions(&list_ctx, v1::ListSessionsRequest(), &sessions)
          .ok());
  ASSERT_EQ(sessions.sessions_size(), 1);
  EXPECT_EQ(sessions.sessions(0).gateway_id(), "gw-test");
  EXPECT_EQ(sessions.sessions(0).peer_address(), "10.0.0.1:1234");
}

TEST_F(ServerTest, LinkRejectsEachBadTokenWithItsReason) {
  auto link = Link();
  EXPECT_EQ(link->Open("s1", "garbage").rejected().reason(),
            v1::REJECT_REASON_TOKEN_MALFORMED);
  EXPECT_EQ(link->Open("s2", MintToken({"alice", absl::Now() + absl::Hours(1),
                                        absl::Now(), ""},
                                       "wrong"))
                .rejected()
                .reason(),
            v1::REJECT_REASON_TOKEN_BAD_SIGNATURE);
  EXPECT_EQ(link->Open("s3", MintToken({"alice", absl::Now() - absl::Hours(1),
                                        absl::Now(), ""},
                                       kSecret))
                .rejected()
                .reason(),
            v1::REJECT_REASON_TOKEN_EXPIRED);
  EXPECT_EQ(link->Open("s4", Token("ghost")).rejected().reason(),
            v1::REJECT_REASON_UNKNOWN_USER);
  for (const char* s : {"a", "b", "c"}) {
    ASSERT_TRUE(link->Open(s, Token("bob")).has_accepted());
  }
  EXPECT_EQ(link->Open("d", Token("bob")).rejected().reason(),
            v1::REJECT_REASON_TOO_MANY_SESSIONS);
}

TEST_F(ServerTest, LinkSendsInitialMetadataBeforeAnyEvent) {
  auto stub = v1::GatewayLink::NewStub(grpc::CreateChannel(
      server_->link_address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  auto stream = stub->Connect(&context);
  absl::Notification arrived;
  std::thread waiter([&] {
    stream->WaitForInitialMetadata();
    arrived.Notify();
  });
  EXPECT_TRUE(arrived.WaitForNotificationWithTimeout(absl::Seconds(10)));
  context.TryCancel();
  waiter.join();
}

TEST_F(ServerTest, LinkWithoutHelloFirstIsInvalidArgument) {
  LinkClient link(server_->link_address());
  v1::GatewayEvent e;
  e.mutable_open()->set_session_id("s1");
  ASSERT_TRUE(link.Write({e}));
  EXPECT_EQ(link.Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ServerTest, SendIsAckedAndDeliveredToTwoDevicesAndIdempotent) {
  auto link = Link();
  ASSERT_TRUE(link->Open("a1", Token("alice")).has_accepted());
  ASSERT_TRUE(link->Open("b1", Token("bob")).has_accepted());
  ASSERT_TRUE(link->Open("b2", Token("bob")).has_accepted());
  link->Send("a1", "bob", "c1", "hello bob");
  auto acks = link->WaitForFrames("a1", v1::ServerFrame::kAck, 1);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].ack().seq(), 1u);
  EXPECT_EQ(acks[0].ack().inbox_seq(), 1u);
  for (const char* s : {"b1", "b2"}) {
    auto messages = link->WaitForFrames(s, v1::ServerFrame::kMessage, 1);
    ASSERT_EQ(messages.size(), 1u) << s;
    EXPECT_EQ(messages[0].message().text(), "hello bob");
    EXPECT_EQ(messages[0].message().inbox_seq(), 1u);
  }
  // The resend after a lost Ack: the same Ack, nothing new stored.
  link->Send("a1", "bob", "c1", "hello bob");
  acks = link->WaitForFrames("a1", v1::ServerFrame::kAck, 2);
  ASSERT_EQ(acks.size(), 2u);
  EXPECT_EQ(acks[1].ack().message_id(), acks[0].ack().message_id());
  link->Send("a1", "bob", "c2", "second");
  auto messages = link->WaitForFrames("b1", v1::ServerFrame::kMessage, 2);
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[1].message().text(), "second");
  EXPECT_EQ(messages[1].message().inbox_seq(), 2u);

  grpc::ClientContext ctx;
  Authorize(ctx);
  v1::GetHistoryRequest req;
  req.set_conversation("d:alice:bob");
  v1::GetHistoryResponse history;
  ASSERT_TRUE(admin_->GetHistory(&ctx, req, &history).ok());
  ASSERT_EQ(history.messages_size(), 2);
  EXPECT_EQ(history.messages(0).text(), "hello bob");
  EXPECT_EQ(history.messages(1).seq(), 2u);
}

TEST_F(ServerTest, AdminListsAUsersConversationsWithUnreadCounts) {
  auto link = Link();
  ASSERT_TRUE(link->Open("a1", Token("alice")).has_accepted());
  link->Send("a1", "bob", "c1", "one");
  link->Send("a1", "bob", "c2", "two");
  link->WaitForFrames("a1", v1::ServerFrame::kAck, 2);
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::ListConversationsRequest req;
    req.set_user_id("bob");
    v1::ListConversationsResponse resp;
    ASSERT_TRUE(admin_->ListConversations(&ctx, req, &resp).ok());
    ASSERT_EQ(resp.conversations_size(), 1);
    EXPECT_EQ(resp.conversations(0).id(), "d:alice:bob");
    EXPECT_EQ(resp.conversations(0).peer(), "alice");
    EXPECT_EQ(resp.conversations(0).unread(), 2u);
    EXPECT_EQ(resp.conversations(0).last_message().text(), "two");
    EXPECT_TRUE(resp.next_page_token().empty());
  }
  for (const auto& [user, code] :
       std::vector<std::pair<std::string, grpc::StatusCode>>{
           {"nobody", grpc::StatusCode::NOT_FOUND},
           {"bad id!", grpc::StatusCode::INVALID_ARGUMENT}}) {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::ListConversationsRequest req;
    req.set_user_id(user);
    v1::ListConversationsResponse resp;
    EXPECT_EQ(admin_->ListConversations(&ctx, req, &resp).error_code(), code)
        << user;
  }
}

TEST_F(ServerTest, SyncAfterAGapReturnsWhatWasMissed) {
  auto link = Link();
  ASSERT_TRUE(link->Open("a1", Token("alice")).has_accepted());
  for (int i = 1; i <= 3; ++i) {
    link->Send("a1", "bob", "c" + std::to_string(i), "m" + std::to_string(i));
  }
  link->WaitForFrames("a1", v1::ServerFrame::kAck, 3);
  ASSERT_TRUE(link->Open("b1", Token("bob")).has_accepted());
  v1::ClientFrame sync;
  sync.mutable_sync()->set_after_seq(1);
  link->Frame("b1", sync);
  auto synced = link->WaitForFrames("b1", v1::ServerFrame::kSynced, 1);
  ASSERT_EQ(synced.size(), 1u);
  ASSERT_EQ(synced[0].synced().messages_size(), 2);
  EXPECT_EQ(synced[0].synced().messages(0).text(), "m2");
  EXPECT_EQ(synced[0].synced().messages(1).inbox_seq(), 3u);
  EXPECT_FALSE(synced[0].synced().more());
}

TEST_F(ServerTest, GroupFanOutReceiptsTypingAndPresence) {
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::CreateGroupRequest req;
    req.set_id("team");
    for (const char* m : {"alice", "bob", "carol"}) req.add_members(m);
    v1::Group group;
    ASSERT_TRUE(admin_->CreateGroup(&ctx, req, &group).ok());
  }
  auto link = Link();
  ASSERT_TRUE(link->Open("b1", Token("bob")).has_accepted());
  ASSERT_TRUE(link->Open("c1", Token("carol")).has_accepted());
  ASSERT_TRUE(link->Open("a1", Token("alice")).has_accepted());
  auto presence = link->WaitForFrames("b1", v1::ServerFrame::kPresence, 2);
  ASSERT_EQ(presence.size(), 2u);  // carol, then alice.
  EXPECT_EQ(presence[1].presence().user(), "alice");
  EXPECT_TRUE(presence[1].presence().online());

  link->Send("a1", "team", "g1", "hi team", true);
  for (const char* s : {"b1", "c1"}) {
    auto m = link->WaitForFrames(s, v1::ServerFrame::kMessage, 1);
    ASSERT_EQ(m.size(), 1u) << s;
    EXPECT_EQ(m[0].message().conversation(), "g:team");
  }
  v1::ClientFrame read;
  read.mutable_read()->set_conversation("g:team");
  read.mutable_read()->set_seq(1);
  link->Frame("b1", read);
  for (const char* s : {"a1", "c1"}) {
    auto r = link->WaitForFrames(s, v1::ServerFrame::kReceipt, 1);
    ASSERT_EQ(r.size(), 1u) << s;
    EXPECT_EQ(r[0].receipt().user(), "bob");
    EXPECT_EQ(r[0].receipt().seq(), 1u);
  }
  v1::ClientFrame typing;
  typing.mutable_typing()->mutable_to()->set_group("team");
  link->Frame("c1", typing);
  auto t = link->WaitForFrames("a1", v1::ServerFrame::kTyping, 1);
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].typing().from(), "carol");

  v1::GatewayEvent close;
  close.mutable_close()->set_session_id("a1");
  ASSERT_TRUE(link->Write({close}));
  presence = link->WaitForFrames("b1", v1::ServerFrame::kPresence, 3);
  ASSERT_EQ(presence.size(), 3u);
  EXPECT_EQ(presence[2].presence().user(), "alice");
  EXPECT_FALSE(presence[2].presence().online());
}

TEST_F(ServerTest, ReannounceOnANewStreamResumesAfterTheLastDelivered) {
  uint64_t last = 0;
  {
    auto link = Link();
    ASSERT_TRUE(link->Open("b1", Token("bob")).has_accepted());
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::SendMessageRequest req;
    req.set_from("alice");
    req.mutable_to()->set_user("bob");
    req.set_text("before");
    v1::Ack ack;
    ASSERT_TRUE(admin_->SendMessage(&ctx, req, &ack).ok());
    auto m = link->WaitForFrames("b1", v1::ServerFrame::kMessage, 1);
    ASSERT_EQ(m.size(), 1u);
    last = m[0].message().inbox_seq();
  }  // The stream breaks (cancelled).
  for (const char* text : {"while away 1", "while away 2"}) {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::SendMessageRequest req;
    req.set_from("alice");
    req.mutable_to()->set_user("bob");
    req.set_text(text);
    v1::Ack ack;
    ASSERT_TRUE(admin_->SendMessage(&ctx, req, &ack).ok());
  }
  auto link = Link();
  v1::ServiceEvent answer = link->Open("b1", Token("bob"), last, true);
  ASSERT_TRUE(answer.has_accepted());
  EXPECT_EQ(answer.accepted().inbox_seq(), 3u);
  auto m = link->WaitForFrames("b1", v1::ServerFrame::kMessage, 2);
  ASSERT_EQ(m.size(), 2u);
  EXPECT_EQ(m[0].message().text(), "while away 1");
  EXPECT_EQ(m[1].message().inbox_seq(), 3u);
}

TEST_F(ServerTest, DeletingAUserClosesTheirSessions) {
  auto link = Link();
  ASSERT_TRUE(link->Open("b1", Token("bob")).has_accepted());
  ASSERT_TRUE(link->Open("b2", Token("bob")).has_accepted());
  grpc::ClientContext ctx;
  Authorize(ctx);
  v1::DeleteUserRequest req;
  req.set_id("bob");
  v1::DeleteUserResponse resp;
  ASSERT_TRUE(admin_->DeleteUser(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.sessions_closed(), 2u);
  v1::DisconnectOrder order;
  ASSERT_TRUE(link->WaitFor([&](const v1::ServiceEvent& e) {
    if (e.has_disconnect()) order = e.disconnect();
    return e.has_disconnect();
  }));
  EXPECT_THAT(order.session_ids(), ElementsAre("b1", "b2"));
  EXPECT_FALSE(order.reconnect());
  EXPECT_EQ(link->Open("b3", Token("bob")).rejected().reason(),
            v1::REJECT_REASON_UNKNOWN_USER);
}

TEST_F(ServerTest, AdminLimitsAreEnforcedWithPreciseStatuses) {
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::CreateGroupRequest req;
    req.set_id("big");
    for (const char* m : {"alice", "bob", "carol"}) req.add_members(m);
    v1::Group group;
    ASSERT_TRUE(admin_->CreateGroup(&ctx, req, &group).ok());
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::CreateUserRequest req;
    req.set_id("dave");
    v1::User user;
    ASSERT_TRUE(admin_->CreateUser(&ctx, req, &user).ok());
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::AddMembersRequest req;
    req.set_group_id("big");
    req.add_user_ids("dave");
    v1::Group group;
    grpc::Status s = admin_->AddMembers(&ctx, req, &group);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_THAT(s.error_message(), HasSubstr("limit is 3"));
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::SendMessageRequest req;
    req.set_from("alice");
    req.mutable_to()->set_user("bob");
    req.set_text(std::string(33, 'x'));
    v1::Ack ack;
    grpc::Status s = admin_->SendMessage(&ctx, req, &ack);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_THAT(s.error_message(), HasSubstr("32"));
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::SendMessageRequest req;
    req.set_from("alice");
    req.mutable_to()->set_group("nope");
    req.set_text("hi");
    v1::Ack ack;
    EXPECT_EQ(admin_->SendMessage(&ctx, req, &ack).error_code(),
              grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::BroadcastRequest req;
    v1::BroadcastResponse resp;
    EXPECT_EQ(admin_->Broadcast(&ctx, req, &resp).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::IssueTokenRequest req;
    req.set_user_id("alice");
    req.set_ttl_seconds(400 * 24 * 3600);
    v1::IssueTokenResponse resp;
    EXPECT_EQ(admin_->IssueToken(&ctx, req, &resp).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::ListUsersRequest req;
    req.set_page_size(500);  // Capped at 2.
    v1::ListUsersResponse resp;
    ASSERT_TRUE(admin_->ListUsers(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.users_size(), 2);
    EXPECT_FALSE(resp.next_page_token().empty());
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::GetHistoryRequest req;
    req.set_conversation("d:bob:alice");
    v1::GetHistoryResponse resp;
    grpc::Status s = admin_->GetHistory(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("d:alice:bob"));
  }
}

TEST_F(ServerTest, DisconnectSendsAnOrderWithCodeReasonAndReconnectFlag) {
  auto link = Link();
  ASSERT_TRUE(link->Open("b1", Token("bob")).has_accepted());
  grpc::ClientContext ctx;
  Authorize(ctx);
  v1::DisconnectRequest req;
  req.set_user_id("bob");
  req.set_reason("maintenance");
  req.set_reconnect(true);
  v1::DisconnectResponse resp;
  ASSERT_TRUE(admin_->Disconnect(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.sessions_closed(), 1u);
  v1::DisconnectOrder order;
  ASSERT_TRUE(link->WaitFor([&](const v1::ServiceEvent& e) {
    if (e.has_disconnect()) order = e.disconnect();
    return e.has_disconnect();
  }));
  EXPECT_THAT(order.session_ids(), ElementsAre("b1"));
  EXPECT_EQ(order.close_code(), 4003u);
  EXPECT_EQ(order.reason(), "reconnect: maintenance");
  EXPECT_TRUE(order.reconnect());
  grpc::ClientContext bad;
  Authorize(bad);
  v1::DisconnectRequest both;
  both.set_user_id("bob");
  both.set_session_id("b1");
  EXPECT_EQ(admin_->Disconnect(&bad, both, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(ServerTest, BroadcastAndStatsSeeTheGateway) {
  auto link = Link();
  ASSERT_TRUE(link->Open("b1", Token("bob")).has_accepted());
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::BroadcastRequest req;
    req.set_text("hello everyone");
    v1::BroadcastResponse resp;
    ASSERT_TRUE(admin_->Broadcast(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.gateways(), 1u);
    EXPECT_EQ(resp.sessions(), 1u);
  }
  ASSERT_TRUE(link->WaitFor([](const v1::ServiceEvent& e) {
    return e.has_broadcast() &&
           e.broadcast().frame().announcement().text() == "hello everyone";
  }));
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::SendMessageRequest req;
    req.set_from("alice");
    req.mutable_to()->set_user("bob");
    req.set_text("counted");
    v1::Ack ack;
    ASSERT_TRUE(admin_->SendMessage(&ctx, req, &ack).ok());
  }
  grpc::ClientContext ctx;
  Authorize(ctx);
  v1::Stats stats;
  ASSERT_TRUE(admin_->GetStats(&ctx, v1::GetStatsRequest(), &stats).ok());
  EXPECT_EQ(stats.gateways(), 1u);
  EXPECT_EQ(stats.live_sessions(), 1u);
  EXPECT_EQ(stats.users(), 3u);
  EXPECT_EQ(stats.stored_messages(), 1u);
  EXPECT_GT(stats.messages_per_second(), 0.0);
}

TEST_F(ServerTest, BackupWritesACheckedCopyOfTheServedStore) {
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::SendMessageRequest req;
    req.set_from("alice");
    req.mutable_to()->set_user("bob");
    req.set_text("kept");
    v1::Ack ack;
    ASSERT_TRUE(admin_->SendMessage(&ctx, req, &ack).ok());
  }
  v1::BackupRequest req;
  req.set_path(data_dir_ + "/backup.db");
  v1::BackupResponse resp;
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    grpc::Status status = admin_->Backup(&ctx, req, &resp);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }
  EXPECT_EQ(resp.path(), req.path());
  EXPECT_EQ(resp.users(), 3u);
  EXPECT_EQ(resp.messages(), 1u);
  EXPECT_EQ(resp.last_message_id(), "1");
  EXPECT_GT(resp.size_bytes(), 0u);
  EXPECT_EQ(resp.generation(), server_->store().Generation());
  {
    grpc::ClientContext ctx;
    Authorize(ctx);
    v1::Stats stats;
    ASSERT_TRUE(admin_->GetStats(&ctx, v1::GetStatsRequest(), &stats).ok());
    EXPECT_EQ(stats.store_generation(), resp.generation());
  }
  grpc::ClientContext ctx;
  Authorize(ctx);
  EXPECT_EQ(admin_->Backup(&ctx, req, &resp).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);
}

TEST_F(ServerTest, SecondServerOnTheSameDataDirFailsAtStart) {
  ServerOptions options = options_;
  Registry registry;
  auto second = Server::Start(options, registry);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(second.status().message()),
              ::testing::HasSubstr(data_dir_));
}

TEST_F(ServerTest, HealthIsServingAndReflectionListsTheAdminService) {
  for (const std::string& address :
       {server_->link_address(), server_->admin_address()}) {
    std::string response;
    ASSERT_TRUE(
        RawUnary(address, "/grpc.health.v1.Health/Check", "", &response).ok());
    EXPECT_EQ(response, std::string("\x08\x01", 2)) << "SERVING";
  }
  // ServerReflectionRequest{list_services: ""} on the bidi stream.
  auto channel = grpc::CreateChannel(server_->admin_address(),
                                     grpc::InsecureChannelCredentials());
  grpc::GenericStub stub(channel);
  grpc::CompletionQueue cq;
  grpc::ClientContext ctx;
  auto call = stub.PrepareCall(
      &ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
      &cq);
  void* tag = nullptr;
  bool ok = false;
  call->StartCall(reinterpret_cast<void*>(1));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  grpc::Slice slice(std::string("\x3a\x00", 2));
  grpc::ByteBuffer request(&slice, 1);
  call->Write(request, reinterpret_cast<void*>(2));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  grpc::ByteBuffer reply;
  call->Read(&reply, reinterpret_cast<void*>(3));
  ASSERT_TRUE(cq.Next(&tag, &ok) && ok);
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(reply.Dump(&slices).ok());
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  EXPECT_THAT(bytes, HasSubstr("parley.v1.Admin"));
  ctx.TryCancel();
  grpc::Status status;
  call->Finish(&status, reinterpret_cast<void*>(4));
  while (cq.Next(&tag, &ok) && tag != reinterpret_cast<void*>(4)) {
  }
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
}

TEST_F(ServerTest, MetricsEndpointServesPrometheusText) {
  // The HTTP server is covered by http_server_test; here: the wiring.
  EXPECT_NE(server_->metrics_address(), "127.0.0.1:0");
  EXPECT_THAT(registry_.Render(), HasSubstr("parley_service_sends_total"));
}

TEST_F(ServerTest, ShutdownWritesPendingAcksThenEndsStreamsWithUnavailable) {
  auto link = Link();
  ASSERT_TRUE(link->Open("a1", Token("alice")).has_accepted());
  for (int i = 0; i < 50; ++i) {
    link->Send("a1", "bob", "c" + std::to_string(i), "x");
  }
  // Every send the service read before the drain is acked before the end.
  link->WaitForFrames("a1", v1::ServerFrame::kAck, 1);
  server_->Shutdown();
  grpc::Status status = link->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  size_t acks = 0;
  for (const v1::ServiceEvent& e : link->events()) {
    if (e.has_delivery() && e.delivery().frame().has_ack()) ++acks;
  }
  EXPECT_EQ(acks, server_->store().Stats()->messages);
  // A new stream is refused.
  LinkClient late(server_->link_address());
  v1::GatewayEvent hello;
  hello.mutable_hello()->set_gateway_id("late");
  late.Write({hello});
  EXPECT_NE(late.Finish().error_code(), grpc::StatusCode::OK);
}

TEST(ValidateServerOptionsTest, BusOptionsMustNameNatsUrlsAndASubjectPrefix) {
  ServerOptions options;
  options.token_secret = "s";
  options.admin_key = "k";
  EXPECT_TRUE(ValidateServerOptions(options).ok());
  options.bus.nats_servers = {"nats://127.0.0.1:4222", "tls://nats:4443"};
  EXPECT_TRUE(ValidateServerOptions(options).ok());
  options.bus.nats_servers = {"127.0.0.1:4222"};
  EXPECT_THAT(ValidateServerOptions(options).message(), HasSubstr("--nats"));
  options.bus.nats_servers = {"nats://127.0.0.1:4222"};
  for (const char* bad :
       {"", ".parley", "parley.", "a..b", "a b", "a.*", ">"}) {
    options.bus.subject_prefix = bad;
    EXPECT_THAT(ValidateServerOptions(options).message(),
                HasSubstr("--nats_subject_prefix"))
        << bad;
  }
  options.bus.subject_prefix = "cluster-a.parley";
  EXPECT_TRUE(ValidateServerOptions(options).ok());
}

// A service started with --nats, joined by a second replica built in the
// test over the same store and a real nats-server: the composition root's
// bus wiring, end to end.
class ServerWithNatsTest : public ServerTest {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<NatsServerProcess>> nats =
        NatsServerProcess::Start();
    ASSERT_TRUE(nats.ok()) << nats.status();
    nats_ = *std::move(nats);
    options_.bus.nats_servers = {nats_->url()};
    options_.bus.replica_id = "r1";
    options_.bus.request_timeout = absl::Milliseconds(500);
    ServerTest::SetUp();
    if (HasFatalFailure()) return;
    // Replica r2: the same store, its own router, bus and Messaging.
    Store* store = &server_->store();
    r2_local_.SetCatchUp([this, store](LocalRouter::CatchUpRequest r) {
      pool_->Post([this, store, r] {
        r2_local_.FinishCatchUp(
            r,
            ReadInboxMessages(*store, r.user, r.after_seq, r.upto_seq, 1000));
      });
    });
    NatsBusOptions nats_options;
    nats_options.servers = {nats_->url()};
    r2_bus_ = *NatsBus::Connect(nats_options);
    BusRouterOptions bus;
    bus.replica_id = "r2";
    bus.request_timeout = absl::Milliseconds(500);
    r2_router_ = std::make_unique<BusRouter>(
        &r2_local_, r2_bus_.get(), store,
        [this](std::function<void()> t) { pool_->Post(std::move(t)); }, bus);
    ASSERT_TRUE(r2_router_->Start().ok());
    MessagingOptions messaging;
    messaging.tokens = TokenVerifier::WithSecret(kSecret);
    r2_messaging_ = std::make_unique<Messaging>(store, r2_router_.get(),
                                                &r2_metrics_, messaging);
    v1::LinkHello hello;
    hello.set_gateway_id("gw-r2");
    r2_messaging_->StreamOpened(&r2_gw_, hello);
  }
  void TearDown() override {
    // No more work for the pool, then its queued work runs while r2 exists.
    if (r2_router_ != nullptr) r2_router_->Stop();
    r2_local_.SetCatchUp(nullptr);
    pool_.reset();
  }

  std::unique_ptr<NatsServerProcess> nats_;
  std::unique_ptr<ThreadPool> pool_ = std::make_unique<ThreadPool>(2);
  Registry r2_registry_;
  ServiceMetrics r2_metrics_{r2_registry_};
  LocalRouter r2_local_{4};
  std::unique_ptr<NatsBus> r2_bus_;
  std::unique_ptr<BusRouter> r2_router_;
  std::unique_ptr<Messaging> r2_messaging_;
  RecordingLinkStream r2_gw_;
};

TEST_F(ServerWithNatsTest,
       AServiceWithABusReachesAndListsAnotherReplicasSessions) {
  auto link = Link();
  ASSERT_TRUE(link->Open("a1", Token("alice")).has_accepted());
  v1::SessionOpen open;
  open.set_session_id("b1");
  open.set_token(Token("bob"));
  r2_messaging_->OpenSession(&r2_gw_, open);
  ASSERT_TRUE(r2_gw_.events().back().has_accepted());

  link->Send("a1", "bob", "c1", "over the bus");
  ASSERT_EQ(link->WaitForFrames("a1", v1::ServerFrame::kAck, 1).size(), 1u);
  ASSERT_TRUE(r2_gw_.WaitFor([](const std::vector<v1::ServiceEvent>& events) {
    for (const v1::ServiceEvent& e : events) {
      if (e.has_delivery() && e.delivery().frame().has_message()) return true;
    }
    return false;
  }));
  std::vector<v1::ServerFrame> got = r2_gw_.FramesFor("b1");
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back().message().text(), "over the bus");
  EXPECT_EQ(got.back().message().inbox_seq(), 1u);

  grpc::ClientContext list_ctx;
  Authorize(list_ctx);
  v1::ListSessionsResponse sessions;
  ASSERT_TRUE(
      admin_->ListSessions(&list_ctx, v1::ListSessionsRequest(), &sessions)
          .ok());
  std::vector<std::string> listed;
  for (const v1::SessionInfo& s : sessions.sessions()) {
    listed.push_back(s.session_id() + "@" + s.gateway_id());
  }
  EXPECT_THAT(listed, ElementsAre("a1@gw-test", "b1@gw-r2"));
  grpc::ClientContext stats_ctx;
  Authorize(stats_ctx);
  v1::Stats stats;
  ASSERT_TRUE(admin_->GetStats(&stats_ctx, v1::GetStatsRequest(), &stats).ok());
  EXPECT_EQ(stats.live_sessions(), 2u);
  EXPECT_EQ(stats.gateways(), 2u);

  grpc::ClientContext kick_ctx;
  Authorize(kick_ctx);
  v1::DisconnectRequest kick;
  kick.set_user_id("bob");
  kick.set_reason("bye");
  v1::DisconnectResponse kicked;
  ASSERT_TRUE(admin_->Disconnect(&kick_ctx, kick, &kicked).ok());
  EXPECT_EQ(kicked.sessions_closed(), 1u);
  EXPECT_TRUE(r2_gw_.events().back().has_disconnect());
}

}  // namespace
}  // namespace parley::service
