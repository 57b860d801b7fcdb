// Session: one client WebSocket connection's protocol state machine.
//
// The Session knows nothing of sockets or gRPC. The WebSocket adapter
// (gateway/ws_server.h) feeds it client frames and connection events, and it
// answers through two small interfaces: a Connection (send an encoded frame,
// close with a code and reason, read the outgoing buffered amount) and an
// Upstream (gateway/upstream.h: open/frame/close towards parley-service). The
// upstream link feeds it service events (OnAccepted, OnDelivery, ...) by
// posting them to the connection's executor through a SessionHandle.
//
// States:
//
//   kAwaitingAuth --token (?token= or hello)--> kOpening --accepted--> kLive
//        |                                         |                    |
//        +--------------- any close ---------------+--------------------+-->
//        kClosed
//
// What it decides:
//   * authentication: ?token= or a first `hello`; the auth deadline (4008);
//     rejections mapped to close codes (4001, 4029, 1013; a live session
//     whose token expired before a re-announcement gets 4008, "reconnect
//     with a fresh token", and one whose store was restored from a backup
//     meanwhile 1012); service unreachable at that moment (1013);
//   * malformed frames get an `error` frame and the connection stays open;
//     too many frames get RATE_LIMITED errors (token bucket); sustained abuse
//     (the error budget runs out) closes with 1008;
//   * app-level ping -> pong;
//   * while the link is down, frames wait in a bounded per-session buffer
//     that also draws on the gateway-wide HeldBudget (either full: a
//     retryable BACKPRESSURE error); Sends, Edits, Deletes, CreateGroups
//     and UpdateGroups (the frames the service answers with an Ack, all
//     called "Sends" below) stay
//     tracked until their Ack or Error and are re-sent after a reconnect, after
//     the re-announcement, which carries resume_after = the session's resume
//     point (below);
//   * the resume point: the highest inbox_seq this session was told about by
//     any frame: the head it was welcomed at when it started as a new device
//     (no hello inbox_seq), else the client's own hello inbox_seq, raised by
//     every Ack, Message and Synced message. A Message replayed after a
//     reconnect for one of this session's own unacked Sends (its Ack was lost
//     with the stream) reaches the client as that Send's Ack, and an Ack no
//     Send of this session waits for any more is dropped: the sending session
//     gets exactly one Ack and never its own message;
//   * slow consumer: when the connection's buffered amount passes the cap,
//     close 1013 "slow consumer" and drop further output (memory stays
//     bounded by the cap plus one frame);
//   * operator disconnects (4003) and drain (1001).
//
// Threading: thread-compatible. Every method runs on the connection's
// executor (its strand), one at a time; the Connection and Upstream it is
// given must outlive it.
#ifndef PARLEY_GATEWAY_SESSION_H_
#define PARLEY_GATEWAY_SESSION_H_

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "absl/base/call_once.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/frame_codec.h"
#include "gateway/held_budget.h"
#include "gateway/token_bucket.h"
#include "gateway/upstream.h"
#include "parley/v1/client.pb.h"
#include "parley/v1/gateway_link.pb.h"

