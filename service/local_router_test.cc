#include "service/local_router.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/recording_link_stream.h"

namespace parley::service {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

SessionInfo Info(const std::string& session, const std::string& user) {
  SessionInfo info;
  info.session_id = session;
  info.user_id = user;
  info.connected_at = absl::FromUnixSeconds(1);
  return info;
}

v1::Message Msg(uint64_t inbox_seq) {
  v1::Message m;
  m.set_inbox_seq(inbox_seq);
  m.set_text("m" + std::to_string(inbox_seq));
  return m;
}

v1::SessionAccepted Accepted(const std::string& session, uint64_t head) {
  v1::SessionAccepted a;
  a.set_session_id(session);
  a.set_inbox_seq(head);
  return a;
}

std::vector<uint64_t> InboxSeqs(const std::vector<v1::ServerFrame>& frames) {
  std::vector<uint64_t> out;
  for (const auto& f : frames) {
    if (f.has_message()) out.push_back(f.message().inbox_seq());
  }
  return out;
}

class LocalRouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    router_.AddStream(&gw1_, "gw-1");
    router_.AddStream(&gw2_, "gw-2");
  }
  // Message `inbox_seq` to `user` alone.
  size_t Deliver(const std::string& user, uint64_t inbox_seq,
                 absl::string_view except_session) {
    return router_.DeliverMessage({{user, inbox_seq}}, Msg(inbox_seq),
                                  except_session);
  }
  void OpenLive(RecordingLinkStream* stream, const std::string& session,
                const std::string& user, uint64_t head = 0) {
    ASSERT_TRUE(router_.BeginOpen(stream, Info(session, user)).ok());
    ASSERT_TRUE(router_.CompleteOpen(session, Accepted(session, head), {}));
  }

  LocalRouter router_{3};
  RecordingLinkStream gw1_;
  RecordingLinkStream gw2_;
};

TEST_F(LocalRouterTest, FirstSessionOfAUserIsReportedAsComingOnline) {
  auto first = router_.BeginOpen(&gw1_, Info("s1", "alice"));
  auto second = router_.BeginOpen(&gw2_, Info("s2", "alice"));
  ASSERT_TRUE(first.ok() && second.ok());
  EXPECT_TRUE(*first);
  EXPECT_FALSE(*second);
  EXPECT_TRUE(router_.IsOnline("alice"));
}

TEST_F(LocalRouterTest, SessionsPerUserAreLimited) {
  for (const char* s : {"s1", "s2", "s3"}) {
    ASSERT_TRUE(router_.BeginOpen(&gw1_, Info(s, "alice")).ok());
  }
  auto fourth = router_.BeginOpen(&gw1_, Info("s4", "alice"));
  EXPECT_EQ(fourth.status().code(), absl::StatusCode::kResourceExhausted);
  // Re-announcing an existing session replaces it rather than adding one.
  EXPECT_TRUE(router_.BeginOpen(&gw2_, Info("s2", "alice")).ok());
  EXPECT_EQ(router_.session_count(), 3u);
}

TEST_F(LocalRouterTest,
       OpenSendsAcceptedThenReplayThenHeldFramesWithoutRepeats) {
  ASSERT_TRUE(router_.BeginOpen(&gw1_, Info("s1", "bob")).ok());
  // Committed while the open reads the inbox: 5 is also in the replay, 6 is
  // newer than the head.
  Deliver("bob", 5, "");
  Deliver("bob", 6, "");
  EXPECT_THAT(gw1_.events(), IsEmpty());
  ASSERT_TRUE(
      router_.CompleteOpen("s1", Accepted("s1", 5), {Msg(3), Msg(4), Msg(5)}));
  Deliver("bob", 6, "");  // A late duplicate.
  Deliver("bob", 7, "");
  std::vector<v1::ServiceEvent> events = gw1_.events();
  ASSERT_FALSE(events.empty());
  EXPECT_TRUE(events[0].has_accepted());
  EXPECT_EQ(events[0].accepted().inbox_seq(), 5u);
  EXPECT_THAT(InboxSeqs(gw1_.FramesFor("s1")), ElementsAre(3, 4, 5, 6, 7));
}

