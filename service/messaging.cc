#include "service/messaging.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/jwt.h"
#include "common/log.h"
#include "service/conversation.h"
#include "service/timestamps.h"

namespace parley::service {
namespace {

v1::Ack ToAck(const AppendResult& r) {
  v1::Ack ack;
  ack.set_client_msg_id(r.message.client_msg_id);
  ack.set_message_id(r.message.message_id);
  ack.set_conversation(r.message.conversation);
  ack.set_seq(r.message.seq);
  ack.set_inbox_seq(r.sender_inbox_seq);
  *ack.mutable_sent_at() = ToTimestamp(r.message.sent_at);
  return ack;
}

v1::RejectReason ReasonForToken(TokenError error) {
  switch (error) {
    case TokenError::kBadSignature:
    // Not signed by a key we hold, or not for us: the token will never work
    // (the message says which).
    case TokenError::kUnknownKey:
    case TokenError::kNotAccepted:
      return v1::REJECT_REASON_TOKEN_BAD_SIGNATURE;
    case TokenError::kExpired:
      return v1::REJECT_REASON_TOKEN_EXPIRED;
    case TokenError::kMalformed:
    case TokenError::kNone:
      break;
  }
  return v1::REJECT_REASON_TOKEN_MALFORMED;
}

absl::string_view FrameKind(const v1::ClientFrame& frame) {
  switch (frame.frame_case()) {
    case v1::ClientFrame::kHello:
      return "hello";
    case v1::ClientFrame::kSend:
      return "send";
    case v1::ClientFrame::kSync:
      return "sync";
    case v1::ClientFrame::kRead:
      return "read";
    case v1::ClientFrame::kTyping:
      return "typing";
    case v1::ClientFrame::kPing:
      return "ping";
    case v1::ClientFrame::kListConversations:
      return "list_conversations";
    case v1::ClientFrame::kHistory:
      return "history";
    case v1::ClientFrame::kEdit:
      return "edit";
    case v1::ClientFrame::kDelete:
      return "delete";
    case v1::ClientFrame::kBlock:
      return "block";
    case v1::ClientFrame::kListBlocked:
      return "list_blocked";
    case v1::ClientFrame::kCreateGroup:
      return "create_group";
    case v1::ClientFrame::kUpdateGroup:
      return "update_group";
    case v1::ClientFrame::kGetGroup:
      return "get_group";
    case v1::ClientFrame::FRAME_NOT_SET:
      break;
  }
  return "empty";
}

// The client_msg_id of a frame answered with an Ack; "" for other kinds.
const std::string& AckedClientMsgId(const v1::ClientFrame& frame) {
  switch (frame.frame_case()) {
    case v1::ClientFrame::kSend:
      return frame.send().client_msg_id();
    case v1::ClientFrame::kEdit:
      return frame.edit().client_msg_id();
    case v1::ClientFrame::kDelete:
      return frame.delete_().client_msg_id();
    case v1::ClientFrame::kCreateGroup:
      return frame.create_group().client_msg_id();
    case v1::ClientFrame::kUpdateGroup:
      return frame.update_group().client_msg_id();
    default:
      return v1::Send::default_instance().client_msg_id();
  }
}

// A new group's id: "g" and 16 random hex digits.
std::string NewGroupId() {
  absl::BitGen bits;
  return absl::StrFormat("g%016x", absl::Uniform<uint64_t>(bits));
}

// The change an UpdateGroup asks for, in an AppendRequest's group_event and
// text (a new title); INVALID_ARGUMENT when it names none.
absl::StatusOr<AppendRequest> GroupChangeOf(const v1::UpdateGroup& update) {
  AppendRequest out;
  GroupEvent& change = out.group_event;
  switch (update.change_case()) {
    case v1::UpdateGroup::kAddMembers:
      change.type = GroupEventType::kMembersAdded;
      change.users.assign(update.add_members().users().begin(),
                          update.add_members().users().end());
      return out;
    case v1::UpdateGroup::kRemoveMembers:
      change.type = GroupEventType::kMembersRemoved;
      change.users.assign(update.remove_members().users().begin(),
                          update.remove_members().users().end());
      return out;
    case v1::UpdateGroup::kRename:
      change.type = GroupEventType::kRenamed;
      out.text = update.rename();
      return out;
    case v1::UpdateGroup::kLeave:
      change.type = GroupEventType::kMemberLeft;
      return out;
    case v1::UpdateGroup::kSetRole: {
      const v1::GroupRole role = update.set_role().role();
      if (role != v1::GROUP_ROLE_MEMBER && role != v1::GROUP_ROLE_ADMIN &&
          role != v1::GROUP_ROLE_OWNER) {
        return absl::InvalidArgumentError(
            absl::StrCat("updateGroup.setRole.role ", static_cast<int>(role),
                         " is no GroupRole"));
      }
      change.type = GroupEventType::kRoleChanged;
      change.users = {update.set_role().user()};
      change.role = static_cast<GroupRole>(role);
      return out;
    }
    case v1::UpdateGroup::CHANGE_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError(
      "updateGroup names no change (addMembers, removeMembers, rename, leave "
      "or setRole)");
}

v1::GroupInfo ToGroupInfo(const GroupRecord& g) {
  v1::GroupInfo out;
  out.set_id(g.id);
  out.set_title(g.display_name);
  for (const std::string& user : g.members) {
    v1::GroupMember* member = out.add_members();
    member->set_user(user);
    auto role = g.roles.find(user);
    if (role != g.roles.end()) {
      member->set_role(static_cast<v1::GroupRole>(role->second));
    }
  }
  *out.mutable_created_at() = ToTimestamp(g.created_at);
  return out;
}

// The recipient's conversation and the users (besides `user`) in it, checking
// that `user` may speak there.
struct Audience {
  std::string conversation;
  std::vector<std::string> others;
};

absl::StatusOr<Audience> AudienceOf(Store& store, const std::string& user,
                                    const v1::Recipient& to) {
  Audience out;
  switch (to.kind_case()) {
    case v1::Recipient::kUser: {
      absl::Status valid = ValidateId("recipient user id", to.user());
      if (!valid.ok()) return valid;
      absl::StatusOr<UserRecord> peer = store.GetUser(to.user());
      if (!peer.ok()) return peer.status();
      out.conversation = DirectConversation(user, to.user());
      if (to.user() != user) out.others.push_back(to.user());
      return out;
    }
    case v1::Recipient::kGroup: {
      absl::Status valid = ValidateId("recipient group id", to.group());
      if (!valid.ok()) return valid;
      absl::StatusOr<GroupRecord> group = store.GetGroup(to.group());
      if (!group.ok()) return group.status();
      if (!std::binary_search(group->members.begin(), group->members.end(),
                              user)) {
        return absl::PermissionDeniedError(
            absl::StrCat("user \"", user, "\" is not a member of group \"",
                         to.group(), "\""));
      }
      out.conversation = GroupConversation(to.group());
      for (std::string& m : group->members) {
        if (m != user) out.others.push_back(std::move(m));
      }
      return out;
    }
    case v1::Recipient::KIND_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("\"to\" names neither a user nor a group");
}

// OK when `user` may read the history of `conversation` (parsed as `ref`):
// a direct conversation's two users, a group's current members. Otherwise
// PERMISSION_DENIED, or NOT_FOUND for a group that does not exist or a direct
// conversation with a user who does not (and no messages); each names the
// conversation.
absl::Status MayReadHistory(Store& store, const std::string& user,
                            const std::string& conversation,
                            const ConversationRef& ref) {
  if (ref.group) {
    absl::StatusOr<GroupRecord> group = store.GetGroup(ref.group_id);
    if (absl::IsNotFound(group.status())) {
      return absl::NotFoundError(absl::StrCat("conversation \"", conversation,
                                              "\" does not exist (no group \"",
                                              ref.group_id, "\")"));
    }
    if (!group.ok()) return group.status();
    if (!std::binary_search(group->members.begin(), group->members.end(),
                            user)) {
      return absl::PermissionDeniedError(absl::StrCat(
          "user \"", user, "\" is not a member of group \"", ref.group_id,
          "\", so not of conversation \"", conversation, "\""));
    }
    return absl::OkStatus();
  }
  if (ref.user_a != user && ref.user_b != user) {
    return absl::PermissionDeniedError(absl::StrCat(
        "user \"", user, "\" is not in conversation \"", conversation, "\""));
  }
  // A direct conversation exists once it holds a message; before that, only
  // while both of its users do.
  const std::string& peer = ref.user_a == user ? ref.user_b : ref.user_a;
  absl::StatusOr<UserRecord> found = store.GetUser(peer);
  if (!absl::IsNotFound(found.status())) return found.status();
  absl::StatusOr<uint64_t> head = store.ConversationHead(conversation);
  if (!head.ok()) return head.status();
  if (*head == 0) {
    return absl::NotFoundError(absl::StrCat("conversation \"", conversation,
                                            "\" does not exist (no user \"",
                                            peer, "\")"));
  }
  return absl::OkStatus();
}

// The BlockList frame of `users` (set even when empty).
v1::ServerFrame BlockListFrame(std::vector<std::string> users) {
  v1::ServerFrame frame;
  v1::BlockList* blocked = frame.mutable_blocked();
  for (std::string& u : users) blocked->add_users(std::move(u));
  return frame;
}

}  // namespace

v1::Message ToMessage(const StoredMessage& m, uint64_t inbox_seq) {
  v1::Message out;
  out.set_inbox_seq(inbox_seq);
  out.set_message_id(m.message_id);
  out.set_conversation(m.conversation);
  out.set_seq(m.seq);
  out.set_from(m.from);
  if (m.to_group) {
    out.mutable_to()->set_group(m.to);
  } else {
    out.mutable_to()->set_user(m.to);
  }
  out.set_text(m.text);
  *out.mutable_sent_at() = ToTimestamp(m.sent_at);
  out.set_client_msg_id(m.client_msg_id);
  out.set_kind(static_cast<v1::MessageKind>(m.kind));
  out.set_target_seq(m.target_seq);
  if (m.edited_at != absl::InfinitePast()) {
    *out.mutable_edited_at() = ToTimestamp(m.edited_at);
  }
  out.set_deleted(m.deleted);
  if (m.kind == MessageKind::kGroupEvent) {
    v1::GroupEvent* event = out.mutable_group_event();
    event->set_type(static_cast<v1::GroupEventType>(m.group_event.type));
    event->set_actor(m.from);
    for (const std::string& user : m.group_event.users) event->add_users(user);
    if (m.group_event.type == GroupEventType::kCreated ||
        m.group_event.type == GroupEventType::kRenamed) {
      event->set_title(m.text);
    }
    event->set_role(static_cast<v1::GroupRole>(m.group_event.role));
  }
  return out;
}

v1::ConversationSummary ToConversationSummary(const ConversationSummary& s) {
  v1::ConversationSummary out;
  out.set_id(s.conversation);
  out.set_kind(s.group ? v1::CONVERSATION_KIND_GROUP
                       : v1::CONVERSATION_KIND_DIRECT);
  out.set_title(s.title);
  out.set_peer(s.peer);
  out.set_head_seq(s.head_seq);
  *out.mutable_last_activity() = ToTimestamp(s.last_activity);
  if (s.last_message.has_value()) {
    *out.mutable_last_message() = ToMessage(*s.last_message, 0);
  }
  out.set_read_seq(s.read_seq);
  out.set_unread(s.unread);
  out.set_peer_read_seq(s.peer_read_seq);
  return out;
}

absl::StatusOr<std::vector<v1::Message>> ReadInboxMessages(
    Store& store, absl::string_view user, uint64_t after_seq, uint64_t upto_seq,
    int limit) {
  absl::StatusOr<std::vector<InboxMessage>> page =
      store.ReadInbox(user, after_seq, upto_seq, limit);
  if (!page.ok()) return page.status();
  std::vector<v1::Message> out;
  out.reserve(page->size());
  for (const InboxMessage& m : *page) {
    out.push_back(ToMessage(m.message, m.inbox_seq));
  }
  return out;
}

v1::ErrorCode ErrorCodeFor(const absl::Status& status) {
  if (IsBlockedError(status)) return v1::ERROR_CODE_BLOCKED;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return v1::ERROR_CODE_INVALID_ARGUMENT;
    case absl::StatusCode::kFailedPrecondition:
      return v1::ERROR_CODE_FAILED_PRECONDITION;
    case absl::StatusCode::kUnauthenticated:
      return v1::ERROR_CODE_UNAUTHENTICATED;
    case absl::StatusCode::kPermissionDenied:
      return v1::ERROR_CODE_PERMISSION_DENIED;
    case absl::StatusCode::kNotFound:
      return v1::ERROR_CODE_NOT_FOUND;
    case absl::StatusCode::kResourceExhausted:
      return v1::ERROR_CODE_TOO_LARGE;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kDeadlineExceeded:
      return v1::ERROR_CODE_UNAVAILABLE;
    default:
      return v1::ERROR_CODE_INTERNAL;
  }
}

Messaging::Messaging(Store* store, Router* router, ServiceMetrics* metrics,
                     MessagingOptions options, Clock clock, Scheduler schedule)
    : store_(store),
      router_(router),
      metrics_(metrics),
      options_(std::move(options)),
      clock_(std::move(clock)),
      schedule_(std::move(schedule)) {}

void Messaging::StreamOpened(LinkStream* stream, const v1::LinkHello& hello) {
  router_->AddStream(stream, hello.gateway_id());
  metrics_->link_streams.Set(static_cast<int64_t>(router_->stream_count()));
}

void Messaging::StreamClosed(LinkStream* stream) {
  // Sends this stream made are committed and their Acks queued on it before
  // it is forgotten, so a drained stream loses no Ack.
  store_->Flush();
  std::vector<std::string> gone = router_->RemoveStream(stream);
  metrics_->link_streams.Set(static_cast<int64_t>(router_->stream_count()));
  metrics_->sessions.Set(static_cast<int64_t>(router_->session_count()));
  if (!gone.empty() && schedule_ && !draining_.load()) {
    schedule_(options_.presence_grace,
              [this, gone = std::move(gone)] { AnnounceLost(gone); });
  }
}

void Messaging::AnnounceLost(const std::vector<std::string>& users) {
  for (const std::string& user : users) {
    if (router_->IsOnline(user)) continue;
    {
      absl::MutexLock lock(&lost_mu_);
      announced_lost_.insert(user);
    }
    AnnouncePresence(user, false);
  }
}

void Messaging::Reject(LinkStream* stream, const std::string& session_id,
                       v1::RejectReason reason, absl::string_view message,
                       bool registered) {
  metrics_->Opens(v1::RejectReason_Name(reason)).Increment();
  LogInfo("session.rejected", {{"session", session_id},
                               {"reason", v1::RejectReason_Name(reason)},
                               {"message", message}});
  v1::SessionRejected rejected;
  rejected.set_session_id(session_id);
  rejected.set_reason(reason);
  rejected.set_message(std::string(message));
  if (registered) {
    if (router_->AbortOpen(stream, rejected)) {
      metrics_->sessions.Set(static_cast<int64_t>(router_->session_count()));
    }
    return;
  }
  v1::ServiceEvent event;
  *event.mutable_rejected() = std::move(rejected);
  stream->Send(std::move(event));
}

void Messaging::OpenSession(LinkStream* stream, const v1::SessionOpen& open) {
  const std::string& session_id = open.session_id();
  if (session_id.empty()) {
    Reject(stream, session_id, v1::REJECT_REASON_UNSPECIFIED,
           "SessionOpen has no session_id", false);
    return;
  }
  if (draining_.load()) {
    Reject(stream, session_id, v1::REJECT_REASON_UNAVAILABLE,
           "the service is shutting down; reconnect", false);
    return;
  }
  absl::StatusOr<TokenClaims> claims =
      options_.tokens->Verify(open.token(), clock_());
  if (!claims.ok()) {
    Reject(stream, session_id,
           ReasonForToken(ClassifyTokenError(claims.status())),
           claims.status().message(), false);
    return;
  }
  const std::string& user = claims->subject;
  absl::StatusOr<UserRecord> record = store_->GetUser(user);
  if (record.ok() && claims->issued_at < record->tokens_not_before) {
    Reject(stream, session_id, v1::REJECT_REASON_TOKEN_REVOKED,
           absl::StrCat(
               "token was revoked: issued before ",
               absl::FormatTime("%Y-%m-%d %H:%M:%SZ", record->tokens_not_before,
                                absl::UTCTimeZone())),
           false);
    return;
  }
  if (!record.ok()) {
    if (absl::IsNotFound(record.status())) {
      Reject(stream, session_id, v1::REJECT_REASON_UNKNOWN_USER,
             absl::StrCat("user \"", user, "\" does not exist"), false);
    } else {
      Reject(stream, session_id, v1::REJECT_REASON_UNAVAILABLE,
             record.status().message(), false);
    }
    return;
  }

  SessionInfo info;
  info.session_id = session_id;
  info.user_id = user;
  info.device = open.device().empty() ? claims->device : open.device();
  info.peer_address = open.peer_address();
  info.connected_at = open.connected_at_unix_ms() > 0
                          ? absl::FromUnixMillis(open.connected_at_unix_ms())
                          : clock_();
  // Positions count within one store generation. A live session whose
  // gateway still holds positions from before a restore must start over with
  // a Welcome that names the new generation.
  const std::string& generation = store_->Generation();
  const bool other_generation =
      !open.store_generation().empty() && open.store_generation() != generation;
  if (open.reannounce() && other_generation) {
    Reject(stream, session_id, v1::REJECT_REASON_STORE_RESTORED,
           "the service's data was restored from a backup; reconnect", false);
    return;
  }
  absl::StatusOr<bool> first = router_->BeginOpen(stream, info);
  if (!first.ok()) {
    if (absl::IsResourceExhausted(first.status())) {
      Reject(stream, session_id, v1::REJECT_REASON_TOO_MANY_SESSIONS,
             first.status().message(), false);
    }
    return;  // Otherwise the stream is closing: nobody to answer.
  }

  const absl::Time read_start = absl::Now();
  absl::StatusOr<uint64_t> head = store_->InboxHead(user);
  std::vector<v1::Message> replay;
  absl::Status status = head.status();
  // A position from another generation, or beyond the head (a client that
  // predates generations, after a restore), is void: replay from the start.
  const uint64_t resume_after =
      other_generation || open.resume_after() > head.value_or(0)
          ? 0
          : open.resume_after();
  if (status.ok() && open.has_resume_after() && resume_after < *head) {
    absl::StatusOr<std::vector<InboxMessage>> page =
        store_->ReadInbox(user, resume_after, *head, options_.max_replay);
    status = page.status();
    if (page.ok()) {
      for (const InboxMessage& m : *page) {
        replay.push_back(ToMessage(m.message, m.inbox_seq));
      }
    }
  }
  metrics_->read_seconds.Observe(
      absl::ToDoubleSeconds(absl::Now() - read_start));
  if (!status.ok()) {
    Reject(stream, session_id, v1::REJECT_REASON_UNAVAILABLE,
           absl::StrCat("cannot read the inbox: ", status.message()), true);
    return;
  }

  v1::SessionAccepted accepted;
  accepted.set_session_id(session_id);
  accepted.set_user_id(user);
  accepted.set_inbox_seq(*head);
  accepted.set_device(info.device);
  accepted.set_store_generation(generation);
  if (open.has_resume_after()) accepted.set_replayed_after(resume_after);
  if (!router_->CompleteOpen(session_id, accepted, replay)) return;
  metrics_->Opens("accepted").Increment();
  metrics_->deliveries.Increment(replay.size());
  metrics_->sessions.Set(static_cast<int64_t>(router_->session_count()));
  LogDebug("session.accepted", {{"session", session_id},
                                {"user", user},
                                {"head", *head},
                                {"replayed", replay.size()},
                                {"reannounce", open.reannounce() ? 1 : 0}});
  if (!open.reannounce()) SendPresenceSnapshot(session_id, user);
  if (*first) {
    bool announced_lost = false;
    {
      absl::MutexLock lock(&lost_mu_);
      announced_lost = announced_lost_.erase(user) > 0;
    }
    if (!open.reannounce() || announced_lost) AnnouncePresence(user, true);
  }
}

void Messaging::CloseSession(LinkStream* stream,
                             const v1::SessionClose& close) {
  std::optional<std::string> offline =
      router_->Close(stream, close.session_id());
  metrics_->sessions.Set(static_cast<int64_t>(router_->session_count()));
  if (offline.has_value()) AnnouncePresence(*offline, false);
}

void Messaging::AnnounceOffline(const std::vector<std::string>& users) {
  metrics_->sessions.Set(static_cast<int64_t>(router_->session_count()));
  for (const std::string& user : users) AnnouncePresence(user, false);
}

std::optional<std::vector<std::string>> Messaging::PresenceContacts(
    const std::string& user) {
  absl::StatusOr<std::vector<std::string>> contacts =
      store_->Contacts(user, options_.presence_max_group_members);
  if (!contacts.ok()) {
    LogWarn("presence.contacts_failed",
            {{"user", user}, {"error", contacts.status().ToString()}});
    return std::nullopt;
  }
  return *std::move(contacts);
}

void Messaging::AnnouncePresence(const std::string& user, bool online) {
  metrics_->presence.Increment();
  std::optional<std::vector<std::string>> contacts = PresenceContacts(user);
  if (!contacts.has_value()) return;
  v1::ServerFrame frame;
  frame.mutable_presence()->set_user(user);
  frame.mutable_presence()->set_online(online);
  router_->SendToUsers(*contacts, frame);
}

void Messaging::SendPresenceSnapshot(const std::string& session_id,
                                     const std::string& user) {
  std::optional<std::vector<std::string>> contacts = PresenceContacts(user);
  if (!contacts.has_value()) return;
  for (const std::string& contact : *contacts) {
    if (contact == user || !router_->IsOnline(contact)) continue;
    v1::ServerFrame frame;
    frame.mutable_presence()->set_user(contact);
    frame.mutable_presence()->set_online(true);
    router_->SendToSession(session_id, std::move(frame));
  }
}

void Messaging::SendError(const Origin& to, v1::ErrorCode code,
                          absl::string_view message,
                          absl::string_view client_msg_id) {
  metrics_->Errors(code).Increment();
  v1::ServerFrame frame;
  frame.mutable_error()->set_code(code);
  frame.mutable_error()->set_message(std::string(message));
  frame.mutable_error()->set_client_msg_id(std::string(client_msg_id));
  Reply(to, std::move(frame));
}

void Messaging::Reply(const Origin& to, v1::ServerFrame frame) {
  frame.set_request_id(to.request_id);
  router_->SendToSession(to.session_id, std::move(frame));
}

void Messaging::HandleFrame(LinkStream* stream,
                            const v1::SessionFrame& session_frame) {
  const std::string& session_id = session_frame.session_id();
  const v1::ClientFrame& frame = session_frame.frame();
  const Origin origin{session_id, frame.request_id()};
  metrics_->Frames(FrameKind(frame)).Increment();
  std::optional<std::string> user = router_->UserOf(stream, session_id);
  if (!user.has_value()) {
    metrics_->Errors(v1::ERROR_CODE_UNAUTHENTICATED).Increment();
    v1::ServerFrame error;
    error.mutable_error()->set_code(v1::ERROR_CODE_UNAUTHENTICATED);
    error.mutable_error()->set_message(
        absl::StrCat("session \"", session_id, "\" is not open"));
    error.mutable_error()->set_client_msg_id(AckedClientMsgId(frame));
    SendFrameTo(stream, session_id, std::move(error));
    return;
  }
  switch (frame.frame_case()) {
    case v1::ClientFrame::kSend:
      HandleSend(origin, *user, frame.send());
      return;
    case v1::ClientFrame::kEdit: {
      const v1::Edit& edit = frame.edit();
      AppendAndAck(
          origin,
          PrepareChange(*user, MessageKind::kEdit, edit.client_msg_id(),
                        edit.conversation(), edit.seq(), edit.text()),
          edit.client_msg_id());
      return;
    }
    case v1::ClientFrame::kDelete: {
      const v1::Delete& del = frame.delete_();
      AppendAndAck(
          origin,
          PrepareChange(*user, MessageKind::kDelete, del.client_msg_id(),
                        del.conversation(), del.seq(), ""),
          del.client_msg_id());
      return;
    }
    case v1::ClientFrame::kCreateGroup: {
      const v1::CreateGroup& create = frame.create_group();
      GroupEvent change;
      change.type = GroupEventType::kCreated;
      change.users.assign(create.members().begin(), create.members().end());
      AppendAndAck(
          origin,
          PrepareGroupChange(*user, create.client_msg_id(), NewGroupId(),
                             std::move(change), create.title()),
          create.client_msg_id());
      return;
    }
    case v1::ClientFrame::kUpdateGroup: {
      const v1::UpdateGroup& update = frame.update_group();
      absl::StatusOr<AppendRequest> request = GroupChangeOf(update);
      if (request.ok()) {
        request =
            PrepareGroupChange(*user, update.client_msg_id(), update.group(),
                               std::move(request->group_event), request->text);
      }
      AppendAndAck(origin, std::move(request), update.client_msg_id());
      return;
    }
    case v1::ClientFrame::kGetGroup:
      HandleGetGroup(origin, *user, frame.get_group());
      return;
    case v1::ClientFrame::kSync:
      HandleSync(origin, *user, frame.sync());
      return;
    case v1::ClientFrame::kRead:
      HandleRead(origin, *user, frame.read());
      return;
    case v1::ClientFrame::kTyping:
      HandleTyping(origin, *user, frame.typing());
      return;
    case v1::ClientFrame::kListConversations:
      HandleListConversations(origin, *user, frame.list_conversations());
      return;
    case v1::ClientFrame::kHistory:
      HandleHistory(origin, *user, frame.history());
      return;
    case v1::ClientFrame::kBlock:
      HandleBlock(origin, *user, frame.block());
      return;
    case v1::ClientFrame::kListBlocked:
      HandleListBlocked(origin, *user);
      return;
    case v1::ClientFrame::kPing: {
      v1::ServerFrame pong;
      pong.mutable_pong()->set_nonce(frame.ping().nonce());
      Reply(origin, std::move(pong));
      return;
    }
    case v1::ClientFrame::kHello:
      SendError(origin, v1::ERROR_CODE_INVALID_FRAME,
                "the session is already authenticated; hello is only the "
                "first frame");
      return;
    case v1::ClientFrame::FRAME_NOT_SET:
      break;
  }
  SendError(origin, v1::ERROR_CODE_INVALID_FRAME,
            "the frame names no known kind");
}

bool Messaging::HandlesWithoutBlocking(const v1::SessionFrame& frame) {
  switch (frame.frame().frame_case()) {
    case v1::ClientFrame::kSend:
    case v1::ClientFrame::kEdit:
    case v1::ClientFrame::kDelete:
    case v1::ClientFrame::kCreateGroup:
    case v1::ClientFrame::kUpdateGroup:
    case v1::ClientFrame::kPing:
    case v1::ClientFrame::kHello:
    case v1::ClientFrame::FRAME_NOT_SET:
      return true;
    case v1::ClientFrame::kSync:
    case v1::ClientFrame::kRead:
    case v1::ClientFrame::kTyping:
    case v1::ClientFrame::kListConversations:
    case v1::ClientFrame::kHistory:
    case v1::ClientFrame::kBlock:
    case v1::ClientFrame::kListBlocked:
    case v1::ClientFrame::kGetGroup:
      return false;
  }
  return false;
}

absl::StatusOr<AppendRequest> Messaging::PrepareSend(const std::string& sender,
                                                     const v1::Send& send) {
  if (send.client_msg_id().empty() ||
      send.client_msg_id().size() > options_.max_client_msg_id_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("client_msg_id must be 1 to ",
                     options_.max_client_msg_id_bytes, " bytes"));
  }
  if (send.text().empty()) {
    return absl::InvalidArgumentError("text is empty");
  }
  if (send.text().size() > options_.max_text_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("text is ", send.text().size(), " bytes; the limit is ",
                     options_.max_text_bytes));
  }
  if (!IsValidUtf8(send.text())) {
    return absl::InvalidArgumentError("text is not valid UTF-8");
  }
  AppendRequest request;
  request.sender = sender;
  request.client_msg_id = send.client_msg_id();
  request.text = send.text();
  request.sent_at = clock_();
  switch (send.to().kind_case()) {
    case v1::Recipient::kUser: {
      absl::Status valid = ValidateId("recipient user id", send.to().user());
      if (!valid.ok()) return valid;
      request.to = send.to().user();
      request.conversation = DirectConversation(sender, request.to);
      return request;
    }
    case v1::Recipient::kGroup: {
      absl::Status valid = ValidateId("recipient group id", send.to().group());
      if (!valid.ok()) return valid;
      request.to = send.to().group();
      request.to_group = true;
      request.conversation = GroupConversation(request.to);
      return request;
    }
    case v1::Recipient::KIND_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("\"to\" names neither a user nor a group");
}

absl::StatusOr<AppendRequest> Messaging::PrepareChange(
    const std::string& sender, MessageKind kind,
    const std::string& client_msg_id, const std::string& conversation,
    uint64_t seq, const std::string& text) {
  const absl::string_view verb = kind == MessageKind::kEdit ? "edit" : "delete";
  // An operator's key is the service's own (DeleteAsOperator).
  if (client_msg_id.empty() ||
      (!sender.empty() &&
       client_msg_id.size() > options_.max_client_msg_id_bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat(verb, ".clientMsgId must be 1 to ",
                     options_.max_client_msg_id_bytes, " bytes"));
  }
  if (seq == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(verb, ".seq must be at least 1"));
  }
  if (kind == MessageKind::kEdit) {
    if (text.empty()) return absl::InvalidArgumentError("edit.text is empty");
    if (text.size() > options_.max_text_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("edit.text is ", text.size(), " bytes; the limit is ",
                       options_.max_text_bytes));
    }
    if (!IsValidUtf8(text)) {
      return absl::InvalidArgumentError("edit.text is not valid UTF-8");
    }
  }
  absl::StatusOr<ConversationRef> ref = ParseConversation(conversation);
  if (!ref.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(verb, ".conversation: ", ref.status().message()));
  }
  AppendRequest request;
  request.sender = sender;
  request.client_msg_id = client_msg_id;
  request.conversation = conversation;
  request.kind = kind;
  request.target_seq = seq;
  request.text = text;
  request.sent_at = clock_();
  if (!sender.empty() && options_.edit_window > absl::ZeroDuration()) {
    request.edit_window = options_.edit_window;
  }
  if (ref->group) {
    request.to_group = true;
    request.to = ref->group_id;
  } else if (sender.empty()) {
    // An operator's: the rules address the event like its target.
  } else if (ref->user_a == sender || ref->user_b == sender) {
    request.to = ref->user_a == sender ? ref->user_b : ref->user_a;
  } else {
    return absl::PermissionDeniedError(absl::StrCat(
        "user \"", sender, "\" is not in conversation \"", conversation, "\""));
  }
  return request;
}

