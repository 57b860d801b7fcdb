#include "service/admin_api.h"

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "common/jwt.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "service/conversation.h"
#include "service/timestamps.h"

namespace parley::service {
namespace {

v1::User ToUser(const UserRecord& r) {
  v1::User u;
  u.set_id(r.id);
  u.set_display_name(r.display_name);
  *u.mutable_created_at() = ToTimestamp(r.created_at);
  return u;
}

v1::Group ToGroup(const GroupRecord& r) {
  v1::Group g;
  g.set_id(r.id);
  g.set_display_name(r.display_name);
  for (const std::string& m : r.members) g.add_members(m);
  for (const auto& [user, role] : r.roles) {
    (*g.mutable_roles())[user] = static_cast<v1::GroupRole>(role);
  }
  *g.mutable_created_at() = ToTimestamp(r.created_at);
  return g;
}

// List pages are read with one record more than the page size: if it came,
// it is cut off and the page's last id is the next page token; else "".
template <typename Record>
std::string TrimToPage(std::vector<Record>& records, uint32_t size) {
  if (records.size() <= size) return "";
  records.resize(size);
  return records.back().id;
}

absl::Status ValidatePageToken(absl::string_view token) {
  if (token.empty()) return absl::OkStatus();
  absl::Status valid = ValidateId("page_token", token);
  if (!valid.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_token \"", token, "\" is not one this API issued"));
  }
  return absl::OkStatus();
}

}  // namespace

AdminApi::AdminApi(Store* store, Router* router, Messaging* messaging,
                   StoreBackup* backup, AdminOptions options, Clock clock)
    : store_(store),
      router_(router),
      messaging_(messaging),
      backup_(backup),
      options_(std::move(options)),
      clock_(std::move(clock)),
      started_at_(clock_()) {}

uint32_t AdminApi::PageSize(uint32_t requested) const {
  if (requested == 0) return options_.default_page_size;
  return std::min(requested, options_.max_page_size);
}

