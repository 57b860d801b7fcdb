#include "gateway/session.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace parley::gateway {
namespace {

using parley::v1::ClientFrame;
using parley::v1::ErrorCode;
using parley::v1::ServerFrame;

constexpr size_t kMaxClientMsgIdBytes = 128;
constexpr size_t kMaxRequestIdBytes = 64;

// The client_msg_id of a frame the service answers with an Ack (send, edit,
// delete, create_group, update_group), which the session tracks until
// answered; "" for other kinds.
const std::string& TrackedClientMsgId(const ClientFrame& frame) {
  switch (frame.frame_case()) {
    case ClientFrame::kSend:
      return frame.send().client_msg_id();
    case ClientFrame::kEdit:
      return frame.edit().client_msg_id();
    case ClientFrame::kDelete:
      return frame.delete_().client_msg_id();
    case ClientFrame::kCreateGroup:
      return frame.create_group().client_msg_id();
    case ClientFrame::kUpdateGroup:
      return frame.update_group().client_msg_id();
    default:
      return parley::v1::Send::default_instance().client_msg_id();
  }
}

// Checks the fields the gateway needs before forwarding; the service checks
// the rest (membership, text limits, ...).
absl::Status ValidateFrame(const ClientFrame& frame) {
  if (frame.request_id().size() > kMaxRequestIdBytes) {
    return absl::InvalidArgumentError("requestId must be at most 64 bytes");
  }
  switch (frame.frame_case()) {
    case ClientFrame::kSend: {
      const auto& send = frame.send();
      if (send.client_msg_id().empty() ||
          send.client_msg_id().size() > kMaxClientMsgIdBytes) {
        return absl::InvalidArgumentError(
            "send.clientMsgId must be 1 to 128 bytes");
      }
      if (send.to().kind_case() == parley::v1::Recipient::KIND_NOT_SET) {
        return absl::InvalidArgumentError("send.to needs a user or a group");
      }
      if (send.text().empty()) {
        return absl::InvalidArgumentError("send.text is empty");
      }
      return absl::OkStatus();
    }
    case ClientFrame::kEdit:
    case ClientFrame::kDelete: {
      const bool edit = frame.has_edit();
      const absl::string_view kind = edit ? "edit" : "delete";
      const std::string& id = TrackedClientMsgId(frame);
      if (id.empty() || id.size() > kMaxClientMsgIdBytes) {
        return absl::InvalidArgumentError(
            absl::StrCat(kind, ".clientMsgId must be 1 to 128 bytes"));
      }
      if ((edit ? frame.edit().conversation() : frame.delete_().conversation())
              .empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(kind, ".conversation is empty"));
      }
      if ((edit ? frame.edit().seq() : frame.delete_().seq()) == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(kind, ".seq must be at least 1"));
      }
      if (edit && frame.edit().text().empty()) {
        return absl::InvalidArgumentError("edit.text is empty");
      }
      return absl::OkStatus();
    }
    case ClientFrame::kCreateGroup:
    case ClientFrame::kUpdateGroup: {
      const bool create = frame.has_create_group();
      const absl::string_view kind = create ? "createGroup" : "updateGroup";
      const std::string& id = TrackedClientMsgId(frame);
      if (id.empty() || id.size() > kMaxClientMsgIdBytes) {
        return absl::InvalidArgumentError(
            absl::StrCat(kind, ".clientMsgId must be 1 to 128 bytes"));
      }
      if (!create && frame.update_group().group().empty()) {
        return absl::InvalidArgumentError("updateGroup.group is empty");
      }
      return absl::OkStatus();
    }
    case ClientFrame::kRead:
      if (frame.read().conversation().empty()) {
        return absl::InvalidArgumentError("read.conversation is empty");
      }
      return absl::OkStatus();
    case ClientFrame::kTyping:
      if (frame.typing().to().kind_case() ==
          parley::v1::Recipient::KIND_NOT_SET) {
        return absl::InvalidArgumentError("typing.to needs a user or a group");
      }
      return absl::OkStatus();
    case ClientFrame::kHistory:
      if (frame.history().conversation().empty()) {
        return absl::InvalidArgumentError("history.conversation is empty");
      }
      return absl::OkStatus();
    default:
      return absl::OkStatus();
  }
}