absl::StatusOr<AppendRequest> Messaging::PrepareGroupChange(
    const std::string& sender, const std::string& client_msg_id,
    const std::string& group, GroupEvent change, const std::string& title) {
  const absl::string_view frame =
      change.type == GroupEventType::kCreated ? "createGroup" : "updateGroup";
  // An operator's key is the service's own (ChangeGroupAsOperator).
  if (client_msg_id.empty() ||
      (!sender.empty() &&
       client_msg_id.size() > options_.max_client_msg_id_bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat(frame, ".clientMsgId must be 1 to ",
                     options_.max_client_msg_id_bytes, " bytes"));
  }
  absl::Status valid = ValidateId(absl::StrCat(frame, ".group"), group);
  if (!valid.ok()) return valid;
  if (change.users.size() > options_.max_group_members) {
    return absl::ResourceExhaustedError(absl::StrCat(
        frame, " names ", change.users.size(), " users; a group has at most ",
        options_.max_group_members, " members"));
  }
  for (const std::string& user : change.users) {
    valid = ValidateId(absl::StrCat(frame, " user id"), user);
    if (!valid.ok()) return valid;
  }
  if (change.type == GroupEventType::kCreated ||
      change.type == GroupEventType::kRenamed) {
    // An operator's group may be untitled, as the admin API always allowed.
    if (title.empty() &&
        (!sender.empty() || change.type == GroupEventType::kRenamed)) {
      return absl::InvalidArgumentError(
          absl::StrCat(frame, ": the title is empty"));
    }
    if (title.size() > options_.max_group_title_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          frame, ": the title is ", title.size(), " bytes; the limit is ",
          options_.max_group_title_bytes));
    }
    if (!IsValidUtf8(title)) {
      return absl::InvalidArgumentError(
          absl::StrCat(frame, ": the title is not valid UTF-8"));
    }
  }
  AppendRequest request;
  request.sender = sender;
  request.client_msg_id = client_msg_id;
  request.conversation = GroupConversation(group);
  request.to_group = true;
  request.to = group;
  request.text = title;
  request.sent_at = clock_();
  request.kind = MessageKind::kGroupEvent;
  request.group_event = std::move(change);
  request.max_group_members = options_.max_group_members;
  return request;
}