absl::Status AdminApi::ValidateMembers(
    const google::protobuf::RepeatedPtrField<std::string>& ids) const {
  for (const std::string& id : ids) {
    RETURN_IF_ERROR(ValidateId("user id", id));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::User> AdminApi::CreateUser(
    const v1::CreateUserRequest& request) {
  RETURN_IF_ERROR(ValidateId("user id", request.id()));
  if (request.display_name().size() > options_.max_display_name_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("display_name is ", request.display_name().size(),
                     " bytes; the limit is ", options_.max_display_name_bytes));
  }
  if (!IsValidUtf8(request.display_name())) {
    return absl::InvalidArgumentError("display_name is not valid UTF-8");
  }
  UserRecord record{request.id(), request.display_name(),
                    absl::FromUnixMicros(absl::ToUnixMicros(clock_()))};
  RETURN_IF_ERROR(store_->CreateUser(record));
  LogInfo("admin.user_created", {{"user", record.id}});
  return ToUser(record);
}

absl::StatusOr<v1::User> AdminApi::GetUser(const v1::GetUserRequest& request) {
  RETURN_IF_ERROR(ValidateId("user id", request.id()));
  ASSIGN_OR_RETURN(UserRecord record, store_->GetUser(request.id()));
  return ToUser(record);
}

absl::StatusOr<v1::ListUsersResponse> AdminApi::ListUsers(
    const v1::ListUsersRequest& request) {
  RETURN_IF_ERROR(ValidatePageToken(request.page_token()));
  const uint32_t size = PageSize(request.page_size());
  ASSIGN_OR_RETURN(
      std::vector<UserRecord> users,
      store_->ListUsers(request.page_token(), static_cast<int>(size) + 1));
  v1::ListUsersResponse response;
  response.set_next_page_token(TrimToPage(users, size));
  for (const UserRecord& u : users) *response.add_users() = ToUser(u);
  return response;
}

absl::StatusOr<v1::DeleteUserResponse> AdminApi::DeleteUser(
    const v1::DeleteUserRequest& request) {
  RETURN_IF_ERROR(ValidateId("user id", request.id()));
  RETURN_IF_ERROR(store_->DeleteUser(request.id()));
  // 4003 with "no-reconnect:": an operator ended it and the token no longer
  // names a user.
  Router::Disconnected closed = router_->Disconnect(
      request.id(), "", 4003, "no-reconnect: the user was deleted", false);
  messaging_->AnnounceOffline(closed.offline_users);
  LogInfo("admin.user_deleted",
          {{"user", request.id()}, {"sessions_closed", closed.sessions}});
  v1::DeleteUserResponse response;
  response.set_sessions_closed(static_cast<uint32_t>(closed.sessions));
  return response;
}

absl::StatusOr<v1::IssueTokenResponse> AdminApi::IssueToken(
    const v1::IssueTokenRequest& request) {
  RETURN_IF_ERROR(ValidateId("user id", request.user_id()));
  if (request.device().size() > options_.max_display_name_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("device is ", request.device().size(),
                     " bytes; the limit is ", options_.max_display_name_bytes));
  }
  const absl::Duration ttl = request.ttl_seconds() == 0
                                 ? options_.default_token_ttl
                                 : absl::Seconds(request.ttl_seconds());
  if (ttl > options_.max_token_ttl) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ttl_seconds ", request.ttl_seconds(), " exceeds the limit of ",
        absl::ToInt64Seconds(options_.max_token_ttl)));
  }
  if (!options_.tokens->CanMint()) {
    return absl::FailedPreconditionError(
        "IssueToken needs an HS256 key (--token_secret or --token_keys_file); "
        "with only --token_jwks_file, tokens come from the identity provider");
  }
  RETURN_IF_ERROR(store_->GetUser(request.user_id()).status());
  const absl::Time now = clock_();
  TokenClaims claims;
  claims.subject = request.user_id();
  claims.issued_at = absl::FromUnixSeconds(absl::ToUnixSeconds(now));
  claims.expires_at = absl::FromUnixSeconds(absl::ToUnixSeconds(now + ttl));
  claims.device = request.device();
  v1::IssueTokenResponse response;
  response.set_token(options_.tokens->Mint(claims));
  *response.mutable_expires_at() = ToTimestamp(claims.expires_at);
  return response;
}

absl::StatusOr<v1::Group> AdminApi::ChangeGroup(const std::string& group,
                                                GroupEvent change,
                                                const std::string& title) {
  absl::Notification done;
  absl::StatusOr<v1::Ack> ack;
  messaging_->ChangeGroupAsOperator(
      absl::StrCat("admin-group-", absl::ToUnixNanos(absl::Now()), "-",
                   generated_ids_.fetch_add(1)),
      group, std::move(change), title, [&](absl::StatusOr<v1::Ack> a) {
        ack = std::move(a);
        done.Notify();
      });
  done.WaitForNotification();
  if (!ack.ok()) return ack.status();
  ASSIGN_OR_RETURN(GroupRecord stored, store_->GetGroup(group));
  return ToGroup(stored);
}

absl::StatusOr<v1::Group> AdminApi::CreateGroup(
    const v1::CreateGroupRequest& request) {
  RETURN_IF_ERROR(ValidateId("group id", request.id()));
  if (request.display_name().size() > options_.max_display_name_bytes ||
      !IsValidUtf8(request.display_name())) {
    return absl::InvalidArgumentError(
        absl::StrCat("display_name must be UTF-8 of at most ",
                     options_.max_display_name_bytes, " bytes"));
  }
  RETURN_IF_ERROR(ValidateMembers(request.members()));
  GroupEvent change;
  change.type = GroupEventType::kCreated;
  change.users.assign(request.members().begin(), request.members().end());
  ASSIGN_OR_RETURN(v1::Group group, ChangeGroup(request.id(), std::move(change),
                                                request.display_name()));
  LogInfo("admin.group_created",
          {{"group", group.id()}, {"members", group.members_size()}});
  return group;
}

