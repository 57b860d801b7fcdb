// DispatchServiceBatch with Sessions on fake connections and a
// FakeSessionDirectory: which session gets which event, and that nothing
// runs until the session's executor runs it.
#include "gateway/service_batch_dispatch.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/frame_codec.h"
#include "gateway/session.h"
#include "gateway/testing/fake_session_directory.h"
#include "gateway/upstream.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "parley/v1/client.pb.h"
#include "parley/v1/gateway_link.pb.h"

namespace parley::gateway {
namespace {

using parley::v1::ServerFrame;
using parley::v1::ServiceBatch;
using parley::v1::ServiceEvent;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

class RecordingConnection final : public Connection {
 public:
  void Send(const std::string& frame) noexcept override {
    ServerFrame decoded;
    EXPECT_TRUE(DecodeFrame(Encoding::kJson, frame, &decoded).ok()) << frame;
    frames.push_back(decoded);
  }
  void Close(uint16_t code, absl::string_view) noexcept override {
    close_code = code;
  }
  size_t BufferedAmount() const noexcept override { return 0; }

  std::vector<ServerFrame> frames;
  uint16_t close_code = 0;
};

// The link: always up.
class UpUpstream final : public Upstream {
 public:
  std::optional<uint64_t> Open(const parley::v1::SessionOpen&) override {
    return 1;
  }
  bool Frame(uint64_t, parley::v1::SessionFrame) override { return true; }
  void Close(parley::v1::SessionClose) override {}
};

// A client's session, waiting for the service's answer to its open.
struct Client {
  explicit Client(const std::string& id, Upstream* upstream)
      : session(SessionOptions{}, id, Encoding::kJson, "127.0.0.1:5000",
                &connection, upstream,
                [] { return absl::FromUnixSeconds(1767225600); }) {
    ConnectParams params;
    params.token = "token";
    session.Start(params);
  }

  // Accepts the session (as the service would) and forgets its Welcome.
  void GoLive() {
    parley::v1::SessionAccepted accepted;
    accepted.set_session_id(session.session_id());
    accepted.set_user_id("alice");
    session.OnAccepted(accepted);
    ASSERT_EQ(session.state(), Session::State::kLive);
    connection.frames.clear();
  }

  // The inbox_seq of each Message the client got.
  std::vector<uint64_t> InboxSeqs() const {
    std::vector<uint64_t> out;
    for (const ServerFrame& frame : connection.frames) {
      if (frame.has_message()) out.push_back(frame.message().inbox_seq());
    }
    return out;
  }

  RecordingConnection connection;
  Session session;
};

ServiceEvent DeliveryOf(std::vector<std::string> session_ids,
                        std::vector<uint64_t> inbox_seqs,
                        uint64_t frame_inbox_seq = 0) {
  ServiceEvent event;
  for (const std::string& id : session_ids) {
    event.mutable_delivery()->add_session_ids(id);
  }
  for (uint64_t seq : inbox_seqs) event.mutable_delivery()->add_inbox_seqs(seq);
  parley::v1::Message* message =
      event.mutable_delivery()->mutable_frame()->mutable_message();
  message->set_text("hi");
  message->set_inbox_seq(frame_inbox_seq);
  return event;
}

ServiceBatch BatchOf(std::vector<ServiceEvent> events) {
  ServiceBatch batch;
  for (ServiceEvent& event : events) *batch.add_events() = std::move(event);
  return batch;
}

class DispatchServiceBatchTest : public ::testing::Test {
 protected:
  void Dispatch(std::vector<ServiceEvent> events, int stream = 0) {
    ServiceBatch batch = BatchOf(std::move(events));
    DispatchServiceBatch(&batch, stream, directory_);
  }