void Messaging::HandleGetGroup(const Origin& origin, const std::string& user,
                               const v1::GetGroup& get) {
  absl::Status valid = ValidateId("getGroup.group", get.group());
  absl::StatusOr<GroupRecord> group =
      valid.ok() ? store_->GetGroup(get.group()) : valid;
  if (group.ok() &&
      !std::binary_search(group->members.begin(), group->members.end(), user)) {
    group = absl::PermissionDeniedError(absl::StrCat(
        "user \"", user, "\" is not a member of group \"", get.group(), "\""));
  }
  if (!group.ok()) {
    SendError(origin, ErrorCodeFor(group.status()), group.status().message());
    return;
  }
  v1::ServerFrame frame;
  *frame.mutable_group() = ToGroupInfo(*group);
  Reply(origin, std::move(frame));
}

void Messaging::ChangeGroupAsOperator(
    const std::string& client_msg_id, const std::string& group,
    GroupEvent change, const std::string& title,
    std::function<void(absl::StatusOr<v1::Ack>)> done) {
  AppendForAdmin(
      PrepareGroupChange("", client_msg_id, group, std::move(change), title),
      std::move(done));
}

v1::Ack Messaging::Deliver(const AppendResult& result,
                           const std::string& origin_session) {
  metrics_->acks.Increment();
  if (result.duplicate) {
    metrics_->duplicate_sends.Increment();
    return ToAck(result);
  }
  CountStored(1);
  // The sending session gets the Ack instead; session ids are unique, so
  // only the sender's own session is skipped.
  const size_t delivered = router_->DeliverMessage(
      result.recipients, ToMessage(result.message, 0), origin_session);
  metrics_->deliveries.Increment(delivered);
  if (options_.on_offline && result.message.kind == MessageKind::kText) {
    for (const InboxEntry& r : result.recipients) {
      if (r.user != result.message.from && !router_->IsOnline(r.user)) {
        options_.on_offline(result.message, r.user, r.inbox_seq);
      }
    }
  }
  return ToAck(result);
}