absl::StatusOr<v1::Group> AdminApi::AddMembers(
    const v1::AddMembersRequest& request) {
  RETURN_IF_ERROR(ValidateId("group id", request.group_id()));
  if (request.user_ids().empty()) {
    return absl::InvalidArgumentError("user_ids is empty");
  }
  RETURN_IF_ERROR(ValidateMembers(request.user_ids()));
  ASSIGN_OR_RETURN(GroupRecord group, store_->GetGroup(request.group_id()));
  // Adding members who are in already is no change, and no event.
  GroupEvent change;
  change.type = GroupEventType::kMembersAdded;
  for (const std::string& user : request.user_ids()) {
    if (!std::binary_search(group.members.begin(), group.members.end(), user)) {
      change.users.push_back(user);
    }
  }
  if (change.users.empty()) return ToGroup(group);
  return ChangeGroup(request.group_id(), std::move(change), "");
}

absl::StatusOr<v1::Group> AdminApi::RemoveMembers(
    const v1::RemoveMembersRequest& request) {
  RETURN_IF_ERROR(ValidateId("group id", request.group_id()));
  if (request.user_ids().empty()) {
    return absl::InvalidArgumentError("user_ids is empty");
  }
  RETURN_IF_ERROR(ValidateMembers(request.user_ids()));
  ASSIGN_OR_RETURN(GroupRecord group, store_->GetGroup(request.group_id()));
  // Removing users who are not members is no change, and no event.
  GroupEvent change;
  change.type = GroupEventType::kMembersRemoved;
  for (const std::string& user : request.user_ids()) {
    if (std::binary_search(group.members.begin(), group.members.end(), user)) {
      change.users.push_back(user);
    }
  }
  if (change.users.empty()) return ToGroup(group);
  return ChangeGroup(request.group_id(), std::move(change), "");
}

absl::StatusOr<v1::Group> AdminApi::GetGroup(
    const v1::GetGroupRequest& request) {
  RETURN_IF_ERROR(ValidateId("group id", request.id()));
  ASSIGN_OR_RETURN(GroupRecord group, store_->GetGroup(request.id()));
  return ToGroup(group);
}

absl::StatusOr<v1::ListGroupsResponse> AdminApi::ListGroups(
    const v1::ListGroupsRequest& request) {
  RETURN_IF_ERROR(ValidatePageToken(request.page_token()));
  const uint32_t size = PageSize(request.page_size());
  ASSIGN_OR_RETURN(
      std::vector<GroupRecord> groups,
      store_->ListGroups(request.page_token(), static_cast<int>(size) + 1));
  v1::ListGroupsResponse response;
  response.set_next_page_token(TrimToPage(groups, size));
  for (const GroupRecord& g : groups) *response.add_groups() = ToGroup(g);
  return response;
}

absl::StatusOr<v1::Ack> AdminApi::SendMessage(
    const v1::SendMessageRequest& request) {
  RETURN_IF_ERROR(ValidateId("from", request.from()));
  v1::Send send;
  send.set_client_msg_id(request.client_msg_id().empty()
                             ? absl::StrCat("admin-",
                                            absl::ToUnixNanos(absl::Now()), "-",
                                            generated_ids_.fetch_add(1))
                             : request.client_msg_id());
  *send.mutable_to() = request.to();
  send.set_text(request.text());
  absl::Notification done;
  absl::StatusOr<v1::Ack> ack;
  messaging_->SendAs(request.from(), send, [&](absl::StatusOr<v1::Ack> a) {
    ack = std::move(a);
    done.Notify();
  });
  done.WaitForNotification();
  return ack;
}

absl::StatusOr<v1::Ack> AdminApi::DeleteMessage(
    const v1::DeleteMessageRequest& request) {
  absl::Notification done;
  absl::StatusOr<v1::Ack> ack;
  messaging_->DeleteAsOperator(request.conversation(), request.seq(),
                               [&](absl::StatusOr<v1::Ack> a) {
                                 ack = std::move(a);
                                 done.Notify();
                               });
  done.WaitForNotification();
  if (ack.ok()) {
    LogInfo("admin.message_deleted", {{"conversation", request.conversation()},
                                      {"seq", request.seq()},
                                      {"event_seq", ack->seq()},
                                      {"reason", request.reason()}});
  }
  return ack;
}