namespace parley::gateway {

// WebSocket close codes the gateway uses (see proto/parley/v1/client.proto).
inline constexpr uint16_t kCloseNormal = 1000;
inline constexpr uint16_t kCloseGoingAway = 1001;
inline constexpr uint16_t kCloseInvalidPayload = 1007;
inline constexpr uint16_t kClosePolicyViolation = 1008;
inline constexpr uint16_t kCloseMessageTooBig = 1009;
inline constexpr uint16_t kCloseServiceRestart = 1012;
inline constexpr uint16_t kCloseTryAgainLater = 1013;
inline constexpr uint16_t kCloseUnauthorized = 4001;
inline constexpr uint16_t kCloseOperator = 4003;
inline constexpr uint16_t kCloseAuthTimeout = 4008;
inline constexpr uint16_t kCloseTooManySessions = 4029;

// The close code for a SessionRejected reason.
uint16_t CloseCodeForReject(parley::v1::RejectReason reason);

// The connection a Session writes to. Implemented by the WebSocket adapter
// (and by a fake in tests). Called only on the session's executor.
class Connection {
 public:
  virtual ~Connection() = default;
  // Queues one encoded frame (text for JSON, binary for protobuf).
  virtual void Send(const std::string& frame) noexcept = 0;
  // Starts the closing handshake. Called at most once per Session.
  virtual void Close(uint16_t code, absl::string_view reason) noexcept = 0;
  // Bytes queued for the peer and not yet written to the socket.
  virtual size_t BufferedAmount() const noexcept = 0;
};

// A server frame shared by every session a Delivery names. Each encoding is
// computed once, on first use. Thread-safe (immutable after construction,
// encodings behind absl::call_once, which, unlike std::call_once over
// glibc's pthread_once, makes no futex call when nobody waits: most frames
// are encoded once by one session).
class OutboundFrame final {
 public:
  explicit OutboundFrame(parley::v1::ServerFrame frame)
      : frame_(std::move(frame)) {}
  const parley::v1::ServerFrame& frame() const { return frame_; }
  const std::string& Encoded(Encoding encoding) const;
  // The encoding of the frame, a Message without inbox_seq, with inbox_seq
  // set to `inbox_seq`: Encoded() with it written in (see SpliceInboxSeq),
  // so a group message is encoded once for all its members here.
  std::string EncodedWithInboxSeq(Encoding encoding, uint64_t inbox_seq) const;

 private:
  const parley::v1::ServerFrame frame_;
  mutable absl::once_flag json_once_;
  mutable absl::once_flag binary_once_;
  mutable std::string json_;
  mutable std::string binary_;
};

// Per-session limits and settings. Parsed once from flags (gateway/main.cc).
struct SessionOptions {
  // Sent in Welcome.heartbeat_ms: how often the gateway pings.
  std::chrono::milliseconds heartbeat{25000};
  // Outgoing bytes queued on the connection above which the client is a
  // slow consumer and is closed with 1013.
  size_t send_buffer_cap_bytes = 1 << 20;
  // Client frames held for the upstream per session: Sends not yet acked
  // plus frames waiting while the link is down. Above it: BACKPRESSURE.
  size_t max_buffered_frames = 256;
  // The same held frames, in encoded bytes: bounds the memory a session can
  // pin (a frame count alone would allow 256 x 64 KiB).
  size_t max_buffered_bytes = 1 << 20;
  // Inbound frames per second, sustained, and the burst allowed above it.
  double rate_limit_per_second = 50;
  double rate_limit_burst = 100;
  // Inbound payload bytes per second, sustained, and the burst (at least the
  // largest frame allowed). Frames of up to 64 KiB at the frame rate would be
  // 3.2 MB/s; chat needs a small fraction of that.
  double rate_limit_bytes_per_second = 1 << 20;
  double rate_limit_bytes_burst = 4 << 20;
  // Error frames a client may provoke (malformed, rate limited, ...) in a
  // burst, and how many per second refill; when exhausted, close 1008.
  double abuse_error_burst = 50;
  double abuse_error_per_second = 2;
};

// Optional observers for latency metrics; empty functions are skipped.
struct SessionObserver {
  // From a Send's arrival to its Ack leaving the gateway.
  std::function<void(absl::Duration)> ack_latency;
  // From a delivered Message's sent_at (the service's clock; same host or
  // synchronised clocks) to it leaving the gateway.
  std::function<void(absl::Duration)> delivery_latency;
  // A client frame refused: "rate_limit" (frames or bytes per second) or
  // "backpressure" (the session or the gateway holds all it may).
  std::function<void(absl::string_view reason)> refused;
  // The session was closed because its client did not read (1013).
  std::function<void()> slow_consumer;
};

// What the client gave in the upgrade request's query string.
struct ConnectParams {
  std::string token;   // ?token=
  std::string device;  // ?device=
  // ?inboxSeq=: absent for a new device, else the client's resume point.
  std::optional<uint64_t> inbox_seq;
  // ?inboxSeq= was given but is not an unsigned integer.
  bool inbox_seq_invalid = false;
  // ?storeGeneration=: the store generation inbox_seq belongs to.
  std::string store_generation;
};

class Session final {
 public:
  enum class State { kAwaitingAuth, kOpening, kLive, kClosed };

