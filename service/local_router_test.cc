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

// The router of a replica whose deliveries may come out of order: catch-ups
// are recorded, and the test answers them as the store would.
class CatchUpTest : public LocalRouterTest {
 protected:
  void SetUp() override {
    LocalRouterTest::SetUp();
    router_.SetCatchUp([this](LocalRouter::CatchUpRequest r) {
      requests_.push_back(std::move(r));
    });
    OpenLive(&gw1_, "s1", "bob", 5);
  }
  v1::ServerFrame AckFrame(uint64_t inbox_seq) {
    v1::ServerFrame ack;
    ack.mutable_ack()->set_inbox_seq(inbox_seq);
    ack.mutable_ack()->set_client_msg_id("c" + std::to_string(inbox_seq));
    return ack;
  }
  // What s1 was sent: "m<seq>" for messages, "a<seq>" for Acks.
  std::vector<std::string> Sent() {
    std::vector<std::string> out;
    for (const v1::ServerFrame& f : gw1_.FramesFor("s1")) {
      if (f.has_message())
        out.push_back("m" + std::to_string(f.message().inbox_seq()));
      if (f.has_ack()) out.push_back("a" + std::to_string(f.ack().inbox_seq()));
      if (f.has_typing()) out.push_back("typing");
    }
    return out;
  }
  std::vector<v1::Message> Msgs(std::vector<uint64_t> seqs) {
    std::vector<v1::Message> out;
    for (uint64_t s : seqs) out.push_back(Msg(s));
    return out;
  }

  std::vector<LocalRouter::CatchUpRequest> requests_;
};

TEST_F(CatchUpTest, MessagesInOrderNeverAskForACatchUp) {
  Deliver("bob", 6, "");
  Deliver("bob", 7, "");
  router_.SendToSession("s1", AckFrame(8), 8);
  EXPECT_THAT(Sent(), ElementsAre("m6", "m7", "a8"));
  EXPECT_THAT(requests_, IsEmpty());
}

TEST_F(CatchUpTest, AMessagePastAGapWaitsForTheCatchUpThenAllGoOutInOrder) {
  Deliver("bob", 8, "");
  ASSERT_EQ(requests_.size(), 1u);
  EXPECT_EQ(requests_[0].user, "bob");
  EXPECT_EQ(requests_[0].after_seq, 5u);
  EXPECT_EQ(requests_[0].upto_seq, 7u);
  Deliver("bob", 9, "");
  Deliver("bob", 6, "");  // Arrives late, while the catch-up reads.
  v1::ServerFrame typing;
  typing.mutable_typing()->set_from("alice");
  router_.SendToUser("bob", typing);
  EXPECT_THAT(Sent(), IsEmpty());
  router_.FinishCatchUp(requests_[0], Msgs({6, 7}));
  EXPECT_THAT(Sent(), ElementsAre("m6", "m7", "m8", "m9", "typing"));
  Deliver("bob", 7, "");  // The publish that was late: already delivered.
  Deliver("bob", 10, "");
  EXPECT_THAT(Sent(), ElementsAre("m6", "m7", "m8", "m9", "typing", "m10"));
  EXPECT_EQ(requests_.size(), 1u);
}

TEST_F(CatchUpTest, AnAckAheadOfAMessageDoesNotMakeTheMessageLookDelivered) {
  // bob's own send committed at 7 after a message to him at 6 whose
  // delivery has not arrived yet.
  router_.SendToSession("s1", AckFrame(7), 7);
  EXPECT_THAT(Sent(), IsEmpty());
  ASSERT_EQ(requests_.size(), 1u);
  EXPECT_EQ(requests_[0].upto_seq, 6u);
  router_.FinishCatchUp(requests_[0], Msgs({6}));
  Deliver("bob", 6, "");
  EXPECT_THAT(Sent(), ElementsAre("m6", "a7"));
}

TEST_F(CatchUpTest, AHeldAckTakesThePlaceOfItsMessageInTheCatchUp) {
  Deliver("bob", 9, "");  // Gap (5, 8].
  router_.SendToSession("s1", AckFrame(7), 7);
  ASSERT_EQ(requests_.size(), 1u);
  router_.FinishCatchUp(requests_[0], Msgs({6, 7, 8}));
  EXPECT_THAT(Sent(), ElementsAre("m6", "a7", "m8", "m9"));
}

TEST_F(CatchUpTest, AnAckAtOrBelowWhatWasSentStillAnswersItsSend) {
  Deliver("bob", 6, "");
  router_.SendToSession("s1", AckFrame(4), 4);  // A repeated Send's Ack.
  Deliver("bob", 7, "");
  EXPECT_THAT(Sent(), ElementsAre("m6", "a4", "m7"));
  EXPECT_THAT(requests_, IsEmpty());
}

TEST_F(CatchUpTest, AFailedCatchUpIsAskedAgainAndDropsNothing) {
  Deliver("bob", 7, "");
  ASSERT_EQ(requests_.size(), 1u);
  router_.FinishCatchUp(requests_[0],
                        absl::UnavailableError("the store is down"));
  ASSERT_EQ(requests_.size(), 2u);
  EXPECT_EQ(requests_[1].attempt, 1);
  EXPECT_EQ(requests_[1].id, requests_[0].id);
  EXPECT_EQ(requests_[1].after_seq, 5u);
  Deliver("bob", 8, "");
  EXPECT_THAT(Sent(), IsEmpty());
  router_.FinishCatchUp(requests_[1], Msgs({6}));
  EXPECT_THAT(Sent(), ElementsAre("m6", "m7", "m8"));
}

