// The IM rules against the Store interface: every test runs on the in-memory
// fake and on the SQLite store, with the Router and recording link streams in
// place of gateways.
#include "service/messaging.h"

#include <stdlib.h>

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/synchronization/notification.h"
#include "common/jwt.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/fake_store.h"
#include "service/local_router.h"
#include "service/recording_link_stream.h"
#include "service/sqlite_store.h"

namespace parley::service {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kSecret[] = "test-secret";

struct StoreFactory {
  std::string name;
  std::function<std::unique_ptr<Store>()> make;
};

std::vector<uint64_t> InboxSeqs(const std::vector<v1::ServerFrame>& frames) {
  std::vector<uint64_t> out;
  for (const auto& f : frames) {
    if (f.has_message()) out.push_back(f.message().inbox_seq());
  }
  return out;
}

v1::ClientFrame CreateGroupFrame(const std::string& key,
                                 const std::string& title,
                                 std::vector<std::string> members) {
  v1::ClientFrame frame;
  frame.mutable_create_group()->set_client_msg_id(key);
  frame.mutable_create_group()->set_title(title);
  for (const std::string& m : members) {
    frame.mutable_create_group()->add_members(m);
  }
  return frame;
}

v1::ClientFrame UpdateGroupFrame(const std::string& key,
                                 const std::string& group) {
  v1::ClientFrame frame;
  frame.mutable_update_group()->set_client_msg_id(key);
  frame.mutable_update_group()->set_group(group);
  return frame;
}

std::vector<v1::ServerFrame> Only(const std::vector<v1::ServerFrame>& frames,
                                  v1::ServerFrame::FrameCase kind) {
  std::vector<v1::ServerFrame> out;
  for (const auto& f : frames) {
    if (f.frame_case() == kind) out.push_back(f);
  }
  return out;
}

// A FakeStore that counts calls to the methods that may block: every one
// but Append and AdvanceReadCursor (queued writes).
class BlockingCallCounter final : public Store {
 public:
  int blocking_calls() const { return calls_.load(); }

  absl::Status CreateUser(const UserRecord& user) override {
    ++calls_;
    return inner_.CreateUser(user);
  }
  absl::StatusOr<UserRecord> GetUser(absl::string_view id) override {
    ++calls_;
    return inner_.GetUser(id);
  }
  absl::StatusOr<std::vector<UserRecord>> ListUsers(absl::string_view after_id,
                                                    int limit) override {
    ++calls_;
    return inner_.ListUsers(after_id, limit);
  }
  absl::Status DeleteUser(absl::string_view id) override {
    ++calls_;
    return inner_.DeleteUser(id);
  }
  absl::Status RevokeTokens(absl::string_view id,
                            absl::Time not_before) override {
    ++calls_;
    return inner_.RevokeTokens(id, not_before);
  }
  absl::Status CreateGroup(const GroupRecord& group,
                           size_t max_members) override {
    ++calls_;
    return inner_.CreateGroup(group, max_members);
  }
  absl::StatusOr<GroupRecord> GetGroup(absl::string_view id) override {
    ++calls_;
    return inner_.GetGroup(id);
  }
  absl::StatusOr<std::vector<GroupRecord>> ListGroups(
      absl::string_view after_id, int limit) override {
    ++calls_;
    return inner_.ListGroups(after_id, limit);
  }
  absl::StatusOr<GroupRecord> AddMembers(
      absl::string_view group_id, const std::vector<std::string>& user_ids,
      size_t max_members) override {
    ++calls_;
    return inner_.AddMembers(group_id, user_ids, max_members);
  }
  absl::StatusOr<GroupRecord> RemoveMembers(
      absl::string_view group_id,
      const std::vector<std::string>& user_ids) override {
    ++calls_;
    return inner_.RemoveMembers(group_id, user_ids);
  }
  void Append(AppendRequest request, AppendCallback done) override {
    inner_.Append(std::move(request), std::move(done));
  }
  absl::StatusOr<uint64_t> InboxHead(absl::string_view user) override {
    ++calls_;
    return inner_.InboxHead(user);
  }
  absl::StatusOr<std::vector<InboxMessage>> ReadInbox(absl::string_view user,
                                                      uint64_t after_seq,
                                                      uint64_t upto_seq,
                                                      int limit) override {
    ++calls_;
    return inner_.ReadInbox(user, after_seq, upto_seq, limit);
  }
  absl::StatusOr<HistoryPage> ReadHistory(absl::string_view conversation,
                                          uint64_t before_seq,
                                          int limit) override {
    ++calls_;
    return inner_.ReadHistory(conversation, before_seq, limit);
  }
  absl::StatusOr<uint64_t> ConversationHead(
      absl::string_view conversation) override {
    ++calls_;
    return inner_.ConversationHead(conversation);
  }
  absl::StatusOr<ConversationPage> ListConversations(
      absl::string_view user, absl::string_view page_token,
      int limit) override {
    ++calls_;
    return inner_.ListConversations(user, page_token, limit);
  }
  absl::StatusOr<uint64_t> CountUnread(absl::string_view user,
                                       absl::string_view conversation,
                                       uint64_t after_seq) override {
    ++calls_;
    return inner_.CountUnread(user, conversation, after_seq);
  }
  void AdvanceReadCursor(std::string user, std::string conversation,
                         uint64_t seq, CursorCallback done) override {
    inner_.AdvanceReadCursor(std::move(user), std::move(conversation), seq,
                             std::move(done));
  }
  absl::StatusOr<uint64_t> ReadCursor(absl::string_view user,
                                      absl::string_view conversation) override {
    ++calls_;
    return inner_.ReadCursor(user, conversation);
  }
  absl::StatusOr<std::vector<std::string>> Contacts(
      absl::string_view user, size_t max_group_members) override {
    ++calls_;
    return inner_.Contacts(user, max_group_members);
  }
  absl::StatusOr<bool> SetBlocked(absl::string_view user,
                                  absl::string_view other, bool blocked,
                                  size_t max_blocked) override {
    ++calls_;
    return inner_.SetBlocked(user, other, blocked, max_blocked);
  }
  absl::StatusOr<std::vector<std::string>> ListBlocked(
      absl::string_view user) override {
    ++calls_;
    return inner_.ListBlocked(user);
  }
  absl::StatusOr<bool> BlockedEitherWay(absl::string_view a,
                                        absl::string_view b) override {
    ++calls_;
    return inner_.BlockedEitherWay(a, b);
  }
  absl::StatusOr<StoreStats> Stats() override {
    ++calls_;
    return inner_.Stats();
  }
  const std::string& Generation() const override { return inner_.Generation(); }
  void Flush() override {
    ++calls_;
    inner_.Flush();
  }

 private:
  FakeStore inner_;
  std::atomic<int> calls_{0};
};

// The link adapter handles frames that "never block" on gRPC's own thread:
// none of them may reach a Store method that can block, and the busy one
// (Send) must be among them.
TEST(MessagingHandlesWithoutBlockingTest, ThoseFramesMakeNoBlockingStoreCall) {
  BlockingCallCounter store;
  Registry registry;
  ServiceMetrics metrics(registry);
  LocalRouter router(4);
  MessagingOptions options;
  options.tokens = TokenVerifier::WithSecret(kSecret);
  Messaging messaging(&store, &router, &metrics, options);
  const absl::Time now = absl::Now();
  for (const char* id : {"alice", "bob"}) {
    ASSERT_TRUE(store.CreateUser({id, "", now}).ok());
  }
  RecordingLinkStream gw;
  v1::LinkHello hello;
  hello.set_gateway_id("gw-1");
  messaging.StreamOpened(&gw, hello);
  v1::SessionOpen open;
  open.set_session_id("s1");
  open.set_token(
      MintToken({"alice", now + absl::Hours(1), now, "phone"}, kSecret));
  messaging.OpenSession(&gw, open);

  std::map<std::string, v1::ClientFrame> frames;
  frames["send"].mutable_send()->set_client_msg_id("c1");
  frames["send"].mutable_send()->mutable_to()->set_user("bob");
  frames["send"].mutable_send()->set_text("hi");
  frames["bad send"].mutable_send()->set_client_msg_id("c2");
  frames["ping"].mutable_ping()->set_nonce("n");
  frames["hello"].mutable_hello()->set_token("t");
  frames["empty"];
  frames["sync"].mutable_sync()->set_after_seq(0);
  frames["read"].mutable_read()->set_conversation("d:alice:bob");
  frames["read"].mutable_read()->set_seq(1);
  frames["typing"].mutable_typing()->mutable_to()->set_user("bob");
  frames["list_conversations"].mutable_list_conversations();
  frames["history"].mutable_history()->set_conversation("d:alice:bob");
  frames["edit"].mutable_edit()->set_client_msg_id("e1");
  frames["edit"].mutable_edit()->set_conversation("d:alice:bob");
  frames["edit"].mutable_edit()->set_seq(1);
  frames["edit"].mutable_edit()->set_text("hi!");
  frames["delete"].mutable_delete_()->set_client_msg_id("x1");
  frames["delete"].mutable_delete_()->set_conversation("d:alice:bob");
  frames["delete"].mutable_delete_()->set_seq(1);
  frames["block"].mutable_block()->set_user("bob");
  frames["list_blocked"].mutable_list_blocked();
  frames["create group"] = CreateGroupFrame("g1", "Team", {"bob"});
  frames["update group"] = UpdateGroupFrame("g2", "nogroup");
  frames["update group"].mutable_update_group()->mutable_leave();
  frames["get group"].mutable_get_group()->set_group("nogroup");
  int quick = 0;
  for (const auto& [name, frame] : frames) {
    v1::SessionFrame session_frame;
    session_frame.set_session_id("s1");
    *session_frame.mutable_frame() = frame;
    if (!Messaging::HandlesWithoutBlocking(session_frame)) continue;
    ++quick;
    const int before = store.blocking_calls();
    messaging.HandleFrame(&gw, session_frame);
    EXPECT_EQ(store.blocking_calls(), before) << name;
  }
  EXPECT_EQ(quick, 9);
  v1::SessionFrame send;
  *send.mutable_frame() = frames["send"];
  EXPECT_TRUE(Messaging::HandlesWithoutBlocking(send));
  // The group was created and the Send stored (the delete and the edit,
  // before it in map order, found no message).
  EXPECT_EQ(*store.InboxHead("bob"), 2u);
}

class MessagingTest : public ::testing::TestWithParam<StoreFactory> {
 protected:
  void SetUp() override {
    store_ = GetParam().make();
    MessagingOptions options;
    options.tokens = TokenVerifier::WithSecret(kSecret);
    options.max_text_bytes = 16;
    options.on_offline = [this](const StoredMessage& m,
                                const std::string& recipient,
                                uint64_t inbox_seq) {
      absl::MutexLock lock(&offline_mu_);
      offline_.push_back(
          absl::StrCat(recipient, "@", inbox_seq, ":", m.from, ":", m.text));
    };
    messaging_ = std::make_unique<Messaging>(
        store_.get(), &router_, &metrics_, options, [this] { return now_; },
        [this](absl::Duration delay, std::function<void()> task) {
          scheduled_.push_back({delay, std::move(task)});
        });
    for (const char* id : {"alice", "bob", "carol", "dave"}) {
      ASSERT_TRUE(store_->CreateUser({id, "", now_}).ok());
    }
    v1::LinkHello hello;
    hello.set_gateway_id("gw-1");
    messaging_->StreamOpened(&gw_, hello);
  }

  void TearDown() override { Settle(); }

  // Waits until every queued write has committed and its callback has run.
  void Settle() {
    if (auto* sqlite = dynamic_cast<SqliteStore*>(store_.get())) {
      sqlite->Flush();
    }
  }