  // `clock` gives the current time (injectable for tests); `observer`
  // feeds the latency histograms. Held frames also count against
  // `held_budget` when given (shared by the gateway's sessions; it must
  // outlive the session's OnConnectionClosed, which returns what it holds).
  Session(const SessionOptions& options, std::string session_id,
          Encoding encoding, std::string peer_address, Connection* connection,
          Upstream* upstream, std::function<absl::Time()> clock,
          SessionObserver observer = {}, HeldBudget* held_budget = nullptr);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // --- From the WebSocket adapter, in this order: Start, then any number of
  // OnClientMessage/OnAuthDeadline/Shutdown, then OnConnectionClosed once.

  // The WebSocket is open. Authenticates now when `params.token` is set.
  void Start(const ConnectParams& params);
  // One complete client message. `binary` tells the opcode.
  void OnClientMessage(absl::string_view payload, bool binary);
  // The auth deadline passed: close 4008 unless the session is live.
  void OnAuthDeadline();
  // Closes the client with `code` (e.g. 1001 when draining, 1013 when the
  // pong timed out).
  void Shutdown(uint16_t code, absl::string_view reason);
  // The connection is gone (either side closed, or it failed). Tells the
  // service once.
  void OnConnectionClosed(absl::string_view reason);

  // --- From the upstream link, posted to this session's executor.

  void OnAccepted(const parley::v1::SessionAccepted& accepted);
  void OnRejected(const parley::v1::SessionRejected& rejected);
  // `inbox_seq`, when not 0, is the Message's place in this session's inbox
  // (the frame's Message then has none: one frame serves a whole group).
  void OnDelivery(const OutboundFrame& frame, uint64_t inbox_seq);
  void OnDisconnect(const parley::v1::DisconnectOrder& order);
  // The session's stream went down (generation `generation` ended).
  void OnLinkDown(uint64_t generation);
  // A stream is up for the session at `generation` (its own again, or
  // another replica's it is to move to): re-announce, re-send. A session
  // still opening sends its first SessionOpen again instead, when
  // `generation` is newer than the one that open went out on.
  void OnLinkUp(uint64_t generation);

  State state() const { return state_; }
  const std::string& session_id() const { return session_id_; }
  const std::string& user_id() const { return user_id_; }
  Encoding encoding() const { return encoding_; }
  // The session's resume point (resume_after): the highest inbox_seq it was
  // told about.
  uint64_t resume_point() const { return resume_point_; }
  // Sends not yet acknowledged (re-sent after a reconnect).
  size_t unacked_sends() const { return unacked_.size(); }
  // Frames held while the link is down or the session is opening.
  size_t buffered_frames() const { return pending_.size(); }
  // Encoded bytes of every frame held (unacked, unanswered, waiting).
  size_t held_bytes() const { return held_bytes_; }

 private:
  struct UnackedSend {
    parley::v1::ClientFrame frame;
    absl::Time received_at;
    size_t bytes;
  };