void Messaging::HandleSend(const Origin& origin, const std::string& user,
                           const v1::Send& send) {
  AppendAndAck(origin, PrepareSend(user, send), send.client_msg_id());
}

void Messaging::AppendAndAck(const Origin& origin,
                             absl::StatusOr<AppendRequest> request,
                             const std::string& client_msg_id) {
  if (!request.ok()) {
    SendError(origin, ErrorCodeFor(request.status()),
              request.status().message(), client_msg_id);
    return;
  }
  metrics_->sends.Increment();
  const absl::Time start = absl::Now();
  store_->Append(*std::move(request), [this, origin, start, client_msg_id](
                                          absl::StatusOr<AppendResult> result) {
    metrics_->append_seconds.Observe(
        absl::ToDoubleSeconds(absl::Now() - start));
    if (!result.ok()) {
      SendError(origin, ErrorCodeFor(result.status()),
                result.status().message(), client_msg_id);
      return;
    }
    v1::Ack ack = Deliver(*result, origin.session_id);
    const uint64_t inbox_seq = ack.inbox_seq();
    v1::ServerFrame frame;
    *frame.mutable_ack() = std::move(ack);
    frame.set_request_id(origin.request_id);
    router_->SendToSession(origin.session_id, std::move(frame), inbox_seq);
  });
}