  std::string Token(const std::string& user,
                    absl::Duration ttl = absl::Hours(1)) {
    return MintToken({user, now_ + ttl, now_, "phone"}, kSecret);
  }

  v1::SessionOpen OpenRequest(const std::string& session,
                              const std::string& token,
                              std::optional<uint64_t> resume_after = {}) {
    v1::SessionOpen open;
    open.set_session_id(session);
    open.set_token(token);
    open.set_peer_address("127.0.0.1:5555");
    if (resume_after.has_value()) open.set_resume_after(*resume_after);
    return open;
  }

  // Opens a session and returns the event that answered it.
  v1::ServiceEvent Open(const std::string& session, const std::string& user,
                        std::optional<uint64_t> resume_after = {},
                        RecordingLinkStream* stream = nullptr) {
    if (stream == nullptr) stream = &gw_;
    return OpenWith(OpenRequest(session, Token(user), resume_after), stream);
  }

  v1::ServiceEvent OpenWith(const v1::SessionOpen& open,
                            RecordingLinkStream* stream = nullptr) {
    if (stream == nullptr) stream = &gw_;
    const size_t before = stream->events().size();
    messaging_->OpenSession(stream, open);
    std::vector<v1::ServiceEvent> events = stream->events();
    for (size_t i = before; i < events.size(); ++i) {
      if (events[i].has_accepted() || events[i].has_rejected()) {
        return events[i];
      }
    }
    ADD_FAILURE() << "no answer to the open of " << open.session_id();
    return v1::ServiceEvent();
  }

  void Frame(const std::string& session, const v1::ClientFrame& frame,
             RecordingLinkStream* stream = nullptr) {
    v1::SessionFrame f;
    f.set_session_id(session);
    *f.mutable_frame() = frame;
    messaging_->HandleFrame(stream ? stream : &gw_, f);
  }

  void SendTo(const std::string& session, const std::string& to,
              const std::string& client_msg_id, const std::string& text = "hi",
              bool group = false) {
    v1::ClientFrame frame;
    frame.mutable_send()->set_client_msg_id(client_msg_id);
    if (group) {
      frame.mutable_send()->mutable_to()->set_group(to);
    } else {
      frame.mutable_send()->mutable_to()->set_user(to);
    }
    frame.mutable_send()->set_text(text);
    Frame(session, frame);
  }

  std::vector<v1::ServerFrame> FramesFor(const std::string& session) {
    Settle();
    return gw_.FramesFor(session);
  }

  absl::Time now_ = absl::FromUnixSeconds(1700000000);
  std::unique_ptr<Store> store_;
  Registry registry_;
  ServiceMetrics metrics_{registry_};
  LocalRouter router_{4};
  std::unique_ptr<Messaging> messaging_;
  RecordingLinkStream gw_;
  // Tasks Messaging scheduled, run by hand.
  std::vector<std::pair<absl::Duration, std::function<void()>>> scheduled_;
  // "recipient@inbox_seq:from:text" for each on_offline call.
  absl::Mutex offline_mu_;
  std::vector<std::string> offline_ ABSL_GUARDED_BY(offline_mu_);
  std::vector<std::string> Offline() {
    Settle();
    absl::MutexLock lock(&offline_mu_);
    return offline_;
  }
};

TEST_P(MessagingTest, TokensIssuedBeforeARevocationAreRefused) {
  // Token() is issued at now_.
  ASSERT_TRUE(store_->RevokeTokens("alice", now_ + absl::Seconds(1)).ok());
  v1::ServiceEvent refused = Open("s1", "alice");
  ASSERT_TRUE(refused.has_rejected());
  EXPECT_EQ(refused.rejected().reason(), v1::REJECT_REASON_TOKEN_REVOKED);
  EXPECT_THAT(refused.rejected().message(), HasSubstr("revoked"));
  // A token issued after it is fine, and other users are untouched.
  now_ += absl::Seconds(5);
  EXPECT_TRUE(Open("s2", "alice").has_accepted());
  ASSERT_TRUE(store_->RevokeTokens("bob", now_ - absl::Seconds(1)).ok());
  EXPECT_TRUE(Open("s3", "bob").has_accepted());
}

TEST_P(MessagingTest, RecipientsWithNoLiveSessionAreToldOfflineOnly) {
  ASSERT_TRUE(
      store_->CreateGroup({"team", "", {"alice", "bob", "carol"}, now_}, 10)
          .ok());
  Open("a1", "alice");
  Open("c1", "carol");
  SendTo("a1", "bob", "m1", "hi bob");
  SendTo("a1", "carol", "m2", "hi carol");
  SendTo("a1", "team", "g1", "hi all", true);
  // bob had no session; carol had one; alice sent them.
  EXPECT_THAT(Offline(),
              ElementsAre("bob@1:alice:hi bob", "bob@2:alice:hi all"));
  // A repeated send stores nothing and tells nobody again.
  SendTo("a1", "bob", "m1", "hi bob");
  EXPECT_EQ(Offline().size(), 2u);
  Open("b1", "bob");
  SendTo("a1", "bob", "m3", "online now");
  EXPECT_EQ(Offline().size(), 2u);
}

TEST_P(MessagingTest, OpenIsAcceptedWithUserDeviceAndInboxHead) {
  v1::ServiceEvent answer = Open("s1", "alice");
  ASSERT_TRUE(answer.has_accepted());
  EXPECT_EQ(answer.accepted().user_id(), "alice");
  EXPECT_EQ(answer.accepted().device(), "phone");
  EXPECT_EQ(answer.accepted().inbox_seq(), 0u);
  std::vector<SessionInfo> sessions = router_.ListSessions("alice");
  ASSERT_EQ(sessions.size(), 1u);
  EXPECT_EQ(sessions[0].gateway_id, "gw-1");
  EXPECT_EQ(sessions[0].peer_address, "127.0.0.1:5555");
}

TEST_P(MessagingTest, OpenRejectionsNameEachReason) {
  std::string token = Token("alice");
  std::string forged = token.substr(0, token.rfind('.') + 1) + "AAAA";
  struct Case {
    std::string token;
    v1::RejectReason reason;
  } cases[] = {
      {"not-a-jwt", v1::REJECT_REASON_TOKEN_MALFORMED},
      {forged, v1::REJECT_REASON_TOKEN_BAD_SIGNATURE},
      {MintToken({"alice", now_ + absl::Hours(1), now_, ""}, "other-secret"),
       v1::REJECT_REASON_TOKEN_BAD_SIGNATURE},
      {Token("alice", -absl::Seconds(1)), v1::REJECT_REASON_TOKEN_EXPIRED},
      {Token("nobody"), v1::REJECT_REASON_UNKNOWN_USER},
  };
  for (const Case& c : cases) {
    v1::ServiceEvent answer = OpenWith(OpenRequest("s", c.token));
    ASSERT_TRUE(answer.has_rejected()) << c.token;
    EXPECT_EQ(answer.rejected().reason(), c.reason) << c.token;
    EXPECT_FALSE(answer.rejected().message().empty());
  }
  EXPECT_EQ(router_.session_count(), 0u);
}

TEST_P(MessagingTest, OpenBeyondTheSessionLimitIsRejected) {
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(Open("s" + std::to_string(i), "alice").has_accepted());
  }
  v1::ServiceEvent answer = Open("s4", "alice");
  ASSERT_TRUE(answer.has_rejected());
  EXPECT_EQ(answer.rejected().reason(), v1::REJECT_REASON_TOO_MANY_SESSIONS);
}

TEST_P(MessagingTest, OpenWhileDrainingIsUnavailable) {
  messaging_->SetDraining(true);
  v1::ServiceEvent answer = Open("s1", "alice");
  ASSERT_TRUE(answer.has_rejected());
  EXPECT_EQ(answer.rejected().reason(), v1::REJECT_REASON_UNAVAILABLE);
}

TEST_P(MessagingTest, SendIsAckedAndDeliveredToBothDevicesOfThePeer) {
  Open("a1", "alice");
  Open("b1", "bob");
  Open("b2", "bob");
  SendTo("a1", "bob", "c1", "hello");
  std::vector<v1::ServerFrame> alice = FramesFor("a1");
  auto acks = Only(alice, v1::ServerFrame::kAck);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].ack().client_msg_id(), "c1");
  EXPECT_EQ(acks[0].ack().conversation(), "d:alice:bob");
  EXPECT_EQ(acks[0].ack().seq(), 1u);
  EXPECT_EQ(acks[0].ack().inbox_seq(), 1u);
  EXPECT_FALSE(acks[0].ack().message_id().empty());
  EXPECT_THAT(InboxSeqs(alice), IsEmpty());  // The Ack stands for it.
  for (const char* session : {"b1", "b2"}) {
    auto messages = Only(FramesFor(session), v1::ServerFrame::kMessage);
    ASSERT_EQ(messages.size(), 1u) << session;
    const v1::Message& m = messages[0].message();
    EXPECT_EQ(m.from(), "alice");
    EXPECT_EQ(m.to().user(), "bob");
    EXPECT_EQ(m.text(), "hello");
    EXPECT_EQ(m.inbox_seq(), 1u);
    EXPECT_EQ(m.message_id(), acks[0].ack().message_id());
    EXPECT_EQ(m.client_msg_id(), "c1");
  }
  EXPECT_EQ(metrics_.acks.Value(), 1u);
}

v1::ClientFrame EditFrame(const std::string& client_msg_id,
                          const std::string& conversation, uint64_t seq,
                          const std::string& text) {
  v1::ClientFrame frame;
  frame.mutable_edit()->set_client_msg_id(client_msg_id);
  frame.mutable_edit()->set_conversation(conversation);
  frame.mutable_edit()->set_seq(seq);
  frame.mutable_edit()->set_text(text);
  return frame;
}

v1::ClientFrame DeleteFrame(const std::string& client_msg_id,
                            const std::string& conversation, uint64_t seq) {
  v1::ClientFrame frame;
  frame.mutable_delete_()->set_client_msg_id(client_msg_id);
  frame.mutable_delete_()->set_conversation(conversation);
  frame.mutable_delete_()->set_seq(seq);
  return frame;
}

TEST_P(MessagingTest, EditAndDeleteAreAckedAndDeliveredAsEvents) {
  Open("a1", "alice");
  Open("a2", "alice");
  Open("b1", "bob");
  SendTo("a1", "bob", "c1", "helo");
  now_ += absl::Minutes(1);
  Frame("a1", EditFrame("e1", "d:alice:bob", 1, "hello"));
  Frame("a1", DeleteFrame("x1", "d:alice:bob", 1));
  Frame("a1", DeleteFrame("x1", "d:alice:bob", 1));  // A retry: its Ack.

  auto acks = Only(FramesFor("a1"), v1::ServerFrame::kAck);
  ASSERT_EQ(acks.size(), 4u);
  EXPECT_EQ(acks[1].ack().client_msg_id(), "e1");
  EXPECT_EQ(acks[1].ack().seq(), 2u);
  EXPECT_EQ(acks[1].ack().inbox_seq(), 2u);
  EXPECT_EQ(acks[2].ack().client_msg_id(), "x1");
  EXPECT_EQ(acks[2].ack().seq(), 3u);
  EXPECT_EQ(acks[3].ack().message_id(), acks[2].ack().message_id());
  EXPECT_THAT(Only(FramesFor("a1"), v1::ServerFrame::kError), IsEmpty());
  for (const char* session : {"a2", "b1"}) {
    SCOPED_TRACE(session);
    auto messages = Only(FramesFor(session), v1::ServerFrame::kMessage);
    ASSERT_EQ(messages.size(), 3u);  // Once each: the retry stored nothing.
    EXPECT_EQ(messages[0].message().kind(), v1::MESSAGE_KIND_TEXT);
    const v1::Message& edit = messages[1].message();
    EXPECT_EQ(edit.kind(), v1::MESSAGE_KIND_EDIT);
    EXPECT_EQ(edit.target_seq(), 1u);
    EXPECT_EQ(edit.text(), "hello");
    EXPECT_EQ(edit.from(), "alice");
    EXPECT_EQ(edit.to().user(), "bob");
    EXPECT_EQ(edit.inbox_seq(), 2u);
    const v1::Message& del = messages[2].message();
    EXPECT_EQ(del.kind(), v1::MESSAGE_KIND_DELETE);
    EXPECT_EQ(del.target_seq(), 1u);
    EXPECT_EQ(del.text(), "");
    EXPECT_EQ(del.inbox_seq(), 3u);
  }
  // A device that syncs later: the tombstone, then the events, without text.
  v1::ClientFrame sync;
  sync.mutable_sync()->set_after_seq(0);
  Frame("b1", sync);
  auto synced = Only(FramesFor("b1"), v1::ServerFrame::kSynced);
  ASSERT_EQ(synced.size(), 1u);
  const auto& page = synced[0].synced().messages();
  ASSERT_EQ(page.size(), 3);
  EXPECT_TRUE(page[0].deleted());
  EXPECT_EQ(page[0].text(), "");
  EXPECT_TRUE(page[0].has_edited_at());
  EXPECT_EQ(page[1].text(), "") << "an edit of a deleted message loses it";
  EXPECT_EQ(page[2].kind(), v1::MESSAGE_KIND_DELETE);
  EXPECT_FALSE(page[2].deleted());
}

