// The target protocols the load generator can speak, behind one small
// interface, so the workload and statistics code (driver.h) is the same for
// Parley, the raw relay and nats-server: same traffic shape, same clock.
//
// A ProtocolSession is the protocol state of one connection. It never sees a
// socket: the driver hands it each received WebSocket message and it answers
// through SessionEvents (Envoy's filter shape). Adapters:
//   * parley (parley_protocol.cc): ?token= authentication, Welcome = ready,
//     Send to the peer user or the group, Message = delivery, Ack = ack;
//   * relay  (relay_protocol.cc): ?pair=<id>, ready on the relay's pairing
//     notice, every frame after it is the payload, forwarded by the relay to
//     the other member of the pair;
//   * nats   (nats_protocol.cc): NATS text protocol over WebSocket, CONNECT +
//     SUB own subject + PING, ready on PONG, a send is PUB to the peer's
//     subject, MSG = delivery; there are no acks;
//   * jetstream (nats_protocol.cc): the same over nats-server's JetStream, a
//     durable peer: a send is stored in a file-storage stream and acked by
//     its PubAck; each connection's consumer pushes its messages and is acked.
//
// Threading: a session is used by the one thread that runs its connection.
#ifndef PARLEY_TOOLS_LOADGEN_PROTOCOL_H_
#define PARLEY_TOOLS_LOADGEN_PROTOCOL_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tools/loadgen/ws_codec.h"

namespace parley::loadgen {

// What a session reports to the driver, in the order frames arrive.
class SessionEvents {
 public:
  virtual ~SessionEvents() = default;
  // The connection may send now (authenticated / subscribed).
  virtual void OnReady() = 0;
  // A message reached this connection; `text` is what the sender sent.
  virtual void OnDelivery(absl::string_view text) = 0;
  // The server stored the send with this client id.
  virtual void OnAck(absl::string_view client_id) = 0;
  // The server refused something; `kind` names it (e.g. "parley.RATE_LIMITED"),
  // `client_id` is the refused send's id when known.
  virtual void OnError(absl::string_view kind, absl::string_view client_id) = 0;
  // The protocol needs this payload sent (e.g. NATS PONG).
  virtual void SendPayload(absl::string_view payload) = 0;
};

// Who a connection is and whom it sends to.
struct SessionSpec {
  std::string self;       // User id (parley), own subject (nats).
  std::string to;         // Peer user id or group id (parley), subject (nats).
  bool to_group = false;  // `to` is a group (fan-out).
  std::string token;      // Parley JWT.
  std::string pair;       // Relay pairing key.
  std::string group_subject;  // nats: also subscribe to this (fan-out).
};

class ProtocolSession {
 public:
  virtual ~ProtocolSession() = default;
  // The request target, e.g. "/?token=...".
  virtual std::string Resource() const = 0;
  // The subprotocol to ask for; empty for none.
  virtual std::string Subprotocol() const = 0;
  // Text or binary, for every frame this session sends.
  virtual WsOpcode DataOpcode() const = 0;
  // The WebSocket is open: send the protocol's opening frames, or report
  // ready at once.
  virtual void OnOpen(SessionEvents& events) = 0;
  // The payload of a send of `text` to `spec.to`, with a client id.
  virtual std::string EncodeSend(absl::string_view client_id,
                                 absl::string_view text) = 0;
  // One received WebSocket message. An error means the peer broke the
  // protocol; the driver counts it and closes the connection.
  virtual absl::Status OnFrame(absl::string_view payload,
                               SessionEvents& events) = 0;
};

// Builds a session for one connection.
class Protocol {
 public:
  virtual ~Protocol() = default;
  virtual std::string name() const = 0;
  // Whether the target acks a stored send (Parley, JetStream).
  virtual bool has_acks() const = 0;
  // Whether the target can fan a send out to a group.
  virtual bool supports_groups() const = 0;
  virtual std::unique_ptr<ProtocolSession> NewSession(
      const SessionSpec& spec) const = 0;
};

// "parley" (JSON frames), "parley-proto" (binary protobuf frames), "relay",
// "nats" or "jetstream"; INVALID_ARGUMENT otherwise.
absl::StatusOr<std::unique_ptr<Protocol>> MakeProtocol(absl::string_view name);

std::unique_ptr<Protocol> MakeParleyProtocol(bool binary);
std::unique_ptr<Protocol> MakeRelayProtocol();
std::unique_ptr<Protocol> MakeNatsProtocol();
std::unique_ptr<Protocol> MakeJetStreamProtocol();

}  // namespace parley::loadgen

#endif  // PARLEY_TOOLS_LOADGEN_PROTOCOL_H_