void Messaging::SendAs(const std::string& sender, const v1::Send& send,
                       std::function<void(absl::StatusOr<v1::Ack>)> done) {
  absl::Status valid = ValidateId("sender user id", sender);
  if (!valid.ok()) {
    done(valid);
    return;
  }
  AppendForAdmin(PrepareSend(sender, send), std::move(done));
}

void Messaging::AppendForAdmin(
    absl::StatusOr<AppendRequest> request,
    std::function<void(absl::StatusOr<v1::Ack>)> done) {
  if (!request.ok()) {
    done(request.status());
    return;
  }
  metrics_->sends.Increment();
  const absl::Time start = absl::Now();
  store_->Append(*std::move(request), [this, start, done = std::move(done)](
                                          absl::StatusOr<AppendResult> result) {
    metrics_->append_seconds.Observe(
        absl::ToDoubleSeconds(absl::Now() - start));
    if (!result.ok()) {
      done(result.status());
      return;
    }
    done(Deliver(*result, ""));
  });
}

void Messaging::DeleteAsOperator(
    const std::string& conversation, uint64_t seq,
    std::function<void(absl::StatusOr<v1::Ack>)> done) {
  // One key per message: a retried moderation delete is a duplicate.
  AppendForAdmin(
      PrepareChange("", MessageKind::kDelete,
                    absl::StrCat("moderation:", conversation, ":", seq),
                    conversation, seq, ""),
      std::move(done));
}