TEST_P(MessagingTest, EditsTellTheOfflineWebhookNothing) {
  Open("a1", "alice");
  SendTo("a1", "bob", "c1", "hi bob");
  Frame("a1", EditFrame("e1", "d:alice:bob", 1, "hi bob!"));
  Frame("a1", DeleteFrame("x1", "d:alice:bob", 1));
  EXPECT_EQ(Only(FramesFor("a1"), v1::ServerFrame::kAck).size(), 3u);
  EXPECT_THAT(Offline(), ElementsAre("bob@1:alice:hi bob"));
}

TEST_P(MessagingTest, RefusedEditsAndDeletesAreErrorsNamingTheProblem) {
  ASSERT_TRUE(
      store_->CreateGroup({"team", "", {"alice", "bob"}, now_}, 10).ok());
  Open("a1", "alice");
  Open("b1", "bob");
  Open("c1", "carol");
  SendTo("a1", "bob", "m1", "mine");
  SendTo("a1", "team", "m2", "group", true);
  Frame("a1", DeleteFrame("m3", "d:alice:bob", 1));
  Settle();
  struct Case {
    std::string session;
    v1::ClientFrame frame;
    v1::ErrorCode code;
    std::string named;
  };
  const std::string long_text(17, 'x');
  std::vector<Case> cases = {
      {"b1", EditFrame("b-e1", "d:alice:bob", 2, "ha"),
       v1::ERROR_CODE_PERMISSION_DENIED, "sent by \"alice\""},
      {"c1", DeleteFrame("c-x1", "d:alice:bob", 2),
       v1::ERROR_CODE_PERMISSION_DENIED, "not in conversation"},
      {"c1", DeleteFrame("c-x2", "g:team", 1), v1::ERROR_CODE_PERMISSION_DENIED,
       "not a member"},
      {"a1", EditFrame("a-e1", "d:alice:bob", 1, "again"),
       v1::ERROR_CODE_FAILED_PRECONDITION, "already deleted"},
      {"a1", DeleteFrame("a-x1", "d:alice:bob", 2),
       v1::ERROR_CODE_FAILED_PRECONDITION, "not a text message"},
      {"a1", EditFrame("a-e2", "d:alice:bob", 7, "where"),
       v1::ERROR_CODE_NOT_FOUND, "message 7"},
      {"a1", EditFrame("a-e3", "g:nogroup", 1, "where"),
       v1::ERROR_CODE_NOT_FOUND, "nogroup"},
      {"a1", EditFrame("a-e4", "bogus", 1, "x"),
       v1::ERROR_CODE_INVALID_ARGUMENT, "edit.conversation"},
      {"a1", DeleteFrame("a-x2", "g:team", 0), v1::ERROR_CODE_INVALID_ARGUMENT,
       "delete.seq"},
      {"a1", EditFrame("a-e5", "g:team", 1, ""),
       v1::ERROR_CODE_INVALID_ARGUMENT, "edit.text is empty"},
      {"a1", EditFrame("a-e6", "g:team", 1, "\xff"),
       v1::ERROR_CODE_INVALID_ARGUMENT, "UTF-8"},
      {"a1", EditFrame("", "g:team", 1, "x"), v1::ERROR_CODE_INVALID_ARGUMENT,
       "clientMsgId"},
      {"a1", EditFrame("a-e7", "g:team", 1, long_text),
       v1::ERROR_CODE_TOO_LARGE, "17 bytes"},
  };
  const uint64_t alice = *store_->InboxHead("alice");
  for (const Case& c : cases) {
    SCOPED_TRACE(c.frame.ShortDebugString());
    const size_t before = FramesFor(c.session).size();
    Frame(c.session, c.frame);
    std::vector<v1::ServerFrame> frames = FramesFor(c.session);
    ASSERT_EQ(frames.size(), before + 1);
    ASSERT_TRUE(frames.back().has_error()) << frames.back().DebugString();
    EXPECT_EQ(frames.back().error().code(), c.code);
    EXPECT_THAT(frames.back().error().message(), HasSubstr(c.named));
    EXPECT_EQ(frames.back().error().client_msg_id(),
              c.frame.has_edit() ? c.frame.edit().client_msg_id()
                                 : c.frame.delete_().client_msg_id());
  }
  EXPECT_EQ(*store_->InboxHead("alice"), alice);

  // The window (48 hours by default) counts from the message's sending.
  now_ += absl::Hours(48);
  Frame("a1", EditFrame("a-e8", "g:team", 1, "just in time"));
  now_ += absl::Seconds(1);
  Frame("a1", EditFrame("a-e9", "g:team", 1, "too late"));
  std::vector<v1::ServerFrame> frames = FramesFor("a1");
  ASSERT_TRUE(frames[frames.size() - 2].has_ack());
  ASSERT_TRUE(frames.back().has_error());
  EXPECT_EQ(frames.back().error().code(), v1::ERROR_CODE_FAILED_PRECONDITION);
  EXPECT_THAT(frames.back().error().message(), HasSubstr("edit window (48h)"));
}

TEST_P(MessagingTest, GroupChangesAreAckedAndDeliveredAsEvents) {
  Open("a1", "alice");
  Open("b1", "bob");
  Open("c1", "carol");
  Frame("a1", CreateGroupFrame("k1", "Team", {"bob"}));
  Frame("a1", CreateGroupFrame("k1", "Team", {"bob"}));  // A retry.
  auto acks = Only(FramesFor("a1"), v1::ServerFrame::kAck);
  ASSERT_EQ(acks.size(), 2u);
  const std::string conversation = acks[0].ack().conversation();
  ASSERT_EQ(conversation.rfind("g:g", 0), 0u) << conversation;
  const std::string group = conversation.substr(2);
  EXPECT_EQ(acks[0].ack().seq(), 1u);
  EXPECT_EQ(acks[0].ack().inbox_seq(), 1u);
  EXPECT_EQ(acks[1].ack().conversation(), conversation);
  EXPECT_EQ(acks[1].ack().message_id(), acks[0].ack().message_id());

  auto created = Only(FramesFor("b1"), v1::ServerFrame::kMessage);
  ASSERT_EQ(created.size(), 1u);
  const v1::Message& event = created[0].message();
  EXPECT_EQ(event.kind(), v1::MESSAGE_KIND_GROUP_EVENT);
  EXPECT_EQ(event.to().group(), group);
  EXPECT_EQ(event.group_event().type(), v1::GROUP_EVENT_TYPE_CREATED);
  EXPECT_EQ(event.group_event().actor(), "alice");
  EXPECT_EQ(event.group_event().title(), "Team");
  EXPECT_THAT(event.group_event().users(), ElementsAre("alice", "bob"));
  EXPECT_THAT(Only(FramesFor("c1"), v1::ServerFrame::kMessage), IsEmpty());

  v1::ClientFrame add = UpdateGroupFrame("k2", group);
  add.mutable_update_group()->mutable_add_members()->add_users("carol");
  Frame("a1", add);
  SendTo("c1", group, "c-1", "hello", true);  // carol is in at once.
  v1::ClientFrame remove = UpdateGroupFrame("k3", group);
  remove.mutable_update_group()->mutable_remove_members()->add_users("bob");
  Frame("a1", remove);
  v1::ClientFrame rename = UpdateGroupFrame("k4", group);
  rename.mutable_update_group()->set_rename("Crew");
  Frame("a1", rename);
  EXPECT_THAT(Only(FramesFor("a1"), v1::ServerFrame::kError), IsEmpty());
  EXPECT_EQ(Only(FramesFor("a1"), v1::ServerFrame::kAck).size(), 5u);
  EXPECT_EQ(Only(FramesFor("c1"), v1::ServerFrame::kAck).size(), 1u);

  // bob got the add, carol's message and his removal, then nothing.
  auto bob = Only(FramesFor("b1"), v1::ServerFrame::kMessage);
  ASSERT_EQ(bob.size(), 4u);
  EXPECT_EQ(bob[1].message().group_event().type(),
            v1::GROUP_EVENT_TYPE_MEMBERS_ADDED);
  EXPECT_THAT(bob[1].message().group_event().users(), ElementsAre("carol"));
  EXPECT_EQ(bob[2].message().text(), "hello");
  EXPECT_EQ(bob[3].message().group_event().type(),
            v1::GROUP_EVENT_TYPE_MEMBERS_REMOVED);
  EXPECT_THAT(bob[3].message().group_event().users(), ElementsAre("bob"));
  auto carol = Only(FramesFor("c1"), v1::ServerFrame::kMessage);
  ASSERT_EQ(carol.size(), 3u);  // Added, bob removed, renamed.
  EXPECT_EQ(carol[2].message().group_event().type(),
            v1::GROUP_EVENT_TYPE_RENAMED);
  EXPECT_EQ(carol[2].message().group_event().title(), "Crew");
  EXPECT_EQ(carol[2].message().text(), "Crew");

  // GetGroup: members with roles, for members only.
  v1::ClientFrame get;
  get.mutable_get_group()->set_group(group);
  Frame("c1", get);
  auto infos = Only(FramesFor("c1"), v1::ServerFrame::kGroup);
  ASSERT_EQ(infos.size(), 1u);
  EXPECT_EQ(infos[0].group().id(), group);
  EXPECT_EQ(infos[0].group().title(), "Crew");
  ASSERT_EQ(infos[0].group().members_size(), 2);
  EXPECT_EQ(infos[0].group().members(0).user(), "alice");
  EXPECT_EQ(infos[0].group().members(0).role(), v1::GROUP_ROLE_OWNER);
  EXPECT_EQ(infos[0].group().members(1).user(), "carol");
  EXPECT_EQ(infos[0].group().members(1).role(), v1::GROUP_ROLE_MEMBER);
  Frame("b1", get);
  auto errors = Only(FramesFor("b1"), v1::ServerFrame::kError);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].error().code(), v1::ERROR_CODE_PERMISSION_DENIED);
}