// Whether a close frame may carry `code` (RFC 6455 7.4): 1000-4999 less the
// reserved and the never-sent codes. websocketpp refuses to close with any
// other, which would leave the connection open.
bool SendableCloseCode(uint32_t code) {
  if (code < 1000 || code > 4999 || (code >= 1016 && code <= 2999)) {
    return false;
  }
  return code != 1004 && code != 1005 && code != 1006 && code != 1015;
}

}  // namespace

uint16_t CloseCodeForReject(parley::v1::RejectReason reason) {
  switch (reason) {
    case parley::v1::REJECT_REASON_TOKEN_MALFORMED:
    case parley::v1::REJECT_REASON_TOKEN_BAD_SIGNATURE:
    case parley::v1::REJECT_REASON_TOKEN_EXPIRED:
    case parley::v1::REJECT_REASON_TOKEN_REVOKED:
    case parley::v1::REJECT_REASON_UNKNOWN_USER:
      return kCloseUnauthorized;
    case parley::v1::REJECT_REASON_TOO_MANY_SESSIONS:
      return kCloseTooManySessions;
    case parley::v1::REJECT_REASON_STORE_RESTORED:
      return kCloseServiceRestart;
    default:
      return kCloseTryAgainLater;
  }
}

const std::string& OutboundFrame::Encoded(Encoding encoding) const {
  if (encoding == Encoding::kJson) {
    absl::call_once(json_once_,
                    [this] { json_ = EncodeFrame(Encoding::kJson, frame_); });
    return json_;
  }
  absl::call_once(binary_once_,
                  [this] { binary_ = EncodeFrame(Encoding::kBinary, frame_); });
  return binary_;
}

std::string OutboundFrame::EncodedWithInboxSeq(Encoding encoding,
                                               uint64_t inbox_seq) const {
  absl::StatusOr<std::string> spliced =
      SpliceInboxSeq(encoding, Encoded(encoding), inbox_seq);
  if (spliced.ok()) return *std::move(spliced);
  // Not a bare Message (the service always sends one): encode in full.
  ServerFrame frame = frame_;
  frame.mutable_message()->set_inbox_seq(inbox_seq);
  return EncodeFrame(encoding, frame);
}

Session::Session(const SessionOptions& options, std::string session_id,
                 Encoding encoding, std::string peer_address,
                 Connection* connection, Upstream* upstream,
                 std::function<absl::Time()> clock, SessionObserver observer,
                 HeldBudget* held_budget)
    : options_(options),
      session_id_(std::move(session_id)),
      encoding_(encoding),
      peer_address_(std::move(peer_address)),
      connection_(connection),
      upstream_(upstream),
      clock_(std::move(clock)),
      observer_(std::move(observer)),
      held_budget_(held_budget),
      connected_at_(clock_()),
      rate_(options.rate_limit_per_second, options.rate_limit_burst,
            connected_at_),
      bytes_rate_(options.rate_limit_bytes_per_second,
                  options.rate_limit_bytes_burst, connected_at_),
      error_budget_(options.abuse_error_per_second, options.abuse_error_burst,
                    connected_at_) {}

void Session::Start(const ConnectParams& params) {
  if (state_ != State::kAwaitingAuth) return;
  if (params.inbox_seq_invalid) {
    Close(
        kClosePolicyViolation,
        "?inboxSeq= must be an unsigned integer (the last inbox_seq applied)");
    return;
  }
  if (!params.token.empty()) {
    BeginOpen(params.token, params.device, params.inbox_seq,
              params.store_generation);
  }
}