void Messaging::HandleSync(const Origin& origin, const std::string& user,
                           const v1::Sync& sync) {
  metrics_->sync_calls.Increment();
  uint32_t limit =
      sync.limit() == 0 ? options_.default_page_size : sync.limit();
  limit = std::min(limit, options_.max_page_size);
  const absl::Time start = absl::Now();
  absl::StatusOr<uint64_t> head = store_->InboxHead(user);
  absl::StatusOr<std::vector<InboxMessage>> page =
      head.ok() ? store_->ReadInbox(user, sync.after_seq(), *head,
                                    static_cast<int>(limit) + 1)
                : head.status();
  metrics_->read_seconds.Observe(absl::ToDoubleSeconds(absl::Now() - start));
  if (!page.ok()) {
    SendError(origin, ErrorCodeFor(page.status()),
              absl::StrCat("sync failed: ", page.status().message()));
    return;
  }
  v1::ServerFrame frame;
  v1::Synced* synced = frame.mutable_synced();
  synced->set_inbox_seq(*head);
  synced->set_more(page->size() > limit);
  if (page->size() > limit) page->resize(limit);
  for (const InboxMessage& m : *page) {
    *synced->add_messages() = ToMessage(m.message, m.inbox_seq);
  }
  Reply(origin, std::move(frame));
}