TEST_P(MessagingTest, RefusedGroupChangesAreErrorsNamingTheProblem) {
  ASSERT_TRUE(
      store_->CreateGroup({"team", "", {"alice", "bob"}, now_}, 10).ok());
  Open("a1", "alice");
  Frame("a1", CreateGroupFrame("k1", "Mine", {"bob"}));
  auto acks = Only(FramesFor("a1"), v1::ServerFrame::kAck);
  ASSERT_EQ(acks.size(), 1u);
  const std::string group = acks[0].ack().conversation().substr(2);
  Open("b1", "bob");
  Open("c1", "carol");
  struct Case {
    std::string session;
    v1::ClientFrame frame;
    v1::ErrorCode code;
    std::string named;
  };
  auto update = [&](const std::string& key, const std::string& id) {
    return UpdateGroupFrame(key, id);
  };
  std::vector<Case> cases;
  {
    v1::ClientFrame f = update("b-1", group);
    f.mutable_update_group()->mutable_add_members()->add_users("carol");
    cases.push_back({"b1", f, v1::ERROR_CODE_PERMISSION_DENIED,
                     "only the owner and admins"});
  }
  {
    v1::ClientFrame f = update("c-1", group);
    f.mutable_update_group()->mutable_leave();
    cases.push_back(
        {"c1", f, v1::ERROR_CODE_PERMISSION_DENIED, "not a member"});
  }
  {
    v1::ClientFrame f = update("a-1", group);
    f.mutable_update_group()->mutable_leave();
    cases.push_back({"a1", f, v1::ERROR_CODE_FAILED_PRECONDITION,
                     "make another member the owner"});
  }
  {
    v1::ClientFrame f = update("a-2", group);
    f.mutable_update_group()->mutable_add_members()->add_users("nobody");
    cases.push_back({"a1", f, v1::ERROR_CODE_NOT_FOUND, "nobody"});
  }
  {
    v1::ClientFrame f = update("a-3", "nogroup");
    f.mutable_update_group()->set_rename("x");
    cases.push_back({"a1", f, v1::ERROR_CODE_NOT_FOUND, "nogroup"});
  }
  {
    // The admin API's group has no owner: a member may not manage it.
    v1::ClientFrame f = update("a-4", "team");
    f.mutable_update_group()->set_rename("x");
    cases.push_back({"a1", f, v1::ERROR_CODE_PERMISSION_DENIED, "team"});
  }
  cases.push_back({"a1", update("a-5", group), v1::ERROR_CODE_INVALID_ARGUMENT,
                   "names no change"});
  {
    v1::ClientFrame f = update("a-6", group);
    f.mutable_update_group()->set_rename("");
    cases.push_back(
        {"a1", f, v1::ERROR_CODE_INVALID_ARGUMENT, "title is empty"});
  }
  {
    v1::ClientFrame f = update("a-7", group);
    f.mutable_update_group()->mutable_set_role()->set_user("bob");
    f.mutable_update_group()->mutable_set_role()->set_role(
        static_cast<v1::GroupRole>(9));
    cases.push_back({"a1", f, v1::ERROR_CODE_INVALID_ARGUMENT, "GroupRole"});
  }
  cases.push_back({"a1", CreateGroupFrame("a-8", "", {"bob"}),
                   v1::ERROR_CODE_INVALID_ARGUMENT, "title is empty"});
  cases.push_back({"a1", CreateGroupFrame("a-9", std::string(129, 't'), {}),
                   v1::ERROR_CODE_TOO_LARGE, "129 bytes"});
  cases.push_back({"a1", CreateGroupFrame("a-10", "T", {"bad id"}),
                   v1::ERROR_CODE_INVALID_ARGUMENT, "bad id"});
  cases.push_back({"a1", CreateGroupFrame("", "T", {}),
                   v1::ERROR_CODE_INVALID_ARGUMENT, "clientMsgId"});
  const uint64_t alice = *store_->InboxHead("alice");
  for (const Case& c : cases) {
    SCOPED_TRACE(c.frame.ShortDebugString());
    const size_t before = FramesFor(c.session).size();
    Frame(c.session, c.frame);
    std::vector<v1::ServerFrame> frames = FramesFor(c.session);
    ASSERT_EQ(frames.size(), before + 1);
    ASSERT_TRUE(frames.back().has_error()) << frames.back().DebugString();
    EXPECT_EQ(frames.back().error().code(), c.code);
    EXPECT_THAT(frames.back().error().message(), HasSubstr(c.named));
    EXPECT_EQ(frames.back().error().client_msg_id(),
              c.frame.has_create_group()
                  ? c.frame.create_group().client_msg_id()
                  : c.frame.update_group().client_msg_id());
  }
  EXPECT_EQ(*store_->InboxHead("alice"), alice);
  EXPECT_EQ(*store_->ConversationHead("g:" + group), 1u);
}

TEST_P(MessagingTest, OperatorGroupChangesReachEveryMember) {
  Open("a1", "alice");
  Open("c1", "carol");
  auto change = [&](const std::string& key, GroupEventType type,
                    std::vector<std::string> users) {
    GroupEvent event;
    event.type = type;
    event.users = std::move(users);
    absl::StatusOr<v1::Ack> ack;
    absl::Notification done;
    messaging_->ChangeGroupAsOperator(key, "ops", event, "Ops",
                                      [&](absl::StatusOr<v1::Ack> a) {
                                        ack = std::move(a);
                                        done.Notify();
                                      });
    Settle();
    done.WaitForNotification();
    return ack;
  };
  auto created = change("o1", GroupEventType::kCreated, {"alice", "bob"});
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->conversation(), "g:ops");
  EXPECT_EQ(created->inbox_seq(), 0u);
  ASSERT_TRUE(change("o2", GroupEventType::kMembersAdded, {"carol"}).ok());
  ASSERT_TRUE(change("o3", GroupEventType::kMembersRemoved, {"alice"}).ok());
  auto alice = Only(FramesFor("a1"), v1::ServerFrame::kMessage);
  ASSERT_EQ(alice.size(), 3u);
  EXPECT_EQ(alice[0].message().group_event().actor(), "");
  EXPECT_EQ(alice[0].message().from(), "");
  EXPECT_EQ(alice[2].message().group_event().type(),
            v1::GROUP_EVENT_TYPE_MEMBERS_REMOVED);
  auto carol = Only(FramesFor("c1"), v1::ServerFrame::kMessage);
  ASSERT_EQ(carol.size(), 2u);
  EXPECT_EQ(carol[0].message().group_event().type(),
            v1::GROUP_EVENT_TYPE_MEMBERS_ADDED);
  EXPECT_EQ(change("o4", GroupEventType::kCreated, {"bob"}).status().code(),
            absl::StatusCode::kAlreadyExists);
}

TEST_P(MessagingTest, AnOperatorDeletesAnyMessageForEveryMember) {
  ASSERT_TRUE(
      store_->CreateGroup({"team", "", {"alice", "bob"}, now_}, 10).ok());
  Open("a1", "alice");
  Open("b1", "bob");
  SendTo("b1", "team", "m1", "spam", true);
  now_ += absl::Hours(100);  // No window for operators.
  absl::StatusOr<v1::Ack> ack;
  absl::Notification done;
  messaging_->DeleteAsOperator("g:team", 1, [&](absl::StatusOr<v1::Ack> a) {
    ack = std::move(a);
    done.Notify();
  });
  Settle();
  done.WaitForNotification();
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_EQ(ack->seq(), 2u);
  EXPECT_EQ(ack->inbox_seq(), 0u);
  for (const char* session : {"a1", "b1"}) {
    SCOPED_TRACE(session);
    auto messages = Only(FramesFor(session), v1::ServerFrame::kMessage);
    ASSERT_FALSE(messages.empty());
    const v1::Message& del = messages.back().message();
    EXPECT_EQ(del.kind(), v1::MESSAGE_KIND_DELETE);
    EXPECT_EQ(del.from(), "");
    EXPECT_EQ(del.to().group(), "team");
    EXPECT_EQ(del.target_seq(), 1u);
  }
  auto history = store_->ReadHistory("g:team", 0, 10);
  ASSERT_TRUE(history.ok());
  EXPECT_TRUE(history->messages[0].deleted);

  // Again: answered with the first Ack; of an event or nothing: an error.
  absl::StatusOr<v1::Ack> again;
  absl::Notification done_again;
  messaging_->DeleteAsOperator("g:team", 1, [&](absl::StatusOr<v1::Ack> a) {
    again = std::move(a);
    done_again.Notify();
  });
  Settle();
  done_again.WaitForNotification();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->message_id(), ack->message_id());
  for (auto [conversation, seq, code] :
       {std::tuple<std::string, uint64_t, absl::StatusCode>{
            "g:team", 2, absl::StatusCode::kFailedPrecondition},
        {"g:team", 9, absl::StatusCode::kNotFound},
        {"nonsense", 1, absl::StatusCode::kInvalidArgument}}) {
    absl::StatusOr<v1::Ack> refused;
    absl::Notification refused_done;
    messaging_->DeleteAsOperator(conversation, seq,
                                 [&](absl::StatusOr<v1::Ack> a) {
                                   refused = std::move(a);
                                   refused_done.Notify();
                                 });
    Settle();
    refused_done.WaitForNotification();
    EXPECT_EQ(refused.status().code(), code) << conversation << " " << seq;
  }
}

TEST_P(MessagingTest, SendersOtherDevicesGetTheMessage) {
  Open("a1", "alice");
  Open("a2", "alice");
  SendTo("a1", "bob", "c1");
  auto other = Only(FramesFor("a2"), v1::ServerFrame::kMessage);
  ASSERT_EQ(other.size(), 1u);
  EXPECT_EQ(other[0].message().inbox_seq(), 1u);
  EXPECT_EQ(other[0].message().client_msg_id(), "c1");
}

TEST_P(MessagingTest, RepeatedClientMsgIdGetsTheOriginalAckAndNoNewMessage) {
  Open("a1", "alice");
  Open("b1", "bob");
  SendTo("a1", "bob", "same", "first");
  SendTo("a1", "bob", "same", "second");
  auto acks = Only(FramesFor("a1"), v1::ServerFrame::kAck);
  ASSERT_EQ(acks.size(), 2u);
  EXPECT_EQ(acks[1].ack().message_id(), acks[0].ack().message_id());
  EXPECT_EQ(acks[1].ack().seq(), acks[0].ack().seq());
  EXPECT_EQ(acks[1].ack().inbox_seq(), acks[0].ack().inbox_seq());
  auto bob = Only(FramesFor("b1"), v1::ServerFrame::kMessage);
  ASSERT_EQ(bob.size(), 1u);
  EXPECT_EQ(bob[0].message().text(), "first");
  EXPECT_EQ(store_->Stats()->messages, 1u);
}

TEST_P(MessagingTest, SyncAfterAGapReturnsTheMissedMessagesInPages) {
  Open("a1", "alice");
  for (int i = 1; i <= 5; ++i) SendTo("a1", "bob", "c" + std::to_string(i));
  Settle();
  Open("b1", "bob");
  v1::ClientFrame sync;
  sync.mutable_sync()->set_after_seq(1);
  sync.mutable_sync()->set_limit(3);
  Frame("b1", sync);
  sync.mutable_sync()->set_after_seq(4);
  Frame("b1", sync);
  auto synced = Only(FramesFor("b1"), v1::ServerFrame::kSynced);
  ASSERT_EQ(synced.size(), 2u);
  std::vector<uint64_t> first, second;
  for (const auto& m : synced[0].synced().messages())
    first.push_back(m.inbox_seq());
  for (const auto& m : synced[1].synced().messages())
    second.push_back(m.inbox_seq());
  EXPECT_THAT(first, ElementsAre(2, 3, 4));
  EXPECT_TRUE(synced[0].synced().more());
  EXPECT_EQ(synced[0].synced().inbox_seq(), 5u);
  EXPECT_THAT(second, ElementsAre(5));
  EXPECT_FALSE(synced[1].synced().more());
  EXPECT_EQ(synced[0].synced().messages(0).client_msg_id(), "c2");
}