  void BeginOpen(std::string token, std::string device,
                 std::optional<uint64_t> inbox_seq,
                 std::string store_generation);
  // Queues the first SessionOpen (not a re-announcement); false when the
  // link has no stream up.
  bool SendFirstOpen();
  void HandleFrame(parley::v1::ClientFrame frame);
  void HandleLiveFrame(parley::v1::ClientFrame frame);
  // Sends the frame upstream now if the link is up, else holds it.
  void Forward(const parley::v1::ClientFrame& frame);
  bool WriteUpstream(const parley::v1::ClientFrame& frame);
  // Re-announces and re-sends everything held; stops if the link drops.
  void Resume();
  void FlushHeld();
  size_t HeldFrames() const;
  // Holds `bytes` more if they fit this session's limits and the gateway's
  // budget; otherwise sends a BACKPRESSURE error (`session_full` when this
  // session's limits are the reason) and returns false. The error names the
  // refused frame's client_msg_id and request_id.
  bool Hold(size_t bytes, absl::string_view session_full,
            absl::string_view client_msg_id, absl::string_view request_id);
  // Lets go of `bytes` held.
  void Unhold(size_t bytes);

  void SendFrame(const parley::v1::ServerFrame& frame);
  void SendEncoded(const std::string& encoded);
  // Sends an error frame charged to the client's error budget.
  // `client_msg_id` and `request_id` are the refused frame's.
  void SendClientError(parley::v1::ErrorCode code, absl::string_view message,
                       absl::string_view client_msg_id = "",
                       absl::string_view request_id = "");
  void SendError(parley::v1::ErrorCode code, absl::string_view message,
                 absl::string_view client_msg_id = "",
                 absl::string_view request_id = "");
  void Close(uint16_t code, absl::string_view reason);
  // Takes note of a frame for this session before it goes to the client:
  // settles Sends, raises the resume point. `inbox_seq` as for OnDelivery.
  // Returns false when the client must not get the frame (a repeated Ack).
  bool NoteDelivered(const parley::v1::ServerFrame& frame, uint64_t inbox_seq);
  // Forgets the unacked Send `client_msg_id`; false if none waited.
  bool SettleSend(const std::string& client_msg_id);

  const SessionOptions options_;
  const std::string session_id_;
  const Encoding encoding_;
  const std::string peer_address_;
  Connection* const connection_;
  Upstream* const upstream_;
  const std::function<absl::Time()> clock_;
  const SessionObserver observer_;
  HeldBudget* const held_budget_;
  const absl::Time connected_at_;

  State state_ = State::kAwaitingAuth;
  std::string token_;
  std::string device_;
  std::string user_id_;
  // The store generation the resume point belongs to: the hello's, then the
  // one the session was accepted with.
  std::string store_generation_;
  // The hello's inbox_seq (the first open's resume_after), if any.
  std::optional<uint64_t> hello_inbox_seq_;
  // True once a SessionOpen was queued and no SessionClose yet.
  bool open_upstream_ = false;
  // The stream generation this session is announced on, and whether frames
  // may be written to it right now.
  uint64_t generation_ = 0;
  bool link_ok_ = false;
  uint64_t resume_point_ = 0;

  // Sends not acked, in arrival order; indexed by client_msg_id.
  std::list<UnackedSend> unacked_;
  std::unordered_map<std::string, std::list<UnackedSend>::iterator>
      unacked_index_;
  // Lists, not deques: an empty std::deque allocates ~600 bytes, and most
  // sessions never hold anything.
  // Syncs written and not yet answered: re-sent after a reconnect.
  std::list<parley::v1::ClientFrame> unanswered_syncs_;
  // Non-Send frames held while opening or while the link is down.
  std::list<parley::v1::ClientFrame> pending_;
  // Encoded size of everything in unacked_, unanswered_syncs_ and pending_.
  size_t held_bytes_ = 0;

  TokenBucket rate_;
  TokenBucket bytes_rate_;
  TokenBucket error_budget_;
};

// How the upstream link reaches a session from its own threads.
// Implemented by the WebSocket adapter; the link holds it by shared_ptr.
class SessionHandle {
 public:
  virtual ~SessionHandle() = default;
  // Runs `fn` later on the session's executor, never inline. Does nothing if
  // the connection is gone by then. Thread-safe, non-blocking.
  virtual void Post(std::function<void(Session&)> fn) = 0;
};

}  // namespace parley::gateway

#endif  // PARLEY_GATEWAY_SESSION_H_