void Session::OnClientMessage(absl::string_view payload, bool binary) {
  if (state_ == State::kClosed) return;
  const bool want_binary = encoding_ == Encoding::kBinary;
  ClientFrame frame;
  absl::Status decoded =
      binary != want_binary
          ? absl::InvalidArgumentError(absl::StrCat(
                binary ? "binary" : "text", " frame on subprotocol ",
                SubprotocolName(encoding_), "; send ",
                want_binary ? "binary" : "text", " frames"))
          : DecodeFrame(encoding_, payload, &frame);
  // Decoded first, so that a refused Send can name its clientMsgId.
  if (!rate_.TryTake(clock_())) {
    if (observer_.refused) observer_.refused("rate_limit");
    SendClientError(parley::v1::ERROR_CODE_RATE_LIMITED,
                    absl::StrCat("too many frames: the limit is ",
                                 options_.rate_limit_per_second,
                                 " per second; slow down and retry"),
                    TrackedClientMsgId(frame), frame.request_id());
    return;
  }
  if (!bytes_rate_.TryTake(clock_(), static_cast<double>(payload.size()))) {
    if (observer_.refused) observer_.refused("rate_limit");
    SendClientError(parley::v1::ERROR_CODE_RATE_LIMITED,
                    absl::StrCat("too many bytes: the limit is ",
                                 options_.rate_limit_bytes_per_second,
                                 " bytes per second; slow down and retry"),
                    TrackedClientMsgId(frame), frame.request_id());
    return;
  }
  if (!decoded.ok()) {
    SendClientError(parley::v1::ERROR_CODE_INVALID_FRAME, decoded.message());
    return;
  }
  if (frame.frame_case() == ClientFrame::FRAME_NOT_SET) {
    SendClientError(parley::v1::ERROR_CODE_INVALID_FRAME,
                    "the frame names no known frame (hello, send, edit, "
                    "delete, sync, read, typing, ping, listConversations, "
                    "history, block or listBlocked)",
                    "", frame.request_id());
    return;
  }
  HandleFrame(std::move(frame));
}

void Session::HandleFrame(ClientFrame frame) {
  if (frame.has_ping()) {
    ServerFrame pong;
    pong.mutable_pong()->set_nonce(frame.ping().nonce());
    pong.set_request_id(frame.request_id());
    SendFrame(pong);
    return;
  }
  if (frame.has_hello()) {
    if (state_ != State::kAwaitingAuth) {
      SendClientError(parley::v1::ERROR_CODE_INVALID_ARGUMENT,
                      "already authenticated: hello may only be sent once", "",
                      frame.request_id());
      return;
    }
    if (frame.hello().token().empty()) {
      Close(kCloseUnauthorized, "hello.token is empty");
      return;
    }
    BeginOpen(frame.hello().token(), frame.hello().device(),
              frame.hello().has_inbox_seq()
                  ? std::optional<uint64_t>(frame.hello().inbox_seq())
                  : std::nullopt,
              frame.hello().store_generation());
    return;
  }
  if (state_ == State::kAwaitingAuth) {
    SendClientError(parley::v1::ERROR_CODE_UNAUTHENTICATED,
                    "not authenticated: send hello with a token first", "",
                    frame.request_id());
    return;
  }
  absl::Status valid = ValidateFrame(frame);
  if (!valid.ok()) {
    SendClientError(parley::v1::ERROR_CODE_INVALID_ARGUMENT, valid.message(),
                    TrackedClientMsgId(frame), frame.request_id());
    return;
  }
  Forward(frame);
}

void Session::BeginOpen(std::string token, std::string device,
                        std::optional<uint64_t> inbox_seq,
                        std::string store_generation) {
  token_ = std::move(token);
  device_ = std::move(device);
  store_generation_ = std::move(store_generation);
  hello_inbox_seq_ = inbox_seq;
  if (!SendFirstOpen()) {
    Close(kCloseTryAgainLater, "service unavailable; retry later");
    return;
  }
  open_upstream_ = true;
  state_ = State::kOpening;
}

bool Session::SendFirstOpen() {
  parley::v1::SessionOpen open;
  open.set_session_id(session_id_);
  open.set_token(token_);
  open.set_device(device_);
  open.set_peer_address(peer_address_);
  if (hello_inbox_seq_.has_value()) open.set_resume_after(*hello_inbox_seq_);
  open.set_store_generation(store_generation_);
  open.set_connected_at_unix_ms(absl::ToUnixMillis(connected_at_));
  std::optional<uint64_t> generation = upstream_->Open(open);
  if (!generation.has_value()) return false;
  generation_ = *generation;
  return true;
}

size_t Session::HeldFrames() const {
  return unacked_.size() + pending_.size() + unanswered_syncs_.size();
}

bool Session::Hold(size_t bytes, absl::string_view session_full,
                   absl::string_view client_msg_id,
                   absl::string_view request_id) {
  if (HeldFrames() >= options_.max_buffered_frames ||
      held_bytes_ + bytes > options_.max_buffered_bytes) {
    if (observer_.refused) observer_.refused("backpressure");
    SendError(parley::v1::ERROR_CODE_BACKPRESSURE, session_full, client_msg_id,
              request_id);
    return false;
  }
  if (held_budget_ != nullptr && !held_budget_->TryReserve(bytes)) {
    if (observer_.refused) observer_.refused("backpressure");
    SendError(parley::v1::ERROR_CODE_BACKPRESSURE,
              "the gateway holds all it may for the service; retry later",
              client_msg_id, request_id);
    return false;
  }
  held_bytes_ += bytes;
  return true;
}

