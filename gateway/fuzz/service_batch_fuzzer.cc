// libFuzzer target: the link's batch decoder on the gateway side, and what
// parley-gateway does with the events the service sends.
//
// The input is one ServiceBatch in protobuf's binary form, as parley-service
// writes it on a GatewayLink.Connect stream. It is parsed, and each event is
// routed to Sessions the way UpstreamLink::Dispatch routes it (by session id;
// a Delivery's i-th session with inbox_seqs[i], or 0 when there is none; a
// Broadcast to every session; a frame that fails CheckEncodable to none) and
// applied on the spot, as each session's executor would. The sessions, with a
// fake connection and upstream:
//   "s-json"   JSON, opening with ?token=, two Sends held (c1, c2);
//   "s-proto"  protobuf, opening with ?token=&inboxSeq=5, one Send held (c1);
//   "s-wait"   JSON, not authenticated yet.
// After the batch the link drops and comes back (each session re-announces
// and re-sends), and the clients go away.
//
// Checked, per session:
//   * every frame sent to the client decodes in the session's encoding;
//   * the connection is closed at most once, with a code a server may send
//     (RFC 6455 7.4: 1000-4999, none of the reserved or never-sent codes),
//     and nothing is sent after that.
// Built and run by tests/fuzz/run.sh (--config=fuzz, clang).
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/frame_codec.h"
#include "common/fuzz/fuzz_check.h"
#include "gateway/session.h"
#include "gateway/upstream.h"
#include "google/protobuf/stubs/logging.h"
#include "parley/v1/client.pb.h"
#include "parley/v1/gateway_link.pb.h"

namespace parley::gateway {
namespace {

class CheckedConnection final : public Connection {
 public:
  CheckedConnection(std::string name, Encoding encoding)
      : name_(std::move(name)), encoding_(encoding) {}

  void Send(const std::string& frame) noexcept override {
    if (closed_) FuzzFail(absl::StrCat(name_, ": a frame after the close"));
    v1::ServerFrame decoded;
    const absl::Status status = DecodeFrame(encoding_, frame, &decoded);
    if (!status.ok()) {
      FuzzFail(absl::StrCat(name_, ": sent a frame that does not decode (",
                            status.ToString(), "): ", frame));
    }
  }
  void Close(uint16_t code, absl::string_view reason) noexcept override {
    if (closed_) FuzzFail(absl::StrCat(name_, ": closed twice"));
    closed_ = true;
    if (!SendableCloseCode(code)) {
      FuzzFail(absl::StrCat(name_, ": closed with code ", code, " (", reason,
                            "), which no close frame may carry"));
    }
  }
  size_t BufferedAmount() const noexcept override { return 0; }

 private:
  const std::string name_;
  const Encoding encoding_;
  bool closed_ = false;
};

// The link: always up, at the generation the test sets.
class FakeUpstream final : public Upstream {
 public:
  std::optional<uint64_t> Open(const v1::SessionOpen&) override {
    return generation;
  }
  bool Frame(uint64_t frame_generation, v1::SessionFrame) override {
    return frame_generation == generation;
  }
  void Close(v1::SessionClose) override {}

  uint64_t generation = 1;
};

// 2026-01-01T00:00:00Z.
absl::Time Now() { return absl::FromUnixSeconds(1767225600); }

std::string SendFrame(Encoding encoding, const std::string& client_msg_id) {
  v1::ClientFrame frame;
  frame.mutable_send()->set_client_msg_id(client_msg_id);
  frame.mutable_send()->mutable_to()->set_user("bob");
  frame.mutable_send()->set_text("hi");
  return EncodeFrame(encoding, frame);
}

struct Client {
  Client(const std::string& id, Encoding encoding, FakeUpstream* upstream)
      : connection(id, encoding),
        session(SessionOptions{}, id, encoding, "127.0.0.1:5000", &connection,
                upstream, [] { return Now(); }) {}

  CheckedConnection connection;
  Session session;
};

void Apply(v1::ServiceBatch& batch) {
  FakeUpstream upstream;
  std::map<std::string, std::unique_ptr<Client>> clients;
  auto add = [&](const std::string& id, Encoding encoding) -> Session& {
    auto& client = clients[id];
    client = std::make_unique<Client>(id, encoding, &upstream);
    return client->session;
  };
  ConnectParams alice;
  alice.token = "alice-token";
  Session& json = add("s-json", Encoding::kJson);
  json.Start(alice);
  json.OnClientMessage(SendFrame(Encoding::kJson, "c1"), /*binary=*/false);
  json.OnClientMessage(SendFrame(Encoding::kJson, "c2"), /*binary=*/false);
  ConnectParams resuming = alice;
  resuming.inbox_seq = 5;
  Session& proto = add("s-proto", Encoding::kBinary);
  proto.Start(resuming);
  proto.OnClientMessage(SendFrame(Encoding::kBinary, "c1"), /*binary=*/true);
  add("s-wait", Encoding::kJson).Start(ConnectParams{});

  auto session = [&](const std::string& id) -> Session* {
    auto it = clients.find(id);
    return it == clients.end() ? nullptr : &it->second->session;
  };
  // UpstreamLink::Dispatch, with each posted call run at once.
  for (v1::ServiceEvent& event : *batch.mutable_events()) {
    switch (event.event_case()) {
      case v1::ServiceEvent::kAccepted:
        if (Session* s = session(event.accepted().session_id())) {
          s->OnAccepted(event.accepted());
        }
        break;
      case v1::ServiceEvent::kRejected:
        if (Session* s = session(event.rejected().session_id())) {
          s->OnRejected(event.rejected());
        }
        break;
      case v1::ServiceEvent::kDelivery: {
        const v1::Delivery& delivery = event.delivery();
        if (!CheckEncodable(delivery.frame()).ok()) break;
        const OutboundFrame frame(
            std::move(*event.mutable_delivery()->mutable_frame()));
        for (int i = 0; i < delivery.session_ids_size(); ++i) {
          Session* s = session(delivery.session_ids(i));
          if (s == nullptr) continue;
          s->OnDelivery(frame, i < delivery.inbox_seqs_size()
                                   ? delivery.inbox_seqs(i)
                                   : 0);
        }
        break;
      }
      case v1::ServiceEvent::kDisconnect:
        for (const std::string& id : event.disconnect().session_ids()) {
          if (Session* s = session(id)) s->OnDisconnect(event.disconnect());
        }
        break;
      case v1::ServiceEvent::kBroadcast: {
        if (!CheckEncodable(event.broadcast().frame()).ok()) break;
        const OutboundFrame frame(
            std::move(*event.mutable_broadcast()->mutable_frame()));
        for (auto& [id, client] : clients) client->session.OnDelivery(frame, 0);
        break;
      }
      case v1::ServiceEvent::EVENT_NOT_SET:
        break;
    }
  }
  for (auto& [id, client] : clients) client->session.OnLinkDown(1);
  upstream.generation = 2;
  for (auto& [id, client] : clients) client->session.OnLinkUp(2);
  for (auto& [id, client] : clients) {
    client->session.OnConnectionClosed("client closed 1000");
  }
}

}  // namespace
}  // namespace parley::gateway

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  parley::v1::ServiceBatch batch;
  if (!batch.ParseFromArray(data, static_cast<int>(size))) return 0;
  parley::gateway::Apply(batch);
  return 0;
}
