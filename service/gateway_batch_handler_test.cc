// GatewayBatchHandler against a real Messaging on the FakeStore: the
// LinkHello handshake, the events in order, and the close.
#include "service/gateway_batch_handler.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/build_info.h"
#include "common/jwt.h"
#include "common/metrics.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"
#include "service/fake_store.h"
#include "service/local_router.h"
#include "service/recording_link_stream.h"
#include "service/service_metrics.h"

namespace parley::service {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kSecret[] = "test-secret";

// What happened on a stream, one word per event and session:
// "accepted:s1", "rejected:s1", "pong:s1", "message:s1".
std::vector<std::string> Summary(const RecordingLinkStream& stream) {
  std::vector<std::string> out;
  for (const v1::ServiceEvent& event : stream.events()) {
    if (event.has_accepted()) {
      out.push_back("accepted:" + event.accepted().session_id());
    } else if (event.has_rejected()) {
      out.push_back("rejected:" + event.rejected().session_id());
    } else if (event.has_delivery()) {
      const v1::ServerFrame& frame = event.delivery().frame();
      // The name of the frame's oneof field: "pong", "message", "error".
      const std::string kind =
          frame.GetDescriptor()->FindFieldByNumber(frame.frame_case())->name();
      for (const std::string& id : event.delivery().session_ids()) {
        out.push_back(kind + ":" + id);
      }
    }
  }
  return out;
}

class GatewayBatchHandlerTest : public ::testing::Test {
 protected:
  GatewayBatchHandlerTest()
      : metrics_(registry_),
        router_(/*max_sessions_per_user=*/4),
        messaging_(&store_, &router_, &metrics_, Options(),
                   [this] { return now_; }) {
    for (const char* user : {"alice", "bob"}) {
      EXPECT_TRUE(store_.CreateUser({user, "", now_}).ok());
    }
  }

  static MessagingOptions Options() {
    MessagingOptions options;
    options.tokens = TokenVerifier::WithSecret(kSecret);
    return options;
  }

  static v1::GatewayEvent Hello(const std::string& gateway_id) {
    v1::GatewayEvent event;
    event.mutable_hello()->set_gateway_id(gateway_id);
    return event;
  }
  v1::GatewayEvent Open(const std::string& session_id,
                        const std::string& user) {
    v1::GatewayEvent event;
    event.mutable_open()->set_session_id(session_id);
    event.mutable_open()->set_token(
        MintToken({user, now_ + absl::Hours(1), now_, "phone"}, kSecret));
    return event;
  }
  static v1::GatewayEvent Ping(const std::string& session_id) {
    v1::GatewayEvent event;
    event.mutable_frame()->set_session_id(session_id);
    event.mutable_frame()->mutable_frame()->mutable_ping()->set_nonce("n");
    return event;
  }
  static v1::GatewayEvent Close(const std::string& session_id) {
    v1::GatewayEvent event;
    event.mutable_close()->set_session_id(session_id);
    return event;
  }
  static v1::GatewayBatch Batch(std::vector<v1::GatewayEvent> events) {
    v1::GatewayBatch batch;
    for (v1::GatewayEvent& event : events) {
      *batch.add_events() = std::move(event);
    }
    return batch;
  }

  absl::Time now_ = absl::FromUnixSeconds(1767225600);
  Registry registry_;
  ServiceMetrics metrics_;
  FakeStore store_;
  LocalRouter router_;
  Messaging messaging_;
  RecordingLinkStream stream_;
};

TEST_F(GatewayBatchHandlerTest, FirstEventOtherThanLinkHelloIsRefused) {
  GatewayBatchHandler handler(&messaging_, &stream_, "peer");
  const absl::Status status =
      handler.Handle(Batch({Open("s1", "alice"), Hello("gw-1")}));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(), "the first event must be LinkHello");
  // Nothing of the batch reached Messaging: not the open, not the late hello.
  handler.Close("refused");
  EXPECT_THAT(Summary(stream_), IsEmpty());
  EXPECT_EQ(handler.gateway_id(), "");
}