void Session::Unhold(size_t bytes) {
  bytes = std::min(bytes, held_bytes_);
  held_bytes_ -= bytes;
  if (held_budget_ != nullptr) held_budget_->Release(bytes);
}

void Session::Forward(const ClientFrame& frame) {
  if (const std::string& id = TrackedClientMsgId(frame); !id.empty()) {
    if (unacked_index_.count(id) > 0) {
      // A client retry of a send still in flight: idempotent upstream, and
      // already tracked for re-send.
      if (link_ok_) WriteUpstream(frame);
      return;
    }
    const size_t bytes = frame.ByteSizeLong();
    if (!Hold(bytes, "too many sends awaiting the service; retry later", id,
              frame.request_id())) {
      return;
    }
    auto it =
        unacked_.insert(unacked_.end(), UnackedSend{frame, clock_(), bytes});
    unacked_index_.emplace(id, it);
    if (link_ok_) WriteUpstream(frame);
    return;
  }
  if (frame.has_typing()) {
    // Ephemeral: a typing notice is worthless after a reconnect.
    if (link_ok_) WriteUpstream(frame);
    return;
  }
  if (frame.has_sync()) {
    // Held until answered (re-sent after a reconnect), so held first.
    if (!Hold(frame.ByteSizeLong(),
              link_ok_ ? "too many requests awaiting the service; retry later"
                       : "the service is unreachable and this session's "
                         "buffer is full; retry later",
              "", frame.request_id())) {
      return;
    }
    if (link_ok_ && WriteUpstream(frame)) {
      unanswered_syncs_.push_back(frame);
    } else {
      pending_.push_back(frame);
    }
    return;
  }
  if (link_ok_ && WriteUpstream(frame)) return;
  if (!Hold(frame.ByteSizeLong(),
            "the service is unreachable and this session's buffer is full; "
            "retry later",
            "", frame.request_id())) {
    return;
  }
  pending_.push_back(frame);
}

bool Session::WriteUpstream(const ClientFrame& frame) {
  parley::v1::SessionFrame session_frame;
  session_frame.set_session_id(session_id_);
  *session_frame.mutable_frame() = frame;
  if (!upstream_->Frame(generation_, std::move(session_frame))) {
    link_ok_ = false;
    return false;
  }
  return true;
}

void Session::FlushHeld() {
  for (const UnackedSend& send : unacked_) {
    if (!WriteUpstream(send.frame)) return;
  }
  for (const ClientFrame& sync : unanswered_syncs_) {
    if (!WriteUpstream(sync)) return;
  }
  while (!pending_.empty()) {
    if (!WriteUpstream(pending_.front())) return;
    if (pending_.front().has_sync()) {
      unanswered_syncs_.push_back(std::move(pending_.front()));
    } else {
      Unhold(pending_.front().ByteSizeLong());
    }
    pending_.pop_front();
  }
}

void Session::Resume() {
  parley::v1::SessionOpen open;
  open.set_session_id(session_id_);
  open.set_token(token_);
  open.set_device(device_);
  open.set_peer_address(peer_address_);
  open.set_resume_after(resume_point_);
  open.set_store_generation(store_generation_);
  open.set_reannounce(true);
  open.set_connected_at_unix_ms(absl::ToUnixMillis(connected_at_));
  std::optional<uint64_t> generation = upstream_->Open(open);
  if (!generation.has_value()) {
    link_ok_ = false;
    return;
  }
  generation_ = *generation;
  link_ok_ = true;
  FlushHeld();
}

void Session::OnAuthDeadline() {
  if (state_ == State::kAwaitingAuth || state_ == State::kOpening) {
    Close(kCloseAuthTimeout, "not authenticated within the auth deadline");
  }
}

void Session::Shutdown(uint16_t code, absl::string_view reason) {
  Close(code, reason);
}

void Session::OnConnectionClosed(absl::string_view reason) {
  if (open_upstream_) {
    parley::v1::SessionClose close;
    close.set_session_id(session_id_);
    close.set_reason(std::string(reason));
    upstream_->Close(std::move(close));
    open_upstream_ = false;
  }
  state_ = State::kClosed;
  Unhold(held_bytes_);
  unacked_.clear();
  unacked_index_.clear();
  pending_.clear();
  unanswered_syncs_.clear();
}