TEST_P(MessagingTest, OpenWithResumeAfterReplaysTheMissedMessagesFirst) {
  Open("a1", "alice");
  for (int i = 1; i <= 4; ++i) SendTo("a1", "bob", "c" + std::to_string(i));
  Settle();
  v1::ServiceEvent answer = Open("b1", "bob", 2);
  ASSERT_TRUE(answer.has_accepted());
  EXPECT_EQ(answer.accepted().inbox_seq(), 4u);
  SendTo("a1", "bob", "c5");
  EXPECT_THAT(InboxSeqs(FramesFor("b1")), ElementsAre(3, 4, 5));
}

// resume_after = 0 is a device that has applied nothing yet (e.g. one whose
// only frames were Acks at a head of 0), not a new device.
TEST_P(MessagingTest, OpenWithResumeAfterZeroReplaysTheWholeInbox) {
  Open("a1", "alice");
  SendTo("a1", "bob", "c1");
  SendTo("a1", "bob", "c2");
  Settle();
  ASSERT_TRUE(Open("b1", "bob", 0).has_accepted());
  EXPECT_THAT(InboxSeqs(FramesFor("b1")), ElementsAre(1, 2));
}

TEST_P(MessagingTest, OpenWithoutResumeAfterReplaysNothing) {
  Open("a1", "alice");
  SendTo("a1", "bob", "c1");
  Settle();
  ASSERT_TRUE(Open("b1", "bob").has_accepted());
  EXPECT_THAT(InboxSeqs(FramesFor("b1")), IsEmpty());
}

TEST_P(MessagingTest, ReannounceOnANewStreamResumesWithoutPresence) {
  Open("a1", "alice");
  Open("b1", "bob");
  SendTo("a1", "bob", "c1");
  Settle();
  // The link breaks; messages arrive while the gateway reconnects.
  messaging_->StreamClosed(&gw_);
  RecordingLinkStream gw2;
  v1::LinkHello hello;
  hello.set_gateway_id("gw-1");
  messaging_->StreamOpened(&gw2, hello);
  v1::SessionOpen alice = OpenRequest("a1", Token("alice"));
  alice.set_reannounce(true);
  ASSERT_TRUE(OpenWith(alice, &gw2).has_accepted());
  Frame(
      "a1",
      [] {
        v1::ClientFrame f;
        f.mutable_send()->set_client_msg_id("c2");
        f.mutable_send()->mutable_to()->set_user("bob");
        f.mutable_send()->set_text("while away");
        return f;
      }(),
      &gw2);
  Settle();
  v1::SessionOpen bob = OpenRequest("b1", Token("bob"), 1);
  bob.set_reannounce(true);
  v1::ServiceEvent answer = OpenWith(bob, &gw2);
  ASSERT_TRUE(answer.has_accepted());
  EXPECT_EQ(answer.accepted().inbox_seq(), 2u);
  Settle();
  std::vector<v1::ServerFrame> frames = gw2.FramesFor("b1");
  EXPECT_THAT(InboxSeqs(frames), ElementsAre(2));
  EXPECT_THAT(Only(frames, v1::ServerFrame::kPresence), IsEmpty());
  EXPECT_THAT(Only(gw2.FramesFor("a1"), v1::ServerFrame::kPresence), IsEmpty());
}

TEST_P(MessagingTest, AcceptedNamesTheStoreGeneration) {
  v1::ServiceEvent answer = Open("a1", "alice");
  ASSERT_TRUE(answer.has_accepted());
  EXPECT_EQ(answer.accepted().store_generation(), store_->Generation());
  EXPECT_FALSE(answer.accepted().has_replayed_after()) << "a new device";
  EXPECT_FALSE(store_->Generation().empty());
}

// After a restore from a backup a client's position counts in the old
// generation: inbox_seq 3 there may be anything here. It gets the whole
// inbox again, not "everything after 3" (which it would have kept as
// duplicates of what it held).
TEST_P(MessagingTest, APositionFromAnotherGenerationIsReplayedFromTheStart) {
  Open("a1", "alice");
  for (int i = 1; i <= 3; ++i) SendTo("a1", "bob", "c" + std::to_string(i));
  Settle();
  v1::SessionOpen same = OpenRequest("b1", Token("bob"), 2);
  same.set_store_generation(store_->Generation());
  v1::ServiceEvent resumed = OpenWith(same);
  ASSERT_TRUE(resumed.has_accepted());
  EXPECT_EQ(resumed.accepted().replayed_after(), 2u);
  EXPECT_THAT(InboxSeqs(FramesFor("b1")), ElementsAre(3));

  v1::SessionOpen other = OpenRequest("b2", Token("bob"), 2);
  other.set_store_generation("another-generation");
  v1::ServiceEvent answer = OpenWith(other);
  ASSERT_TRUE(answer.has_accepted());
  EXPECT_EQ(answer.accepted().store_generation(), store_->Generation());
  ASSERT_TRUE(answer.accepted().has_replayed_after());
  EXPECT_EQ(answer.accepted().replayed_after(), 0u);
  EXPECT_THAT(InboxSeqs(FramesFor("b2")), ElementsAre(1, 2, 3));
}

// A client that predates generations and held a position the restored store
// has not reached yet.
TEST_P(MessagingTest, APositionBeyondTheHeadIsReplayedFromTheStart) {
  Open("a1", "alice");
  SendTo("a1", "bob", "c1");
  Settle();
  v1::ServiceEvent answer = Open("b1", "bob", 390);
  ASSERT_TRUE(answer.has_accepted());
  EXPECT_EQ(answer.accepted().replayed_after(), 0u);
  EXPECT_THAT(InboxSeqs(FramesFor("b1")), ElementsAre(1));
}

TEST_P(MessagingTest, AReannounceFromAnotherGenerationIsRefused) {
  v1::SessionOpen open = OpenRequest("a1", Token("alice"), 7);
  open.set_reannounce(true);
  open.set_store_generation("before-the-restore");
  v1::ServiceEvent answer = OpenWith(open);
  ASSERT_TRUE(answer.has_rejected());
  EXPECT_EQ(answer.rejected().reason(), v1::REJECT_REASON_STORE_RESTORED);
  EXPECT_THAT(answer.rejected().message(), HasSubstr("restored"));
  EXPECT_EQ(router_.session_count(), 0u);
}

TEST_P(MessagingTest, GroupSendFansOutWithEachMembersInboxSeq) {
  ASSERT_TRUE(
      store_->CreateGroup({"team", "", {"alice", "bob", "carol"}, now_}, 10)
          .ok());
  Open("a1", "alice");
  Open("c1", "carol");
  SendTo("a1", "carol", "d1");  // carol's inbox_seq 1.
  Open("b1", "bob");
  Open("d1", "dave");
  SendTo("a1", "team", "g1", "hi all", true);
  auto bob = Only(FramesFor("b1"), v1::ServerFrame::kMessage);
  auto carol = Only(FramesFor("c1"), v1::ServerFrame::kMessage);
  ASSERT_EQ(bob.size(), 1u);
  ASSERT_EQ(carol.size(), 2u);
  EXPECT_EQ(bob[0].message().conversation(), "g:team");
  EXPECT_EQ(bob[0].message().to().group(), "team");
  EXPECT_EQ(bob[0].message().inbox_seq(), 1u);
  EXPECT_EQ(carol[1].message().inbox_seq(), 2u);
  EXPECT_EQ(carol[1].message().seq(), 1u);
  EXPECT_THAT(Only(FramesFor("d1"), v1::ServerFrame::kMessage), IsEmpty());
  // A non-member may not send to the group.
  SendTo("d1", "team", "x", "let me in", true);
  auto errors = Only(FramesFor("d1"), v1::ServerFrame::kError);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].error().code(), v1::ERROR_CODE_PERMISSION_DENIED);
  EXPECT_EQ(errors[0].error().client_msg_id(), "x");
}

TEST_P(MessagingTest, BadSendsGetPreciseErrorsAndStoreNothing) {
  Open("a1", "alice");
  SendTo("a1", "bob", "long", std::string(17, 'x'));
  SendTo("a1", "bob", "empty", "");
  SendTo("a1", "bad id!", "badid");
  SendTo("a1", "nobody", "unknown");
  SendTo("a1", "bob", "", "no id");
  SendTo("a1", "bob", "utf8", "\xff\xfe");
  // Validation errors come at once, store errors after the commit: match
  // them by client_msg_id.
  std::map<std::string, v1::Error> errors;
  for (const auto& f : Only(FramesFor("a1"), v1::ServerFrame::kError)) {
    errors[f.error().client_msg_id()] = f.error();
  }
  ASSERT_EQ(errors.size(), 6u);
  EXPECT_EQ(errors["long"].code(), v1::ERROR_CODE_TOO_LARGE);
  EXPECT_THAT(errors["long"].message(), HasSubstr("16"));
  EXPECT_EQ(errors["empty"].code(), v1::ERROR_CODE_INVALID_ARGUMENT);
  EXPECT_EQ(errors["badid"].code(), v1::ERROR_CODE_INVALID_ARGUMENT);
  EXPECT_EQ(errors["unknown"].code(), v1::ERROR_CODE_NOT_FOUND);
  EXPECT_THAT(errors["unknown"].message(), HasSubstr("nobody"));
  EXPECT_EQ(errors[""].code(), v1::ERROR_CODE_INVALID_ARGUMENT);
  EXPECT_EQ(errors["utf8"].code(), v1::ERROR_CODE_INVALID_ARGUMENT);
  EXPECT_EQ(store_->Stats()->messages, 0u);
}

TEST_P(MessagingTest, FramesFromAnUnopenedSessionAreUnauthenticated) {
  SendTo("ghost", "bob", "c1");
  auto errors = Only(gw_.FramesFor("ghost"), v1::ServerFrame::kError);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].error().code(), v1::ERROR_CODE_UNAUTHENTICATED);
  EXPECT_EQ(errors[0].error().client_msg_id(), "c1");
}

TEST_P(MessagingTest, ReadReceiptIsStoredMonotonicAndRelayedToThePeer) {
  Open("a1", "alice");
  Open("b1", "bob");
  SendTo("a1", "bob", "c1");
  SendTo("a1", "bob", "c2");
  Settle();
  auto read = [&](uint64_t seq) {
    v1::ClientFrame f;
    f.mutable_read()->set_conversation("d:alice:bob");
    f.mutable_read()->set_seq(seq);
    Frame("b1", f);
  };
  read(2);
  read(1);  // Lower: ignored, not relayed.
  read(3);  // Beyond the conversation.
  Settle();
  EXPECT_EQ(*store_->ReadCursor("bob", "d:alice:bob"), 2u);
  auto receipts = Only(FramesFor("a1"), v1::ServerFrame::kReceipt);
  ASSERT_EQ(receipts.size(), 1u);
  EXPECT_EQ(receipts[0].receipt().user(), "bob");
  EXPECT_EQ(receipts[0].receipt().seq(), 2u);
  auto errors = Only(FramesFor("b1"), v1::ServerFrame::kError);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].error().code(), v1::ERROR_CODE_INVALID_ARGUMENT);
  // Only participants may mark a conversation read.
  Open("c1", "carol");
  v1::ClientFrame f;
  f.mutable_read()->set_conversation("d:alice:bob");
  f.mutable_read()->set_seq(1);
  Frame("c1", f);
  auto denied = Only(FramesFor("c1"), v1::ServerFrame::kError);
  ASSERT_EQ(denied.size(), 1u);
  EXPECT_EQ(denied[0].error().code(), v1::ERROR_CODE_PERMISSION_DENIED);
}