absl::StatusOr<v1::BroadcastResponse> AdminApi::Broadcast(
    const v1::BroadcastRequest& request) {
  if (request.text().empty()) {
    return absl::InvalidArgumentError("text is empty");
  }
  if (request.text().size() > options_.max_text_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("text is ", request.text().size(), " bytes; the limit is ",
                     options_.max_text_bytes));
  }
  if (!IsValidUtf8(request.text())) {
    return absl::InvalidArgumentError("text is not valid UTF-8");
  }
  v1::ServerFrame frame;
  frame.mutable_announcement()->set_text(request.text());
  *frame.mutable_announcement()->mutable_sent_at() = ToTimestamp(clock_());
  Router::Broadcasted sent = router_->Broadcast(frame);
  LogInfo("admin.broadcast",
          {{"gateways", sent.gateways}, {"sessions", sent.sessions}});
  v1::BroadcastResponse response;
  response.set_gateways(sent.gateways);
  response.set_sessions(sent.sessions);
  return response;
}

absl::StatusOr<v1::ListSessionsResponse> AdminApi::ListSessions(
    const v1::ListSessionsRequest& request) {
  if (!request.user_id().empty()) {
    RETURN_IF_ERROR(ValidateId("user id", request.user_id()));
  }
  v1::ListSessionsResponse response;
  for (const SessionInfo& s : router_->ListSessions(request.user_id())) {
    v1::SessionInfo* info = response.add_sessions();
    info->set_session_id(s.session_id);
    info->set_user_id(s.user_id);
    info->set_device(s.device);
    info->set_gateway_id(s.gateway_id);
    info->set_peer_address(s.peer_address);
    *info->mutable_connected_at() = ToTimestamp(s.connected_at);
  }
  return response;
}

absl::StatusOr<v1::DisconnectResponse> AdminApi::Disconnect(
    const v1::DisconnectRequest& request) {
  if (request.user_id().empty() == request.session_id().empty()) {
    return absl::InvalidArgumentError(
        "give exactly one of user_id and session_id");
  }
  if (!request.user_id().empty()) {
    RETURN_IF_ERROR(ValidateId("user id", request.user_id()));
    RETURN_IF_ERROR(store_->GetUser(request.user_id()).status());
  }
  if (request.reason().size() > 100) {
    // A WebSocket close reason is at most 123 bytes, prefix included.
    return absl::InvalidArgumentError(absl::StrCat(
        "reason is ", request.reason().size(), " bytes; the limit is 100"));
  }
  if (request.revoke_tokens()) {
    if (request.user_id().empty()) {
      return absl::InvalidArgumentError(
          "revoke_tokens needs user_id (tokens belong to a user)");
    }
    // Before the sessions close, so that none of them re-opens with an old
    // token. Whole seconds: a token's iat is.
    RETURN_IF_ERROR(store_->RevokeTokens(
        request.user_id(),
        absl::FromUnixSeconds(absl::ToUnixSeconds(clock_()) + 1)));
  }
  const std::string reason = absl::StrCat(
      request.reconnect() ? "reconnect: " : "no-reconnect: ", request.reason());
  Router::Disconnected closed =
      router_->Disconnect(request.user_id(), request.session_id(), 4003, reason,
                          request.reconnect());
  if (!request.session_id().empty() && closed.sessions == 0) {
    return absl::NotFoundError(
        absl::StrCat("session \"", request.session_id(), "\" is not live"));
  }
  messaging_->AnnounceOffline(closed.offline_users);
  LogInfo("admin.disconnect",
          {{"user", request.user_id()},
           {"session", request.session_id()},
           {"closed", closed.sessions},
           {"reconnect", request.reconnect() ? 1 : 0},
           {"revoked_tokens", request.revoke_tokens() ? 1 : 0}});
  v1::DisconnectResponse response;
  response.set_sessions_closed(static_cast<uint32_t>(closed.sessions));
  return response;
}