TEST_F(GatewayBatchHandlerTest, AGatewayOfAnIncompatibleLinkProtocolIsRefused) {
  GatewayBatchHandler handler(&messaging_, &stream_, "peer");
  v1::GatewayEvent hello = Hello("gw-9");
  hello.mutable_hello()->set_gateway_version("9.0.0");
  hello.mutable_hello()->set_link_protocol(kLinkProtocol + 1);
  const absl::Status status =
      handler.Handle(Batch({hello, Open("s1", "alice")}));
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("gateway gw-9 9.0.0 speaks protocol"));
  handler.Close("refused");
  EXPECT_THAT(Summary(stream_), IsEmpty());
  // This build's own protocol, and gateways from before the field, are fine.
  for (uint32_t protocol : {kLinkProtocol, 0u}) {
    GatewayBatchHandler ok(&messaging_, &stream_, "peer");
    hello.mutable_hello()->set_link_protocol(protocol);
    EXPECT_TRUE(ok.Handle(Batch({hello})).ok()) << protocol;
    ok.Close("done");
  }
}

TEST_F(GatewayBatchHandlerTest, EventsAfterTheHelloReachMessagingInOrder) {
  GatewayBatchHandler handler(&messaging_, &stream_, "peer");
  ASSERT_TRUE(handler
                  .Handle(Batch({Hello("gw-1"), Open("s1", "alice"), Ping("s1"),
                                 Close("s1"), Ping("s1")}))
                  .ok());
  EXPECT_EQ(handler.gateway_id(), "gw-1");
  // The second ping comes after the session closed: an error, not a pong.
  EXPECT_THAT(Summary(stream_),
              ElementsAre("accepted:s1", "pong:s1", "error:s1"));

  // The next batch continues the same stream.
  stream_.Clear();
  ASSERT_TRUE(handler.Handle(Batch({Open("s2", "bob"), Ping("s2")})).ok());
  EXPECT_THAT(Summary(stream_), ElementsAre("accepted:s2", "pong:s2"));
}

TEST_F(GatewayBatchHandlerTest, LaterLinkHelloAndEmptyEventsAreIgnored) {
  GatewayBatchHandler handler(&messaging_, &stream_, "peer");
  ASSERT_TRUE(handler.Handle(Batch({Hello("gw-1")})).ok());
  ASSERT_TRUE(handler
                  .Handle(Batch(
                      {Hello("gw-2"), v1::GatewayEvent(), Open("s1", "alice")}))
                  .ok());
  EXPECT_EQ(handler.gateway_id(), "gw-1");
  EXPECT_THAT(Summary(stream_), ElementsAre("accepted:s1"));
}

TEST_F(GatewayBatchHandlerTest, CloseForgetsTheStreamsSessions) {
  RecordingLinkStream other_stream;
  GatewayBatchHandler other(&messaging_, &other_stream, "other");
  ASSERT_TRUE(other.Handle(Batch({Hello("gw-2"), Open("b1", "bob")})).ok());
  GatewayBatchHandler handler(&messaging_, &stream_, "peer");
  ASSERT_TRUE(handler.Handle(Batch({Hello("gw-1"), Open("s1", "alice")})).ok());

  handler.Close("the gateway went away");
  v1::GatewayEvent send;
  send.mutable_frame()->set_session_id("b1");
  v1::Send& body = *send.mutable_frame()->mutable_frame()->mutable_send();
  body.set_client_msg_id("c1");
  body.mutable_to()->set_user("alice");
  body.set_text("hi");
  ASSERT_TRUE(other.Handle(Batch({send})).ok());

  // Stored for alice, but her session went with the closed stream.
  EXPECT_EQ(*store_.InboxHead("alice"), 1u);
  for (const std::string& event : Summary(stream_)) {
    EXPECT_NE(event, "message:s1");
  }
  other.Close("done");
}

}  // namespace
}  // namespace parley::service
