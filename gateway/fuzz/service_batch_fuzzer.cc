// libFuzzer target: the link's batch decoder on the gateway side, and what
// parley-gateway does with the events the service sends.
//
// The input is one ServiceBatch in protobuf's binary form, as parley-service
// writes it on a GatewayLink.Connect stream. It is parsed and routed by
// DispatchServiceBatch, the code UpstreamLink runs on each batch read (by
// session id; a Delivery's i-th session with inbox_seqs[i], or 0 when there
// is none; a Broadcast to every session of the stream, here all of them; a
// frame that fails CheckEncodable to none), and what it posts then runs, as
// each session's executor would run it. The sessions, with a fake connection
// and upstream:
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
#include "common/log.h"
#include "gateway/service_batch_dispatch.h"
#include "gateway/session.h"
#include "gateway/testing/fake_session_directory.h"
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

  // UpstreamLink's routing, every session on stream 0; then each session's
  // executor runs what was posted to it.
  testing::FakeSessionDirectory directory;
  for (auto& [id, client] : clients) directory.Add(&client->session, 0);
  DispatchServiceBatch(&batch, /*stream=*/0, directory);
  directory.RunPosted();
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
  parley::SetLogLevel(parley::LogLevel::kError);
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  parley::v1::ServiceBatch batch;
  if (!batch.ParseFromArray(data, static_cast<int>(size))) return 0;
  parley::gateway::Apply(batch);
  return 0;
}