  UpUpstream upstream_;
  testing::FakeSessionDirectory directory_;
};

TEST_F(DispatchServiceBatchTest, NothingRunsUntilTheSessionsExecutorRunsIt) {
  Client a("a", &upstream_);
  a.GoLive();
  directory_.Add(&a.session, 0);
  Dispatch({DeliveryOf({"a"}, {7})});
  EXPECT_THAT(a.connection.frames, IsEmpty());
  EXPECT_EQ(directory_.pending(), 1u);
  directory_.RunPosted();
  EXPECT_THAT(a.InboxSeqs(), ElementsAre(7u));
}

TEST_F(DispatchServiceBatchTest, DeliveryGivesEachNamedSessionItsOwnInboxSeq) {
  Client a("a", &upstream_);
  Client b("b", &upstream_);
  a.GoLive();
  b.GoLive();
  directory_.Add(&a.session, 0);
  directory_.Add(&b.session, 0);
  // "gone" is not attached: nothing is posted for it, and b still gets the
  // third inbox_seq, not the second.
  Dispatch({DeliveryOf({"a", "gone", "b"}, {7, 8, 9})});
  EXPECT_EQ(directory_.pending(), 2u);
  directory_.RunPosted();
  EXPECT_THAT(a.InboxSeqs(), ElementsAre(7u));
  EXPECT_THAT(b.InboxSeqs(), ElementsAre(9u));
}

TEST_F(DispatchServiceBatchTest, DeliveryWithoutInboxSeqsKeepsTheFramesOwn) {
  Client a("a", &upstream_);
  a.GoLive();
  directory_.Add(&a.session, 0);
  Dispatch({DeliveryOf({"a"}, {}, /*frame_inbox_seq=*/4)});
  directory_.RunPosted();
  EXPECT_THAT(a.InboxSeqs(), ElementsAre(4u));
}

// A Timestamp out of range: JSON cannot carry it (see CheckEncodable).
TEST_F(DispatchServiceBatchTest, FramesJsonCannotCarryAreDropped) {
  Client a("a", &upstream_);
  a.GoLive();
  directory_.Add(&a.session, 0);
  ServiceEvent delivery = DeliveryOf({"a"}, {1});
  delivery.mutable_delivery()
      ->mutable_frame()
      ->mutable_message()
      ->mutable_sent_at()
      ->set_nanos(1767225600);
  ServiceEvent broadcast;
  *broadcast.mutable_broadcast()->mutable_frame() = delivery.delivery().frame();
  Dispatch({delivery, broadcast, DeliveryOf({"a"}, {2})});
  directory_.RunPosted();
  EXPECT_THAT(a.InboxSeqs(), ElementsAre(2u));
}

TEST_F(DispatchServiceBatchTest, BroadcastReachesOnlyTheSessionsOfItsStream) {
  Client a("a", &upstream_);
  Client b("b", &upstream_);
  a.GoLive();
  b.GoLive();
  directory_.Add(&a.session, 0);
  directory_.Add(&b.session, 1);
  ServiceEvent broadcast;
  broadcast.mutable_broadcast()->mutable_frame()->mutable_announcement();
  Dispatch({broadcast}, /*stream=*/1);
  directory_.RunPosted();
  EXPECT_THAT(a.connection.frames, IsEmpty());
  ASSERT_EQ(b.connection.frames.size(), 1u);
  EXPECT_TRUE(b.connection.frames[0].has_announcement());
}

TEST_F(DispatchServiceBatchTest, AnswersAndDisconnectsReachTheNamedSession) {
  Client opening("opening", &upstream_);
  Client refused("refused", &upstream_);
  Client live("live", &upstream_);
  live.GoLive();
  directory_.Add(&opening.session, 0);
  directory_.Add(&refused.session, 0);
  directory_.Add(&live.session, 0);
  ServiceEvent accepted;
  accepted.mutable_accepted()->set_session_id("opening");
  accepted.mutable_accepted()->set_user_id("alice");
  ServiceEvent rejected;
  rejected.mutable_rejected()->set_session_id("refused");
  rejected.mutable_rejected()->set_reason(
      parley::v1::REJECT_REASON_TOKEN_EXPIRED);
  ServiceEvent unknown;
  unknown.mutable_accepted()->set_session_id("gone");
  ServiceEvent disconnect;
  disconnect.mutable_disconnect()->add_session_ids("gone");
  disconnect.mutable_disconnect()->add_session_ids("live");
  disconnect.mutable_disconnect()->set_close_code(kCloseOperator);
  // An event of no known kind is skipped.
  Dispatch({accepted, rejected, unknown, ServiceEvent(), disconnect});
  EXPECT_EQ(directory_.pending(), 3u);
  directory_.RunPosted();
  EXPECT_EQ(opening.session.state(), Session::State::kLive);
  EXPECT_EQ(opening.connection.close_code, 0);
  EXPECT_EQ(refused.connection.close_code, kCloseUnauthorized);
  EXPECT_EQ(live.connection.close_code, kCloseOperator);
}

}  // namespace
}  // namespace parley::gateway