void Messaging::HandleRead(const Origin& origin, const std::string& user,
                           const v1::Read& read) {
  absl::StatusOr<ConversationRef> ref = ParseConversation(read.conversation());
  if (!ref.ok()) {
    SendError(origin, v1::ERROR_CODE_INVALID_ARGUMENT, ref.status().message());
    return;
  }
  if (read.seq() == 0) {
    SendError(origin, v1::ERROR_CODE_INVALID_ARGUMENT,
              "read seq must be at least 1");
    return;
  }
  v1::Recipient to;
  if (ref->group) {
    to.set_group(ref->group_id);
  } else if (ref->user_a == user || ref->user_b == user) {
    to.set_user(ref->user_a == user ? ref->user_b : ref->user_a);
  } else {
    SendError(origin, v1::ERROR_CODE_PERMISSION_DENIED,
              absl::StrCat("user \"", user, "\" is not in conversation \"",
                           read.conversation(), "\""));
    return;
  }
  absl::StatusOr<Audience> audience = AudienceOf(*store_, user, to);
  absl::StatusOr<uint64_t> head =
      audience.ok() ? store_->ConversationHead(read.conversation())
                    : audience.status();
  if (!head.ok()) {
    SendError(origin, ErrorCodeFor(head.status()), head.status().message());
    return;
  }
  if (read.seq() > *head) {
    SendError(origin, v1::ERROR_CODE_INVALID_ARGUMENT,
              absl::StrCat("read seq ", read.seq(), " is beyond the last seq ",
                           *head, " of \"", read.conversation(), "\""));
    return;
  }
  // Counted here, where blocking is allowed, rather than in the callback.
  absl::StatusOr<uint64_t> unread =
      store_->CountUnread(user, read.conversation(), read.seq());
  if (!unread.ok()) {
    SendError(origin, ErrorCodeFor(unread.status()), unread.status().message());
    return;
  }
  store_->AdvanceReadCursor(
      user, read.conversation(), read.seq(),
      [this, origin, user, conversation = read.conversation(), seq = read.seq(),
       unread = *unread,
       others = std::move(audience->others)](absl::StatusOr<bool> advanced) {
        if (!advanced.ok()) {
          SendError(origin, ErrorCodeFor(advanced.status()),
                    advanced.status().message());
          return;
        }
        if (!*advanced) return;
        metrics_->receipts.Increment();
        v1::ServerFrame frame;
        frame.mutable_receipt()->set_conversation(conversation);
        frame.mutable_receipt()->set_user(user);
        frame.mutable_receipt()->set_seq(seq);
        router_->SendToUsers(others, frame);
        // The reader's other devices learn the read and the count it leaves.
        frame.mutable_receipt()->set_unread(unread);
        router_->SendToUser(user, frame, origin.session_id);
      });
}

void Messaging::HandleListConversations(const Origin& origin,
                                        const std::string& user,
                                        const v1::ListConversations& list) {
  uint32_t limit =
      list.limit() == 0 ? options_.default_conversation_page : list.limit();
  limit = std::min(limit, options_.max_conversation_page);
  const absl::Time start = absl::Now();
  absl::StatusOr<ConversationPage> page = store_->ListConversations(
      user, list.page_token(), static_cast<int>(limit));
  metrics_->read_seconds.Observe(absl::ToDoubleSeconds(absl::Now() - start));
  if (!page.ok()) {
    SendError(
        origin, ErrorCodeFor(page.status()),
        absl::StrCat("list_conversations failed: ", page.status().message()));
    return;
  }
  v1::ServerFrame frame;
  v1::Conversations* out = frame.mutable_conversations();
  for (const ConversationSummary& s : page->conversations) {
    *out->add_conversations() = ToConversationSummary(s);
  }
  out->set_next_page_token(page->next_page_token);
  Reply(origin, std::move(frame));
}