absl::StatusOr<v1::GetHistoryResponse> AdminApi::GetHistory(
    const v1::GetHistoryRequest& request) {
  ASSIGN_OR_RETURN(ConversationRef ref,
                   ParseConversation(request.conversation()));
  if (ref.group) {
    RETURN_IF_ERROR(store_->GetGroup(ref.group_id).status());
  }
  ASSIGN_OR_RETURN(
      HistoryPage page,
      store_->ReadHistory(request.conversation(), request.before_seq(),
                          static_cast<int>(PageSize(request.limit()))));
  v1::GetHistoryResponse response;
  for (const StoredMessage& m : page.messages) {
    *response.add_messages() = ToMessage(m, /*inbox_seq=*/0);
  }
  response.set_more(page.more);
  return response;
}

absl::StatusOr<v1::ListConversationsResponse> AdminApi::ListConversations(
    const v1::ListConversationsRequest& request) {
  RETURN_IF_ERROR(ValidateId("user id", request.user_id()));
  ASSIGN_OR_RETURN(ConversationPage page,
                   store_->ListConversations(
                       request.user_id(), request.page_token(),
                       static_cast<int>(PageSize(request.page_size()))));
  v1::ListConversationsResponse response;
  for (const ConversationSummary& s : page.conversations) {
    *response.add_conversations() = ToConversationSummary(s);
  }
  response.set_next_page_token(page.next_page_token);
  return response;
}

absl::StatusOr<v1::Stats> AdminApi::GetStats(const v1::GetStatsRequest&) {
  ASSIGN_OR_RETURN(StoreStats stored, store_->Stats());
  v1::Stats stats;
  const Router::Census census = router_->TakeCensus();
  stats.set_gateways(static_cast<uint32_t>(census.gateways));
  stats.set_live_sessions(static_cast<uint32_t>(census.sessions));
  stats.set_users(stored.users);
  stats.set_stored_messages(stored.messages);
  stats.set_messages_per_second(messaging_->MessagesPerSecond());
  stats.set_uptime_seconds(static_cast<uint64_t>(
      std::max<int64_t>(0, absl::ToInt64Seconds(clock_() - started_at_))));
  stats.set_store_generation(store_->Generation());
  return stats;
}

absl::StatusOr<v1::BackupResponse> AdminApi::Backup(
    const v1::BackupRequest& request) {
  if (backup_ == nullptr) {
    return absl::UnimplementedError("this service's store cannot be backed up");
  }
  absl::StatusOr<BackupSummary> copy = backup_->Write(request.path());
  if (!copy.ok()) {
    LogWarn("admin.backup_failed",
            {{"path", request.path()}, {"error", copy.status().ToString()}});
    return copy.status();
  }
  LogInfo("admin.backup", {{"path", copy->path},
                           {"bytes", copy->size_bytes},
                           {"users", copy->users},
                           {"messages", copy->messages},
                           {"last_message_id", copy->last_message_id},
                           {"generation", copy->generation}});
  v1::BackupResponse response;
  response.set_path(copy->path);
  response.set_size_bytes(copy->size_bytes);
  response.set_users(copy->users);
  response.set_groups(copy->groups);
  response.set_messages(copy->messages);
  response.set_last_message_id(absl::StrCat(copy->last_message_id));
  response.set_generation(copy->generation);
  return response;
}

absl::StatusOr<v1::ListBlocksResponse> AdminApi::ListBlocks(
    const v1::ListBlocksRequest& request) {
  RETURN_IF_ERROR(ValidateId("user id", request.id()));
  ASSIGN_OR_RETURN(std::vector<std::string> blocked,
                   store_->ListBlocked(request.id()));
  v1::ListBlocksResponse response;
  for (std::string& u : blocked) response.add_users(std::move(u));
  return response;
}

}  // namespace parley::service