TEST_P(MessagingTest, ReadOnOneDeviceUpdatesTheOtherDevicesUnreadCount) {
  ASSERT_TRUE(
      store_->CreateGroup({"team", "", {"alice", "bob", "carol"}, now_}, 10)
          .ok());
  Open("a1", "alice");
  Open("a2", "alice");
  Open("b1", "bob");
  Open("c1", "carol");
  for (const char* id : {"m1", "m2", "m3"}) SendTo("b1", "alice", id);
  SendTo("a1", "bob", "m4");  // alice's own: never unread for her.
  SendTo("c1", "team", "g1", "hi", true);
  Settle();
  auto read = [&](const std::string& session, const std::string& conversation,
                  uint64_t seq) {
    v1::ClientFrame f;
    f.mutable_read()->set_conversation(conversation);
    f.mutable_read()->set_seq(seq);
    Frame(session, f);
  };
  read("a1", "d:alice:bob", 2);
  read("a1", "d:alice:bob", 1);  // Lower: no receipt anywhere.
  read("a2", "d:alice:bob", 4);
  read("a1", "g:team", 1);

  // The other device gets the reader's own receipts, with the unread count.
  auto own = Only(FramesFor("a2"), v1::ServerFrame::kReceipt);
  ASSERT_EQ(own.size(), 2u);
  EXPECT_EQ(own[0].receipt().conversation(), "d:alice:bob");
  EXPECT_EQ(own[0].receipt().user(), "alice");
  EXPECT_EQ(own[0].receipt().seq(), 2u);
  EXPECT_EQ(own[0].receipt().unread(), 1u);  // m3; m4 is alice's.
  EXPECT_EQ(own[1].receipt().conversation(), "g:team");
  EXPECT_EQ(own[1].receipt().unread(), 0u);
  // The reading device itself gets nothing; a2's own read went to a1.
  auto first = Only(FramesFor("a1"), v1::ServerFrame::kReceipt);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].receipt().seq(), 4u);
  EXPECT_EQ(first[0].receipt().unread(), 0u);
  // The other members get the receipt without a count.
  auto peer = Only(FramesFor("b1"), v1::ServerFrame::kReceipt);
  ASSERT_EQ(peer.size(), 3u);
  for (const v1::ServerFrame& r : peer) {
    EXPECT_EQ(r.receipt().user(), "alice");
    EXPECT_EQ(r.receipt().unread(), 0u);
  }
  EXPECT_EQ(Only(FramesFor("c1"), v1::ServerFrame::kReceipt).size(), 1u);

  // The list agrees on every device.
  v1::ClientFrame list;
  list.mutable_list_conversations();
  Frame("a2", list);
  auto lists = Only(FramesFor("a2"), v1::ServerFrame::kConversations);
  ASSERT_EQ(lists.size(), 1u);
  ASSERT_EQ(lists[0].conversations().conversations_size(), 2);
  for (const auto& c : lists[0].conversations().conversations()) {
    EXPECT_EQ(c.unread(), 0u) << c.id();
  }
}

TEST_P(MessagingTest, ListConversationsAnswersWithPagesAndUnreadCounts) {
  ASSERT_TRUE(
      store_->CreateGroup({"team", "Team", {"alice", "carol"}, now_}, 10).ok());
  Open("a1", "alice");
  Open("b1", "bob");
  SendTo("b1", "alice", "m1", "one");
  now_ += absl::Seconds(1);
  SendTo("b1", "alice", "m2", "two");
  Settle();
  v1::ClientFrame list;
  list.mutable_list_conversations()->set_limit(1);
  Frame("a1", list);
  auto answers = Only(FramesFor("a1"), v1::ServerFrame::kConversations);
  ASSERT_EQ(answers.size(), 1u);
  const v1::Conversations& page = answers[0].conversations();
  ASSERT_EQ(page.conversations_size(), 1);
  const v1::ConversationSummary& dm = page.conversations(0);
  EXPECT_EQ(dm.id(), "d:alice:bob");
  EXPECT_EQ(dm.kind(), v1::CONVERSATION_KIND_DIRECT);
  EXPECT_EQ(dm.title(), "bob");
  EXPECT_EQ(dm.peer(), "bob");
  EXPECT_EQ(dm.head_seq(), 2u);
  EXPECT_EQ(dm.unread(), 2u);
  EXPECT_EQ(dm.last_message().text(), "two");
  EXPECT_EQ(dm.last_message().inbox_seq(), 0u);
  EXPECT_EQ(dm.last_activity().seconds(), absl::ToUnixSeconds(now_));
  ASSERT_FALSE(page.next_page_token().empty());

  list.mutable_list_conversations()->set_page_token(page.next_page_token());
  Frame("a1", list);
  answers = Only(FramesFor("a1"), v1::ServerFrame::kConversations);
  ASSERT_EQ(answers.size(), 2u);
  const v1::Conversations& last = answers[1].conversations();
  ASSERT_EQ(last.conversations_size(), 1);
  EXPECT_EQ(last.conversations(0).id(), "g:team");
  EXPECT_EQ(last.conversations(0).kind(), v1::CONVERSATION_KIND_GROUP);
  EXPECT_EQ(last.conversations(0).title(), "Team");
  EXPECT_FALSE(last.conversations(0).has_last_message());
  EXPECT_TRUE(last.next_page_token().empty());

  list.mutable_list_conversations()->set_page_token("not-a-token");
  Frame("a1", list);
  auto errors = Only(FramesFor("a1"), v1::ServerFrame::kError);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].error().code(), v1::ERROR_CODE_INVALID_ARGUMENT);
  EXPECT_THAT(errors[0].error().message(), HasSubstr("page_token"));
}

TEST_P(MessagingTest, HistoryPagesBackwardsForMembersOnly) {
  ASSERT_TRUE(
      store_->CreateGroup({"team", "", {"alice", "bob"}, now_}, 10).ok());
  Open("a1", "alice");
  Open("c1", "carol");
  for (const char* id : {"m1", "m2", "m3"}) SendTo("a1", "bob", id, id);
  SendTo("a1", "team", "g1", "early", true);
  Settle();
  auto history = [&](const std::string& session,
                     const std::string& conversation, uint64_t before_seq,
                     uint32_t limit) {
    v1::ClientFrame f;
    f.mutable_history()->set_conversation(conversation);
    f.mutable_history()->set_before_seq(before_seq);
    f.mutable_history()->set_limit(limit);
    Frame(session, f);
  };
  history("a1", "d:alice:bob", 0, 2);
  history("a1", "d:alice:bob", 2, 2);
  auto pages = Only(FramesFor("a1"), v1::ServerFrame::kHistory);
  ASSERT_EQ(pages.size(), 2u);
  EXPECT_EQ(pages[0].history().conversation(), "d:alice:bob");
  ASSERT_EQ(pages[0].history().messages_size(), 2);
  EXPECT_EQ(pages[0].history().messages(0).text(), "m2");
  EXPECT_EQ(pages[0].history().messages(1).text(), "m3");
  EXPECT_EQ(pages[0].history().messages(1).inbox_seq(), 0u);
  EXPECT_TRUE(pages[0].history().more());
  ASSERT_EQ(pages[1].history().messages_size(), 1);
  EXPECT_EQ(pages[1].history().messages(0).seq(), 1u);
  EXPECT_FALSE(pages[1].history().more());

  struct Refused {
    std::string conversation;
    v1::ErrorCode code;
  } refused[] = {
      {"d:alice:bob", v1::ERROR_CODE_PERMISSION_DENIED},
      {"g:team", v1::ERROR_CODE_PERMISSION_DENIED},
      {"g:nope", v1::ERROR_CODE_NOT_FOUND},
      {"d:carol:ghost", v1::ERROR_CODE_NOT_FOUND},
      {"x:team", v1::ERROR_CODE_INVALID_ARGUMENT},
      {"", v1::ERROR_CODE_INVALID_ARGUMENT},
  };
  for (const Refused& r : refused) history("c1", r.conversation, 0, 10);
  auto errors = Only(FramesFor("c1"), v1::ServerFrame::kError);
  ASSERT_EQ(errors.size(), std::size(refused));
  for (size_t i = 0; i < std::size(refused); ++i) {
    EXPECT_EQ(errors[i].error().code(), refused[i].code)
        << refused[i].conversation;
    if (!refused[i].conversation.empty() &&
        refused[i].code != v1::ERROR_CODE_INVALID_ARGUMENT) {
      EXPECT_THAT(errors[i].error().message(),
                  HasSubstr(refused[i].conversation));
    }
  }
  EXPECT_THAT(Only(FramesFor("c1"), v1::ServerFrame::kHistory), IsEmpty());

  // A member added later sees the group's whole history.
  ASSERT_TRUE(store_->AddMembers("team", {"carol"}, 10).ok());
  history("c1", "g:team", 0, 0);
  auto joined = Only(FramesFor("c1"), v1::ServerFrame::kHistory);
  ASSERT_EQ(joined.size(), 1u);
  ASSERT_EQ(joined[0].history().messages_size(), 1);
  EXPECT_EQ(joined[0].history().messages(0).text(), "early");
  // A removed member no longer does.
  ASSERT_TRUE(store_->RemoveMembers("team", {"carol"}).ok());
  history("c1", "g:team", 0, 0);
  errors = Only(FramesFor("c1"), v1::ServerFrame::kError);
  EXPECT_EQ(errors.back().error().code(), v1::ERROR_CODE_PERMISSION_DENIED);
}

TEST_P(MessagingTest, TypingIsRelayedToThePeerAndNotStored) {
  Open("a1", "alice");
  Open("b1", "bob");
  v1::ClientFrame f;
  f.mutable_typing()->mutable_to()->set_user("bob");
  Frame("a1", f);
  auto typing = Only(FramesFor("b1"), v1::ServerFrame::kTyping);
  ASSERT_EQ(typing.size(), 1u);
  EXPECT_EQ(typing[0].typing().from(), "alice");
  EXPECT_EQ(typing[0].typing().conversation(), "d:alice:bob");
  EXPECT_EQ(store_->Stats()->messages, 0u);
  EXPECT_EQ(*store_->InboxHead("bob"), 0u);
}

// The users in each BlockList frame the session got, in order.
std::vector<std::vector<std::string>> BlockLists(
    const std::vector<v1::ServerFrame>& frames) {
  std::vector<std::vector<std::string>> out;
  for (const auto& f : Only(frames, v1::ServerFrame::kBlocked)) {
    out.emplace_back(f.blocked().users().begin(), f.blocked().users().end());
  }
  return out;
}

v1::ClientFrame BlockFrame(const std::string& user, bool blocked) {
  v1::ClientFrame f;
  f.mutable_block()->set_user(user);
  f.mutable_block()->set_blocked(blocked);
  return f;
}

TEST_P(MessagingTest, BlockListAnswersAndAChangeReachesEverySessionOfTheUser) {
  Open("a1", "alice");
  Open("a2", "alice");
  Open("b1", "bob");
  Frame("a1", BlockFrame("bob", true));
  using Lists = std::vector<std::vector<std::string>>;
  EXPECT_EQ(BlockLists(FramesFor("a1")), (Lists{{"bob"}}));
  EXPECT_EQ(BlockLists(FramesFor("a2")), (Lists{{"bob"}}));
  EXPECT_THAT(BlockLists(FramesFor("b1")), IsEmpty());
  // A repeat changes nothing: only the asking session is answered.
  Frame("a1", BlockFrame("bob", true));
  EXPECT_EQ(BlockLists(FramesFor("a1")), (Lists{{"bob"}, {"bob"}}));
  EXPECT_EQ(BlockLists(FramesFor("a2")), (Lists{{"bob"}}));
  Frame("a2", BlockFrame("carol", true));
  Frame("a2", BlockFrame("bob", false));
  EXPECT_EQ(BlockLists(FramesFor("a1")),
            (Lists{{"bob"}, {"bob"}, {"bob", "carol"}, {"carol"}}));
  v1::ClientFrame list;
  list.mutable_list_blocked();
  Frame("b1", list);
  EXPECT_EQ(BlockLists(FramesFor("b1")), (Lists{{}}));
  Frame("a2", list);
  EXPECT_EQ(BlockLists(FramesFor("a2")).back(),
            std::vector<std::string>{"carol"});
  EXPECT_THAT(Only(FramesFor("a1"), v1::ServerFrame::kError), IsEmpty());
}