void Messaging::HandleHistory(const Origin& origin, const std::string& user,
                              const v1::History& history) {
  const std::string& conversation = history.conversation();
  absl::StatusOr<ConversationRef> ref = ParseConversation(conversation);
  if (!ref.ok()) {
    SendError(origin, v1::ERROR_CODE_INVALID_ARGUMENT,
              absl::StrCat("history: ", ref.status().message()));
    return;
  }
  absl::Status allowed = MayReadHistory(*store_, user, conversation, *ref);
  if (!allowed.ok()) {
    SendError(origin, ErrorCodeFor(allowed), allowed.message());
    return;
  }
  uint32_t limit =
      history.limit() == 0 ? options_.default_page_size : history.limit();
  limit = std::min(limit, options_.max_page_size);
  const absl::Time start = absl::Now();
  absl::StatusOr<HistoryPage> page = store_->ReadHistory(
      conversation, history.before_seq(), static_cast<int>(limit));
  metrics_->read_seconds.Observe(absl::ToDoubleSeconds(absl::Now() - start));
  if (!page.ok()) {
    SendError(origin, ErrorCodeFor(page.status()),
              absl::StrCat("history of \"", conversation,
                           "\" failed: ", page.status().message()));
    return;
  }
  v1::ServerFrame frame;
  v1::HistoryPage* out = frame.mutable_history();
  out->set_conversation(conversation);
  for (const StoredMessage& m : page->messages) {
    *out->add_messages() = ToMessage(m, /*inbox_seq=*/0);
  }
  out->set_more(page->more);
  Reply(origin, std::move(frame));
}

void Messaging::HandleTyping(const Origin& origin, const std::string& user,
                             const v1::Typing& typing) {
  absl::StatusOr<Audience> audience = AudienceOf(*store_, user, typing.to());
  if (!audience.ok()) {
    SendError(origin, ErrorCodeFor(audience.status()),
              audience.status().message());
    return;
  }
  if (typing.to().has_user() && typing.to().user() != user) {
    absl::StatusOr<bool> blocked =
        store_->BlockedEitherWay(user, typing.to().user());
    if (!blocked.ok()) {
      SendError(origin, ErrorCodeFor(blocked.status()),
                blocked.status().message());
      return;
    }
    // Dropped without a word: typing is best effort, and a Send tells the
    // sender about the block.
    if (*blocked) return;
  }
  metrics_->typing.Increment();
  v1::ServerFrame frame;
  frame.mutable_typing()->set_from(user);
  frame.mutable_typing()->set_conversation(audience->conversation);
  router_->SendToUsers(audience->others, frame);
}

void Messaging::HandleBlock(const Origin& origin, const std::string& user,
                            const v1::Block& block) {
  const std::string& other = block.user();
  if (absl::Status valid = ValidateId("block user id", other); !valid.ok()) {
    SendError(origin, v1::ERROR_CODE_INVALID_ARGUMENT, valid.message());
    return;
  }
  if (other == user) {
    SendError(origin, v1::ERROR_CODE_INVALID_ARGUMENT,
              "a user cannot block themselves");
    return;
  }
  // Whether the two see each other's presence before a block.
  bool were_contacts = false;
  if (block.blocked()) {
    std::optional<std::vector<std::string>> contacts = PresenceContacts(user);
    were_contacts =
        contacts.has_value() &&
        std::binary_search(contacts->begin(), contacts->end(), other);
  }
  absl::StatusOr<bool> changed = store_->SetBlocked(
      user, other, block.blocked(), options_.max_blocked_users);
  absl::StatusOr<std::vector<std::string>> list =
      changed.ok() ? store_->ListBlocked(user) : changed.status();
  if (!list.ok()) {
    SendError(origin, ErrorCodeFor(list.status()), list.status().message());
    return;
  }
  v1::ServerFrame frame = BlockListFrame(*std::move(list));
  if (!*changed) {
    Reply(origin, std::move(frame));
    return;
  }
  LogDebug(
      "user.block",
      {{"user", user}, {"other", other}, {"blocked", block.blocked() ? 1 : 0}});
  // The other sessions of the user get the list as news; this one as the
  // answer to its request.
  router_->SendToUser(user, frame, origin.session_id);
  Reply(origin, std::move(frame));
  if (block.blocked()) {
    if (were_contacts) ShowPresenceBetween(user, other, false);
    return;
  }
  std::optional<std::vector<std::string>> contacts = PresenceContacts(user);
  if (contacts.has_value() &&
      std::binary_search(contacts->begin(), contacts->end(), other)) {
    ShowPresenceBetween(user, other, true);
  }
}

void Messaging::ShowPresenceBetween(const std::string& a, const std::string& b,
                                    bool online) {
  for (const auto& [viewer, seen] :
       {std::make_pair(a, b), std::make_pair(b, a)}) {
    if (!router_->IsOnline(seen)) continue;
    v1::ServerFrame frame;
    frame.mutable_presence()->set_user(seen);
    frame.mutable_presence()->set_online(online);
    router_->SendToUser(viewer, frame);
  }
}

void Messaging::HandleListBlocked(const Origin& origin,
                                  const std::string& user) {
  absl::StatusOr<std::vector<std::string>> list = store_->ListBlocked(user);
  if (!list.ok()) {
    SendError(origin, ErrorCodeFor(list.status()), list.status().message());
    return;
  }
  v1::ServerFrame frame = BlockListFrame(*std::move(list));
  Reply(origin, std::move(frame));
}

void Messaging::CountStored(int64_t n) {
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  absl::MutexLock lock(&rate_mu_);
  const int slot = static_cast<int>(now % 10);
  if (rate_seconds_[slot] != now) {
    rate_seconds_[slot] = now;
    rate_counts_[slot] = 0;
  }
  rate_counts_[slot] += n;
}

double Messaging::MessagesPerSecond() {
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  absl::MutexLock lock(&rate_mu_);
  int64_t total = 0;
  for (int i = 0; i < 10; ++i) {
    if (now - rate_seconds_[i] < 10) total += rate_counts_[i];
  }
  return static_cast<double>(total) / 10.0;
}

}  // namespace parley::service