TEST_F(CatchUpTest, ACatchUpCutShortLeavesTheRestToTheClientsSync) {
  Deliver("bob", 20, "");
  ASSERT_EQ(requests_.size(), 1u);
  router_.FinishCatchUp(requests_[0], Msgs({6, 7}));  // The replay limit.
  Deliver("bob", 21, "");
  EXPECT_THAT(Sent(), ElementsAre("m6", "m7", "m20", "m21"));
  EXPECT_EQ(requests_.size(), 1u);
}

TEST_F(CatchUpTest, ASecondGapAmongHeldFramesAsksAgain) {
  Deliver("bob", 7, "");  // Gap (5, 6].
  Deliver("bob", 9, "");  // Held; after the catch-up a gap (7, 8].
  router_.FinishCatchUp(requests_[0], Msgs({6}));
  EXPECT_THAT(Sent(), ElementsAre("m6", "m7"));
  ASSERT_EQ(requests_.size(), 2u);
  EXPECT_EQ(requests_[1].after_seq, 7u);
  EXPECT_EQ(requests_[1].upto_seq, 8u);
  router_.FinishCatchUp(requests_[1], Msgs({8}));
  EXPECT_THAT(Sent(), ElementsAre("m6", "m7", "m8", "m9"));
}

TEST_F(CatchUpTest, CatchUpToAsksForWhatASessionMayHaveMissed) {
  router_.CatchUpTo("bob", 5);  // Nothing missed.
  EXPECT_THAT(requests_, IsEmpty());
  router_.CatchUpTo("bob", 7);
  ASSERT_EQ(requests_.size(), 1u);
  EXPECT_EQ(requests_[0].after_seq, 5u);
  EXPECT_EQ(requests_[0].upto_seq, 7u);
  router_.FinishCatchUp(requests_[0], Msgs({6, 7}));
  EXPECT_THAT(Sent(), ElementsAre("m6", "m7"));
}

TEST_F(CatchUpTest, AGapInTheHeldFramesOfAnOpenAsksForACatchUp) {
  ASSERT_TRUE(router_.BeginOpen(&gw1_, Info("s2", "carol")).ok());
  Deliver("carol", 4, "");  // Committed elsewhere after the head was read.
  ASSERT_TRUE(router_.CompleteOpen("s2", Accepted("s2", 2), {}));
  ASSERT_EQ(requests_.size(), 1u);
  EXPECT_EQ(requests_[0].session_id, "s2");
  EXPECT_EQ(requests_[0].after_seq, 2u);
  EXPECT_EQ(requests_[0].upto_seq, 3u);
  router_.FinishCatchUp(requests_[0], Msgs({3}));
  EXPECT_THAT(InboxSeqs(gw1_.FramesFor("s2")), ElementsAre(3, 4));
}

TEST_F(CatchUpTest, MessagesHeldPastTheBoundAreReadBackFromTheStore) {
  ASSERT_TRUE(router_.BeginOpen(&gw1_, Info("s2", "carol")).ok());
  for (uint64_t seq = 1; seq <= 4100; ++seq) Deliver("carol", seq, "");
  ASSERT_TRUE(router_.CompleteOpen("s2", Accepted("s2", 0), {}));
  EXPECT_EQ(InboxSeqs(gw1_.FramesFor("s2")).size(), 4096u);
  ASSERT_EQ(requests_.size(), 1u);
  EXPECT_EQ(requests_[0].after_seq, 4096u);
  EXPECT_EQ(requests_[0].upto_seq, 4100u);
  router_.FinishCatchUp(requests_[0], Msgs({4097, 4098, 4099, 4100}));
  EXPECT_EQ(InboxSeqs(gw1_.FramesFor("s2")).back(), 4100u);
}

TEST_F(LocalRouterTest, WithoutACatchUpMessagesHeldPastTheBoundAreLeftToSync) {
  ASSERT_TRUE(router_.BeginOpen(&gw1_, Info("s1", "carol")).ok());
  for (uint64_t seq = 1; seq <= 4100; ++seq) Deliver("carol", seq, "");
  ASSERT_TRUE(router_.CompleteOpen("s1", Accepted("s1", 0), {}));
  Deliver("carol", 4101, "");
  std::vector<uint64_t> seqs = InboxSeqs(gw1_.FramesFor("s1"));
  ASSERT_EQ(seqs.size(), 4097u);
  EXPECT_EQ(seqs[4095], 4096u);
  EXPECT_EQ(seqs[4096], 4101u);  // The client sees the gap and syncs.
}

TEST_F(CatchUpTest, ACatchUpForAReplacedSessionIsIgnored) {
  Deliver("bob", 7, "");
  ASSERT_EQ(requests_.size(), 1u);
  OpenLive(&gw2_, "s1", "bob", 9);  // Re-announced on another stream.
  router_.FinishCatchUp(requests_[0], Msgs({6}));
  EXPECT_THAT(InboxSeqs(gw2_.FramesFor("s1")), IsEmpty());
  EXPECT_THAT(Sent(), IsEmpty());
}

}  // namespace
}  // namespace parley::service