void Session::OnAccepted(const parley::v1::SessionAccepted& accepted) {
  // A re-announcement's acceptance needs nothing: the client already has
  // its Welcome.
  if (state_ != State::kOpening) return;
  state_ = State::kLive;
  user_id_ = accepted.user_id();
  if (!accepted.device().empty()) device_ = accepted.device();
  // A new device (no hello inbox_seq) starts at the head; a resuming one is
  // replayed everything after the point the service chose (its own, or 0
  // when it was void).
  resume_point_ = accepted.has_replayed_after() ? accepted.replayed_after()
                                                : accepted.inbox_seq();
  store_generation_ = accepted.store_generation();
  ServerFrame welcome;
  welcome.mutable_welcome()->set_session_id(session_id_);
  welcome.mutable_welcome()->set_user_id(user_id_);
  welcome.mutable_welcome()->set_inbox_seq(accepted.inbox_seq());
  welcome.mutable_welcome()->set_heartbeat_ms(
      static_cast<uint32_t>(options_.heartbeat.count()));
  welcome.mutable_welcome()->set_store_generation(store_generation_);
  SendFrame(welcome);
  if (state_ != State::kLive) return;
  link_ok_ = true;
  FlushHeld();
}

void Session::OnRejected(const parley::v1::SessionRejected& rejected) {
  if (state_ != State::kOpening && state_ != State::kLive) return;
  open_upstream_ = false;
  std::string reason = rejected.message();
  if (reason.empty()) {
    reason = parley::v1::RejectReason_Name(rejected.reason());
  }
  // A live session re-announced after a reconnect whose token has expired
  // since it authenticated did nothing wrong: "do not retry" (4001) would
  // strand it. 4008 tells the client to reconnect with a fresh token.
  if (state_ == State::kLive &&
      rejected.reason() == parley::v1::REJECT_REASON_TOKEN_EXPIRED) {
    Close(kCloseAuthTimeout,
          "token expired while connected; reconnect with a fresh token");
    return;
  }
  Close(CloseCodeForReject(rejected.reason()), reason);
}

void Session::OnDelivery(const OutboundFrame& frame, uint64_t inbox_seq) {
  if (state_ != State::kLive) return;
  const ServerFrame& server_frame = frame.frame();
  if (server_frame.has_message() && server_frame.message().from() == user_id_ &&
      unacked_index_.count(server_frame.message().client_msg_id()) > 0) {
    // One of this session's own Sends, replayed after a reconnect because
    // its Ack went down with the stream: the sender gets the Ack.
    const parley::v1::Message& m = server_frame.message();
    ServerFrame ack;
    ack.mutable_ack()->set_client_msg_id(m.client_msg_id());
    ack.mutable_ack()->set_message_id(m.message_id());
    ack.mutable_ack()->set_conversation(m.conversation());
    ack.mutable_ack()->set_seq(m.seq());
    ack.mutable_ack()->set_inbox_seq(inbox_seq != 0 ? inbox_seq
                                                    : m.inbox_seq());
    *ack.mutable_ack()->mutable_sent_at() = m.sent_at();
    if (NoteDelivered(ack, 0)) SendFrame(ack);
    return;
  }
  if (!NoteDelivered(server_frame, inbox_seq)) return;
  if (inbox_seq == 0) {
    SendEncoded(frame.Encoded(encoding_));
  } else {
    SendEncoded(frame.EncodedWithInboxSeq(encoding_, inbox_seq));
  }
}

bool Session::SettleSend(const std::string& client_msg_id) {
  auto it = unacked_index_.find(client_msg_id);
  if (it == unacked_index_.end()) return false;
  if (observer_.ack_latency) {
    observer_.ack_latency(clock_() - it->second->received_at);
  }
  Unhold(it->second->bytes);
  unacked_.erase(it->second);
  unacked_index_.erase(it);
  return true;
}