TEST_F(LocalRouterTest, MessagesAtOrBelowWhatWasSentAreDropped) {
  OpenLive(&gw1_, "s1", "bob", 10);
  Deliver("bob", 9, "");
  Deliver("bob", 10, "");
  Deliver("bob", 11, "");
  Deliver("bob", 11, "");
  EXPECT_THAT(InboxSeqs(gw1_.FramesFor("s1")), ElementsAre(11));
}

TEST_F(LocalRouterTest, SessionsOfAUserOnOneStreamShareOneDelivery) {
  OpenLive(&gw1_, "a", "bob");
  OpenLive(&gw1_, "b", "bob");
  OpenLive(&gw2_, "c", "bob");
  gw1_.Clear();
  gw2_.Clear();
  EXPECT_EQ(Deliver("bob", 1, ""), 3u);
  ASSERT_EQ(gw1_.events().size(), 1u);
  EXPECT_THAT(gw1_.events()[0].delivery().session_ids(), ElementsAre("a", "b"));
  ASSERT_EQ(gw2_.events().size(), 1u);
  EXPECT_THAT(gw2_.events()[0].delivery().session_ids(), ElementsAre("c"));
}

TEST_F(LocalRouterTest,
       AGroupMessageCrossesEachStreamOnceWithEverySessionsSeq) {
  OpenLive(&gw1_, "a", "alice");
  OpenLive(&gw1_, "b", "bob");
  OpenLive(&gw1_, "b2", "bob");
  OpenLive(&gw2_, "c", "carol");
  gw1_.Clear();
  gw2_.Clear();
  v1::Message message;
  message.set_text("to the team");
  EXPECT_EQ(router_.DeliverMessage({{"alice", 7}, {"bob", 3}, {"carol", 12}},
                                   message, "a"),
            3u);
  const std::vector<v1::ServiceEvent> events = gw1_.events();
  ASSERT_EQ(events.size(), 1u);
  const v1::Delivery& one = events[0].delivery();
  EXPECT_THAT(one.session_ids(), ElementsAre("b", "b2"));
  EXPECT_THAT(one.inbox_seqs(), ElementsAre(3, 3));
  EXPECT_EQ(one.frame().message().text(), "to the team");
  EXPECT_EQ(one.frame().message().inbox_seq(), 0u);
  ASSERT_EQ(gw2_.events().size(), 1u);
  EXPECT_THAT(gw2_.events()[0].delivery().inbox_seqs(), ElementsAre(12));
  EXPECT_THAT(InboxSeqs(gw2_.FramesFor("c")), ElementsAre(12));
}

TEST_F(LocalRouterTest, TheSendingSessionIsSkippedAndItsAckCoversTheMessage) {
  OpenLive(&gw1_, "a", "alice");
  OpenLive(&gw1_, "b", "alice");
  Deliver("alice", 1, "a");
  v1::ServerFrame ack;
  ack.mutable_ack()->set_inbox_seq(1);
  router_.SendToSession("a", ack, 1);
  Deliver("alice", 1, "");  // Must not reach "a" again.
  EXPECT_THAT(InboxSeqs(gw1_.FramesFor("a")), IsEmpty());
  EXPECT_THAT(InboxSeqs(gw1_.FramesFor("b")), ElementsAre(1));
  EXPECT_EQ(gw1_.FramesFor("a").size(), 1u);
}

TEST_F(LocalRouterTest, OneFrameForManyUsersIsOneDeliveryPerStream) {
  OpenLive(&gw1_, "a", "alice");
  OpenLive(&gw1_, "b", "bob");
  OpenLive(&gw2_, "c", "carol");
  ASSERT_TRUE(router_.BeginOpen(&gw1_, Info("d", "dave")).ok());  // Opening.
  gw1_.Clear();
  gw2_.Clear();
  v1::ServerFrame frame;
  frame.mutable_presence()->set_user("eve");
  router_.SendToUsers({"alice", "bob", "carol", "dave", "nobody"}, frame);
  ASSERT_EQ(gw1_.events().size(), 1u);
  EXPECT_THAT(gw1_.events()[0].delivery().session_ids(), ElementsAre("a", "b"));
  ASSERT_EQ(gw2_.events().size(), 1u);
  EXPECT_THAT(gw2_.events()[0].delivery().session_ids(), ElementsAre("c"));
  // The opening session gets it once it is live.
  ASSERT_TRUE(router_.CompleteOpen("d", Accepted("d", 0), {}));
  auto frames = gw1_.FramesFor("d");
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].presence().user(), "eve");
}