TEST_P(MessagingTest, BlockingOneselfOrAnUnknownUserIsAnError) {
  Open("a1", "alice");
  Frame("a1", BlockFrame("alice", true));
  Frame("a1", BlockFrame("nobody", true));
  Frame("a1", BlockFrame("", true));
  auto errors = Only(FramesFor("a1"), v1::ServerFrame::kError);
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[0].error().code(), v1::ERROR_CODE_INVALID_ARGUMENT);
  EXPECT_THAT(errors[0].error().message(), HasSubstr("themselves"));
  EXPECT_EQ(errors[1].error().code(), v1::ERROR_CODE_NOT_FOUND);
  EXPECT_THAT(errors[1].error().message(), HasSubstr("nobody"));
  EXPECT_EQ(errors[2].error().code(), v1::ERROR_CODE_INVALID_ARGUMENT);
  EXPECT_THAT(BlockLists(FramesFor("a1")), IsEmpty());
  EXPECT_THAT(*store_->ListBlocked("alice"), IsEmpty());
}

TEST_P(MessagingTest, DirectMessagesBetweenBlockedUsersAreRefusedBothWays) {
  ASSERT_TRUE(store_->CreateGroup({"g", "", {"alice", "bob"}, now_}, 10).ok());
  Open("a1", "alice");
  Open("b1", "bob");
  Frame("a1", BlockFrame("bob", true));
  SendTo("b1", "alice", "m1", "let me in");
  SendTo("a1", "bob", "m2", "go away");
  auto to_alice = Only(FramesFor("b1"), v1::ServerFrame::kError);
  ASSERT_EQ(to_alice.size(), 1u);
  EXPECT_EQ(to_alice[0].error().code(), v1::ERROR_CODE_BLOCKED);
  EXPECT_EQ(to_alice[0].error().client_msg_id(), "m1");
  EXPECT_EQ(to_alice[0].error().message(),
            "user \"alice\" does not accept your messages");
  auto to_bob = Only(FramesFor("a1"), v1::ServerFrame::kError);
  ASSERT_EQ(to_bob.size(), 1u);
  EXPECT_EQ(to_bob[0].error().code(), v1::ERROR_CODE_BLOCKED);
  EXPECT_THAT(to_bob[0].error().message(), HasSubstr("you blocked \"bob\""));
  EXPECT_EQ(*store_->ConversationHead("d:alice:bob"), 0u);
  // The group is unaffected.
  SendTo("b1", "g", "m3", "in the group", true);
  auto messages = Only(FramesFor("a1"), v1::ServerFrame::kMessage);
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].message().text(), "in the group");
  // Unblocked, the refused send may be retried.
  Frame("a1", BlockFrame("bob", false));
  SendTo("b1", "alice", "m1", "let me in");
  messages = Only(FramesFor("a1"), v1::ServerFrame::kMessage);
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[1].message().text(), "let me in");
}

TEST_P(MessagingTest, TypingBetweenBlockedUsersIsDroppedButNotInGroups) {
  ASSERT_TRUE(store_->CreateGroup({"g", "", {"alice", "bob"}, now_}, 10).ok());
  Open("a1", "alice");
  Open("b1", "bob");
  ASSERT_TRUE(*store_->SetBlocked("bob", "alice", true, 10));
  v1::ClientFrame to_alice;
  to_alice.mutable_typing()->mutable_to()->set_user("alice");
  Frame("b1", to_alice);
  v1::ClientFrame to_bob;
  to_bob.mutable_typing()->mutable_to()->set_user("bob");
  Frame("a1", to_bob);
  EXPECT_THAT(Only(FramesFor("a1"), v1::ServerFrame::kTyping), IsEmpty());
  EXPECT_THAT(Only(FramesFor("b1"), v1::ServerFrame::kTyping), IsEmpty());
  // Silently: neither typist gets an error.
  EXPECT_THAT(Only(FramesFor("a1"), v1::ServerFrame::kError), IsEmpty());
  EXPECT_THAT(Only(FramesFor("b1"), v1::ServerFrame::kError), IsEmpty());
  v1::ClientFrame to_group;
  to_group.mutable_typing()->mutable_to()->set_group("g");
  Frame("b1", to_group);
  auto typing = Only(FramesFor("a1"), v1::ServerFrame::kTyping);
  ASSERT_EQ(typing.size(), 1u);
  EXPECT_EQ(typing[0].typing().conversation(), "g:g");
  // Unblocked, direct typing flows again.
  ASSERT_TRUE(*store_->SetBlocked("bob", "alice", false, 10));
  Frame("b1", to_alice);
  EXPECT_EQ(Only(FramesFor("a1"), v1::ServerFrame::kTyping).size(), 2u);
}

TEST_P(MessagingTest, BlockedUsersStopSeeingEachOthersPresenceUntilUnblocked) {
  ASSERT_TRUE(store_->CreateGroup({"g", "", {"alice", "bob"}, now_}, 10).ok());
  Open("a1", "alice");
  Open("b1", "bob");
  auto presence_of = [&](const std::string& session, const std::string& user) {
    std::vector<bool> out;
    for (const auto& f : Only(FramesFor(session), v1::ServerFrame::kPresence)) {
      if (f.presence().user() == user) out.push_back(f.presence().online());
    }
    return out;
  };
  // b1 opened after a1: alice saw bob come online, bob's snapshot had alice.
  ASSERT_THAT(presence_of("a1", "bob"), ElementsAre(true));
  ASSERT_THAT(presence_of("b1", "alice"), ElementsAre(true));

  Frame("a1", BlockFrame("bob", true));
  // Each appears offline to the other, and stays so.
  EXPECT_THAT(presence_of("a1", "bob"), ElementsAre(true, false));
  EXPECT_THAT(presence_of("b1", "alice"), ElementsAre(true, false));
  v1::SessionClose close;
  close.set_session_id("b1");
  messaging_->CloseSession(&gw_, close);
  Open("b2", "bob");
  EXPECT_THAT(presence_of("a1", "bob"), ElementsAre(true, false));
  EXPECT_THAT(presence_of("b2", "alice"), IsEmpty());

  Frame("a1", BlockFrame("bob", false));
  EXPECT_THAT(presence_of("a1", "bob"), ElementsAre(true, false, true));
  EXPECT_THAT(presence_of("b2", "alice"), ElementsAre(true));
  close.set_session_id("b2");
  messaging_->CloseSession(&gw_, close);
  EXPECT_THAT(presence_of("a1", "bob"), ElementsAre(true, false, true, false));
}

TEST_P(MessagingTest, BlockBetweenStrangersSendsNoPresence) {
  Open("a1", "alice");
  Open("c1", "carol");
  Frame("a1", BlockFrame("carol", true));
  Frame("a1", BlockFrame("carol", false));
  EXPECT_THAT(Only(FramesFor("a1"), v1::ServerFrame::kPresence), IsEmpty());
  EXPECT_THAT(Only(FramesFor("c1"), v1::ServerFrame::kPresence), IsEmpty());
}

TEST_P(MessagingTest, SendAsToABlockingUserIsRefusedAsBlocked) {
  ASSERT_TRUE(*store_->SetBlocked("alice", "bob", true, 10));
  v1::Send send;
  send.set_client_msg_id("op1");
  send.mutable_to()->set_user("alice");
  send.set_text("hi");
  absl::Notification done;
  absl::Status status;
  messaging_->SendAs("bob", send, [&](absl::StatusOr<v1::Ack> ack) {
    status = ack.status();
    done.Notify();
  });
  done.WaitForNotification();
  EXPECT_EQ(status.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ErrorCodeFor(status), v1::ERROR_CODE_BLOCKED);
}

TEST_P(MessagingTest, PresenceIsAnnouncedToContactsOnFirstOpenAndLastClose) {
  ASSERT_TRUE(store_->CreateGroup({"g", "", {"alice", "bob"}, now_}, 10).ok());
  Open("b1", "bob");
  Open("c1", "carol");  // Not a contact of alice.
  Open("a1", "alice");
  Open("a2", "alice");  // Not a change.
  v1::SessionClose close;
  close.set_session_id("a1");
  messaging_->CloseSession(&gw_, close);
  close.set_session_id("a2");
  messaging_->CloseSession(&gw_, close);
  auto presence = Only(FramesFor("b1"), v1::ServerFrame::kPresence);
  ASSERT_EQ(presence.size(), 2u);
  EXPECT_EQ(presence[0].presence().user(), "alice");
  EXPECT_TRUE(presence[0].presence().online());
  EXPECT_FALSE(presence[1].presence().online());
  EXPECT_THAT(Only(FramesFor("c1"), v1::ServerFrame::kPresence), IsEmpty());
}

TEST_P(MessagingTest, NewSessionLearnsWhichContactsAreAlreadyOnline) {
  ASSERT_TRUE(store_->CreateGroup({"g", "", {"alice", "bob"}, now_}, 10).ok());
  Open("b1", "bob");
  Open("c1", "carol");  // Online, but not a contact of alice.
  Open("a1", "alice");
  auto presence = Only(FramesFor("a1"), v1::ServerFrame::kPresence);
  ASSERT_EQ(presence.size(), 1u);
  EXPECT_EQ(presence[0].presence().user(), "bob");
  EXPECT_TRUE(presence[0].presence().online());
  // A re-announced session already knew: no snapshot again.
  v1::SessionOpen again = OpenRequest("a1", Token("alice"));
  again.set_reannounce(true);
  ASSERT_TRUE(OpenWith(again, &gw_).has_accepted());
  EXPECT_EQ(Only(FramesFor("a1"), v1::ServerFrame::kPresence).size(), 1u);
}

TEST_P(MessagingTest, UsersOfALostStreamGoOfflineOnlyAfterTheGrace) {
  ASSERT_TRUE(
      store_->CreateGroup({"g", "", {"alice", "bob", "carol"}, now_}, 10).ok());
  Open("b1", "bob");
  RecordingLinkStream lost, back;
  v1::LinkHello hello;
  hello.set_gateway_id("gw-2");
  messaging_->StreamOpened(&lost, hello);
  ASSERT_TRUE(Open("a1", "alice", 0, &lost).has_accepted());
  ASSERT_TRUE(Open("c1", "carol", 0, &lost).has_accepted());
  messaging_->StreamClosed(&lost);
  ASSERT_EQ(scheduled_.size(), 1u);
  EXPECT_EQ(scheduled_[0].first, absl::Seconds(30));
  // carol's gateway re-announces her in time; alice's does not.
  messaging_->StreamOpened(&back, hello);
  v1::SessionOpen carol = OpenRequest("c1", Token("carol"));
  carol.set_reannounce(true);
  ASSERT_TRUE(OpenWith(carol, &back).has_accepted());
  auto presence = [&] {
    std::vector<std::pair<std::string, bool>> out;
    for (const auto& f : Only(FramesFor("b1"), v1::ServerFrame::kPresence)) {
      out.emplace_back(f.presence().user(), f.presence().online());
    }
    return out;
  };
  const auto before = presence();  // alice and carol came online.
  ASSERT_EQ(before.size(), 2u);
  scheduled_[0].second();
  auto after = presence();
  ASSERT_EQ(after.size(), 3u);
  EXPECT_EQ(after[2], std::make_pair(std::string("alice"), false));
  // When alice's gateway finally re-announces her, she is online again.
  v1::SessionOpen alice = OpenRequest("a1", Token("alice"));
  alice.set_reannounce(true);
  ASSERT_TRUE(OpenWith(alice, &back).has_accepted());
  after = presence();
  ASSERT_EQ(after.size(), 4u);
  EXPECT_EQ(after[3], std::make_pair(std::string("alice"), true));
}