bool Session::NoteDelivered(const ServerFrame& frame, uint64_t inbox_seq) {
  switch (frame.frame_case()) {
    case ServerFrame::kAck:
      // Every Send is tracked until answered, a client's retry of an
      // answered one included, so an Ack nothing waits for repeats one the
      // client has (a re-sent Send answered after its replayed message).
      if (!SettleSend(frame.ack().client_msg_id())) return false;
      resume_point_ = std::max(resume_point_, frame.ack().inbox_seq());
      break;
    case ServerFrame::kError:
      // Likewise an Error for a send already answered: its re-sent copy
      // failed after the first was stored and acked.
      if (!frame.error().client_msg_id().empty() &&
          !SettleSend(frame.error().client_msg_id())) {
        return false;
      }
      break;
    case ServerFrame::kMessage:
      resume_point_ =
          std::max(resume_point_,
                   inbox_seq != 0 ? inbox_seq : frame.message().inbox_seq());
      if (observer_.delivery_latency && frame.message().has_sent_at()) {
        const absl::Time sent =
            absl::FromUnixSeconds(frame.message().sent_at().seconds()) +
            absl::Nanoseconds(frame.message().sent_at().nanos());
        const absl::Duration latency = clock_() - sent;
        if (latency >= absl::ZeroDuration()) {
          observer_.delivery_latency(latency);
        }
      }
      break;
    case ServerFrame::kSynced:
      if (!unanswered_syncs_.empty()) {
        Unhold(unanswered_syncs_.front().ByteSizeLong());
        unanswered_syncs_.pop_front();
      }
      for (const auto& message : frame.synced().messages()) {
        resume_point_ = std::max(resume_point_, message.inbox_seq());
      }
      break;
    default:
      break;
  }
  return true;
}

void Session::OnDisconnect(const parley::v1::DisconnectOrder& order) {
  if (state_ == State::kClosed) return;
  open_upstream_ = false;
  std::string reason = order.reason();
  if (!absl::StartsWith(reason, "reconnect:") &&
      !absl::StartsWith(reason, "no-reconnect:")) {
    reason = absl::StrCat(order.reconnect() ? "reconnect: " : "no-reconnect: ",
                          reason);
  }
  Close(SendableCloseCode(order.close_code())
            ? static_cast<uint16_t>(order.close_code())
            : kCloseOperator,
        reason);
}

void Session::OnLinkDown(uint64_t generation) {
  if (generation < generation_) return;
  if (state_ == State::kOpening) {
    open_upstream_ = false;
    Close(kCloseTryAgainLater, "service unavailable; retry later");
    return;
  }
  link_ok_ = false;
}

void Session::OnLinkUp(uint64_t generation) {
  if (state_ == State::kOpening) {
    // The stream the open went to ended unanswered and the link moved the
    // session to another replica's: open there instead.
    if (generation > generation_ && !SendFirstOpen()) {
      open_upstream_ = false;
      Close(kCloseTryAgainLater, "service unavailable; retry later");
    }
    return;
  }
  if (state_ != State::kLive) return;
  if (link_ok_ && generation <= generation_) return;
  Resume();
}

void Session::SendFrame(const ServerFrame& frame) {
  if (state_ == State::kClosed) return;
  SendEncoded(EncodeFrame(encoding_, frame));
}

void Session::SendEncoded(const std::string& encoded) {
  if (state_ == State::kClosed) return;
  connection_->Send(encoded);
  if (connection_->BufferedAmount() > options_.send_buffer_cap_bytes) {
    if (observer_.slow_consumer) observer_.slow_consumer();
    Close(kCloseTryAgainLater, "slow consumer");
  }
}

void Session::SendError(ErrorCode code, absl::string_view message,
                        absl::string_view client_msg_id,
                        absl::string_view request_id) {
  ServerFrame frame;
  frame.mutable_error()->set_code(code);
  frame.mutable_error()->set_message(std::string(message));
  frame.mutable_error()->set_client_msg_id(std::string(client_msg_id));
  frame.set_request_id(std::string(request_id));
  SendFrame(frame);
}

void Session::SendClientError(ErrorCode code, absl::string_view message,
                              absl::string_view client_msg_id,
                              absl::string_view request_id) {
  if (!error_budget_.TryTake(clock_())) {
    Close(kClosePolicyViolation,
          "policy violation: too many invalid or excess frames");
    return;
  }
  SendError(code, message, client_msg_id, request_id);
}

void Session::Close(uint16_t code, absl::string_view reason) {
  if (state_ == State::kClosed) return;
  OnConnectionClosed(absl::StrCat("gateway closed ", code, " ", reason));
  connection_->Close(code, reason);
}

}  // namespace parley::gateway