TEST_F(LocalRouterTest, AbortOpenRejectsAndForgets) {
  ASSERT_TRUE(router_.BeginOpen(&gw1_, Info("s1", "bob")).ok());
  v1::SessionRejected rejected;
  rejected.set_session_id("s1");
  rejected.set_reason(v1::REJECT_REASON_UNAVAILABLE);
  EXPECT_TRUE(router_.AbortOpen(&gw1_, rejected));
  EXPECT_FALSE(router_.IsOnline("bob"));
  ASSERT_EQ(gw1_.events().size(), 1u);
  EXPECT_TRUE(gw1_.events()[0].has_rejected());
}

TEST_F(LocalRouterTest, CloseReportsTheLastSessionOnly) {
  OpenLive(&gw1_, "a", "bob");
  OpenLive(&gw2_, "b", "bob");
  EXPECT_FALSE(router_.Close(&gw1_, "a").has_value());
  EXPECT_FALSE(router_.Close(&gw1_, "b").has_value());  // Not on gw1.
  EXPECT_EQ(router_.Close(&gw2_, "b"), "bob");
  EXPECT_FALSE(router_.IsOnline("bob"));
}

TEST_F(LocalRouterTest, RemoveStreamForgetsItsSessionsOnly) {
  OpenLive(&gw1_, "a", "bob");
  OpenLive(&gw2_, "b", "carol");
  EXPECT_THAT(router_.RemoveStream(&gw1_), ElementsAre("bob"));
  EXPECT_FALSE(router_.IsOnline("bob"));
  EXPECT_TRUE(router_.IsOnline("carol"));
  EXPECT_EQ(router_.gateway_count(), 1u);
  gw1_.Clear();
  Deliver("bob", 1, "");
  EXPECT_THAT(gw1_.events(), IsEmpty());
}

TEST_F(LocalRouterTest, DisconnectSendsOrdersAndForgets) {
  OpenLive(&gw1_, "a", "bob");
  OpenLive(&gw1_, "b", "bob");
  OpenLive(&gw2_, "c", "carol");
  gw1_.Clear();
  Router::Disconnected out =
      router_.Disconnect("bob", "", 4003, "no-reconnect: bye", false);
  EXPECT_EQ(out.sessions, 2u);
  EXPECT_THAT(out.offline_users, ElementsAre("bob"));
  ASSERT_EQ(gw1_.events().size(), 1u);
  const v1::DisconnectOrder order = gw1_.events()[0].disconnect();
  EXPECT_THAT(order.session_ids(), ElementsAre("a", "b"));
  EXPECT_EQ(order.close_code(), 4003u);
  EXPECT_FALSE(order.reconnect());
  EXPECT_EQ(router_.Disconnect("", "c", 4003, "reconnect: x", true).sessions,
            1u);
  EXPECT_EQ(router_.session_count(), 0u);
}

TEST_F(LocalRouterTest, BroadcastReachesEveryStream) {
  OpenLive(&gw1_, "a", "bob");
  gw1_.Clear();
  v1::ServerFrame frame;
  frame.mutable_announcement()->set_text("maintenance");
  Router::Broadcasted out = router_.Broadcast(frame);
  EXPECT_EQ(out.gateways, 2u);
  EXPECT_EQ(out.sessions, 1u);
  ASSERT_EQ(gw1_.events().size(), 1u);
  EXPECT_EQ(gw1_.events()[0].broadcast().frame().announcement().text(),
            "maintenance");
  EXPECT_EQ(gw2_.events().size(), 1u);
}

TEST_F(LocalRouterTest, ListSessionsByUserWithGateway) {
  OpenLive(&gw2_, "b1", "bob");
  OpenLive(&gw1_, "a1", "alice");
  std::vector<SessionInfo> all = router_.ListSessions("");
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].user_id, "alice");
  EXPECT_EQ(all[1].gateway_id, "gw-2");
  EXPECT_EQ(router_.ListSessions("bob").size(), 1u);
}

}  // namespace
}  // namespace parley::service