TEST_P(MessagingTest, PingIsAnsweredAndHelloIsAnInvalidFrame) {
  Open("a1", "alice");
  v1::ClientFrame ping;
  ping.mutable_ping()->set_nonce("n1");
  Frame("a1", ping);
  v1::ClientFrame hello;
  hello.mutable_hello()->set_token("x");
  Frame("a1", hello);
  Frame("a1", v1::ClientFrame());
  std::vector<v1::ServerFrame> frames = FramesFor("a1");
  ASSERT_EQ(frames.size(), 3u);
  EXPECT_EQ(frames[0].pong().nonce(), "n1");
  EXPECT_EQ(frames[1].error().code(), v1::ERROR_CODE_INVALID_FRAME);
  EXPECT_EQ(frames[2].error().code(), v1::ERROR_CODE_INVALID_FRAME);
}

TEST_P(MessagingTest, EveryAnswerCarriesItsRequestsRequestId) {
  Open("a1", "alice");
  Open("b1", "bob");
  auto with_id = [](v1::ClientFrame frame, const std::string& id) {
    frame.set_request_id(id);
    return frame;
  };
  v1::ClientFrame ping;
  ping.mutable_ping()->set_nonce("n1");
  Frame("a1", with_id(ping, "r-ping"));
  v1::ClientFrame list;
  list.mutable_list_blocked();
  Frame("a1", with_id(list, "r-list"));
  v1::ClientFrame history;
  history.mutable_history()->set_conversation("d:bob:carol");
  Frame("a1", with_id(history, "r-history"));
  v1::ClientFrame send;
  send.mutable_send()->set_client_msg_id("c1");
  send.mutable_send()->mutable_to()->set_user("bob");
  send.mutable_send()->set_text("hi");
  Frame("a1", with_id(send, "r-send"));
  send.mutable_send()->mutable_to()->set_user("nobody");
  send.mutable_send()->set_client_msg_id("c2");
  Frame("a1", with_id(send, "r-refused"));
  std::vector<v1::ServerFrame> frames = FramesFor("a1");
  ASSERT_EQ(frames.size(), 5u);
  EXPECT_EQ(frames[0].pong().nonce(), "n1");
  EXPECT_EQ(frames[0].request_id(), "r-ping");
  EXPECT_TRUE(frames[1].has_blocked());
  EXPECT_EQ(frames[1].request_id(), "r-list");
  EXPECT_EQ(frames[2].error().code(), v1::ERROR_CODE_PERMISSION_DENIED);
  EXPECT_EQ(frames[2].request_id(), "r-history");
  std::map<std::string, v1::ServerFrame> by_id;
  for (int i = 3; i < 5; ++i) by_id[frames[i].request_id()] = frames[i];
  EXPECT_EQ(by_id["r-send"].ack().client_msg_id(), "c1");
  EXPECT_EQ(by_id["r-refused"].error().code(), v1::ERROR_CODE_NOT_FOUND);
  // What answers no request of bob's carries no request_id.
  std::vector<v1::ServerFrame> bob = FramesFor("b1");
  auto messages = Only(bob, v1::ServerFrame::kMessage);
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].request_id(), "");
}

TEST_P(MessagingTest, SendAsDeliversLikeAClientSend) {
  Open("b1", "bob");
  Open("a1", "alice");
  absl::Notification done;
  absl::StatusOr<v1::Ack> ack;
  v1::Send send;
  send.set_client_msg_id("bot-1");
  send.mutable_to()->set_user("bob");
  send.set_text("system");
  messaging_->SendAs("alice", send, [&](absl::StatusOr<v1::Ack> a) {
    ack = std::move(a);
    done.Notify();
  });
  done.WaitForNotification();
  ASSERT_TRUE(ack.ok()) << ack.status();
  EXPECT_EQ(ack->inbox_seq(), 1u);
  EXPECT_THAT(InboxSeqs(FramesFor("b1")), ElementsAre(1));
  EXPECT_THAT(InboxSeqs(FramesFor("a1")), ElementsAre(1));  // All devices.
}

// Random traffic, valid and not: nothing crashes, every error names its
// problem, every session sees strictly increasing inbox_seqs, and every inbox
// stays gapless.
TEST_P(MessagingTest, RandomTrafficKeepsInboxesOrderedAndGapless) {
  ASSERT_TRUE(
      store_->CreateGroup({"g", "", {"alice", "bob", "carol"}, now_}, 10).ok());
  std::mt19937 rng(12345);
  auto pick = [&](auto&& items) {
    return items[std::uniform_int_distribution<size_t>(0,
                                                       items.size() - 1)(rng)];
  };
  const std::vector<std::string> users = {"alice", "bob", "carol", "dave",
                                          "ghost"};
  const std::vector<std::string> sessions = {"s0", "s1", "s2", "s3",
                                             "s4", "s5", "s6", "s7"};
  const std::vector<std::string> conversations = {
      "d:alice:bob", "d:bob:alice", "g:g", "g:nope", "x", "d:carol:dave", ""};
  for (int step = 0; step < 2000; ++step) {
    const std::string session = pick(sessions);
    v1::ClientFrame f;
    switch (std::uniform_int_distribution<int>(0, 9)(rng)) {
      case 0: {
        v1::SessionOpen open = OpenRequest(
            session,
            pick(std::vector<std::string>{Token(pick(users)), "bad-token"}),
            std::uniform_int_distribution<uint64_t>(0, 20)(rng));
        open.set_reannounce(rng() % 2 == 0);
        messaging_->OpenSession(&gw_, open);
        continue;
      }
      case 1: {
        v1::SessionClose close;
        close.set_session_id(session);
        messaging_->CloseSession(&gw_, close);
        continue;
      }
      case 2:
      case 3:
      case 4: {
        v1::Send* send = f.mutable_send();
        send->set_client_msg_id("c" + std::to_string(rng() % 300));
        if (rng() % 3 == 0) {
          send->mutable_to()->set_group(rng() % 4 ? "g" : "nope");
        } else if (rng() % 10) {
          send->mutable_to()->set_user(pick(users));
        }
        send->set_text(std::string(rng() % 20, 'x'));
        break;
      }
      case 5:
        f.mutable_sync()->set_after_seq(rng() % 30);
        f.mutable_sync()->set_limit(rng() % 5);
        break;
      case 6:
        f.mutable_read()->set_conversation(pick(conversations));
        f.mutable_read()->set_seq(rng() % 10);
        break;
      case 7:
        f.mutable_typing()->mutable_to()->set_user(pick(users));
        break;
      case 8:
        f.mutable_ping()->set_nonce("n");
        break;
      default:
        break;  // An empty frame.
    }
    Frame(session, f);
  }
  Settle();
  std::map<std::string, uint64_t> last;
  for (const v1::ServiceEvent& e : gw_.events()) {
    // A (re-)opened session id starts over, possibly as another user.
    if (e.has_accepted()) last.erase(e.accepted().session_id());
    if (!e.has_delivery()) continue;
    const v1::ServerFrame& frame = e.delivery().frame();
    if (frame.has_error()) {
      EXPECT_NE(frame.error().code(), v1::ERROR_CODE_UNSPECIFIED);
      EXPECT_NE(frame.error().code(), v1::ERROR_CODE_INTERNAL)
          << frame.error().message();
      EXPECT_FALSE(frame.error().message().empty());
    }
    if (!frame.has_message()) continue;
    for (int i = 0; i < e.delivery().session_ids_size(); ++i) {
      const std::string& id = e.delivery().session_ids(i);
      const uint64_t seq =
          FrameForSession(e.delivery(), i).message().inbox_seq();
      EXPECT_GT(seq, last[id]) << id;
      last[id] = seq;
    }
  }
  for (const char* user : {"alice", "bob", "carol", "dave"}) {
    const uint64_t head = *store_->InboxHead(user);
    auto inbox = store_->ReadInbox(user, 0, 0, 100000);
    ASSERT_TRUE(inbox.ok());
    ASSERT_EQ(inbox->size(), head) << user;
    for (size_t i = 0; i < inbox->size(); ++i) {
      EXPECT_EQ((*inbox)[i].inbox_seq, i + 1) << user;
    }
  }
}

// Sessions open (with resume_after) while messages keep committing: every
// session must see every inbox_seq after resume_after exactly once, in order.
TEST_P(MessagingTest, OpensRacingWithLiveTrafficLoseAndRepeatNothing) {
  Open("a1", "alice");
  constexpr int kMessages = 300;
  std::atomic<bool> stop{false};
  std::thread sender([&] {
    for (int i = 0; i < kMessages; ++i) {
      v1::Send send;
      send.set_client_msg_id("r" + std::to_string(i));
      send.mutable_to()->set_user("bob");
      send.set_text("x");
      messaging_->SendAs("alice", send, [](absl::StatusOr<v1::Ack>) {});
    }
    stop.store(true);
  });
  std::vector<std::pair<std::string, uint64_t>> opened;
  for (int i = 0; !stop.load() || i < 3; ++i) {
    const std::string session = "b" + std::to_string(i);
    const uint64_t resume = store_->InboxHead("bob").value_or(0) / 2;
    if (Open(session, "bob", resume).has_accepted()) {
      opened.push_back({session, resume});
    }
    if (i >= 3) {  // Stay within the session limit.
      v1::SessionClose close;
      close.set_session_id(opened[opened.size() - 4].first);
      messaging_->CloseSession(&gw_, close);
    }
  }
  sender.join();
  Settle();
  const uint64_t head = *store_->InboxHead("bob");
  ASSERT_EQ(head, static_cast<uint64_t>(kMessages));
  // Sessions still open must have everything from resume_after + 1 (or their
  // head, when resume_after was 0) to the end.
  for (size_t i = opened.size() - 3; i < opened.size(); ++i) {
    const auto& [session, resume] = opened[i];
    std::vector<uint64_t> seqs = InboxSeqs(gw_.FramesFor(session));
    // With resume_after 0 nothing is replayed: a session opened after the
    // last commit rightly gets nothing.
    if (resume == 0 && seqs.empty()) continue;
    ASSERT_FALSE(seqs.empty()) << session;
    if (resume > 0) {
      EXPECT_EQ(seqs.front(), resume + 1) << session;
    }
    for (size_t k = 1; k < seqs.size(); ++k) {
      ASSERT_EQ(seqs[k], seqs[k - 1] + 1) << session;
    }
    EXPECT_EQ(seqs.back(), head) << session;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Stores, MessagingTest,
    ::testing::Values(
        StoreFactory{"Fake", [] { return std::make_unique<FakeStore>(); }},
        StoreFactory{"Sqlite",
                     []() -> std::unique_ptr<Store> {
                       std::string dir =
                           ::testing::TempDir() + "/messaging_test.XXXXXX";
                       EXPECT_NE(mkdtemp(dir.data()), nullptr);
                       SqliteStoreOptions options;
                       options.path = dir + "/parley.db";
                       auto store = SqliteStore::Open(options);
                       EXPECT_TRUE(store.ok()) << store.status();
                       return std::move(store).value();
                     }}),
    [](const ::testing::TestParamInfo<StoreFactory>& info) {
      return info.param.name;
    });

}  // namespace
}  // namespace parley::service
