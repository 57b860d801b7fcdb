#include "service/admin_service.h"

#include <openssl/crypto.h>

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/log.h"

namespace parley::service {

AdminService::AdminService(AdminApi* api, std::string admin_key,
                           Registry& registry)
    : api_(api), admin_key_(std::move(admin_key)), registry_(registry) {}

absl::Status AdminService::Authorize(const grpc::ServerContext& context) const {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    return absl::UnauthenticatedError(
        "missing \"authorization: Bearer <admin key>\" metadata");
  }
  const absl::string_view value(it->second.data(), it->second.size());
  constexpr absl::string_view kBearer = "Bearer ";
  if (!absl::StartsWith(value, kBearer)) {
    return absl::UnauthenticatedError(
        "the authorization metadata must be \"Bearer <admin key>\"");
  }
  const absl::string_view key = value.substr(kBearer.size());
  if (key.size() != admin_key_.size() ||
      CRYPTO_memcmp(key.data(), admin_key_.data(), key.size()) != 0) {
    return absl::UnauthenticatedError("the admin key is wrong");
  }
  return absl::OkStatus();
}

template <typename Request, typename Response>
grpc::Status AdminService::Serve(
    absl::string_view name, grpc::ServerContext* context,
    const Request& request, Response* response,
    absl::StatusOr<Response> (AdminApi::*method)(const Request&)) {
  absl::Status status = Authorize(*context);
  if (!status.ok()) {
    LogInfo("admin.unauthenticated", {{"method", name},
                                      {"peer", context->peer()},
                                      {"reason", status.message()}});
  } else {
    absl::StatusOr<Response> result = (api_->*method)(request);
    status = result.status();
    if (result.ok()) *response = *std::move(result);
  }
  registry_
      .GetCounter("parley_service_admin_calls_total",
                  "Admin API calls, by method and status code.",
                  {{"method", std::string(name)},
                   {"code", absl::StatusCodeToString(status.code())}})
      .Increment();
  return ToGrpcStatus(status);
}

grpc::Status AdminService::CreateUser(grpc::ServerContext* context,
                                      const v1::CreateUserRequest* request,
                                      v1::User* response) {
  return Serve("CreateUser", context, *request, response,
               &AdminApi::CreateUser);
}
grpc::Status AdminService::GetUser(grpc::ServerContext* context,
                                   const v1::GetUserRequest* request,
                                   v1::User* response) {
  return Serve("GetUser", context, *request, response, &AdminApi::GetUser);
}
grpc::Status AdminService::ListUsers(grpc::ServerContext* context,
                                     const v1::ListUsersRequest* request,
                                     v1::ListUsersResponse* response) {
  return Serve("ListUsers", context, *request, response, &AdminApi::ListUsers);
}
grpc::Status AdminService::DeleteUser(grpc::ServerContext* context,
                                      const v1::DeleteUserRequest* request,
                                      v1::DeleteUserResponse* response) {
  return Serve("DeleteUser", context, *request, response,
               &AdminApi::DeleteUser);
}
grpc::Status AdminService::IssueToken(grpc::ServerContext* context,
                                      const v1::IssueTokenRequest* request,
                                      v1::IssueTokenResponse* response) {
  return Serve("IssueToken", context, *request, response,
               &AdminApi::IssueToken);
}
grpc::Status AdminService::CreateGroup(grpc::ServerContext* context,
                                       const v1::CreateGroupRequest* request,
                                       v1::Group* response) {
  return Serve("CreateGroup", context, *request, response,
               &AdminApi::CreateGroup);
}
grpc::Status AdminService::AddMembers(grpc::ServerContext* context,
                                      const v1::AddMembersRequest* request,
                                      v1::Group* response) {
  return Serve("AddMembers", context, *request, response,
               &AdminApi::AddMembers);
}
grpc::Status AdminService::RemoveMembers(
    grpc::ServerContext* context, const v1::RemoveMembersRequest* request,
    v1::Group* response) {
  return Serve("RemoveMembers", context, *request, response,
               &AdminApi::RemoveMembers);
}
grpc::Status AdminService::GetGroup(grpc::ServerContext* context,
                                    const v1::GetGroupRequest* request,
                                    v1::Group* response) {
  return Serve("GetGroup", context, *request, response, &AdminApi::GetGroup);
}
grpc::Status AdminService::ListGroups(grpc::ServerContext* context,
                                      const v1::ListGroupsRequest* request,
                                      v1::ListGroupsResponse* response) {
  return Serve("ListGroups", context, *request, response,
               &AdminApi::ListGroups);
}
grpc::Status AdminService::SendMessage(grpc::ServerContext* context,
                                       const v1::SendMessageRequest* request,
                                       v1::Ack* response) {
  return Serve("SendMessage", context, *request, response,
               &AdminApi::SendMessage);
}
grpc::Status AdminService::Broadcast(grpc::ServerContext* context,
                                     const v1::BroadcastRequest* request,
                                     v1::BroadcastResponse* response) {
  return Serve("Broadcast", context, *request, response, &AdminApi::Broadcast);
}
grpc::Status AdminService::ListSessions(grpc::ServerContext* context,
                                        const v1::ListSessionsRequest* request,
                                        v1::ListSessionsResponse* response) {
  return Serve("ListSessions", context, *request, response,
               &AdminApi::ListSessions);
}
grpc::Status AdminService::Disconnect(grpc::ServerContext* context,
                                      const v1::DisconnectRequest* request,
                                      v1::DisconnectResponse* response) {
  return Serve("Disconnect", context, *request, response,
               &AdminApi::Disconnect);
}
grpc::Status AdminService::DeleteMessage(
    grpc::ServerContext* context, const v1::DeleteMessageRequest* request,
    v1::Ack* response) {
  return Serve("DeleteMessage", context, *request, response,
               &AdminApi::DeleteMessage);
}

grpc::Status AdminService::GetHistory(grpc::ServerContext* context,
                                      const v1::GetHistoryRequest* request,
                                      v1::GetHistoryResponse* response) {
  return Serve("GetHistory", context, *request, response,
               &AdminApi::GetHistory);
}
grpc::Status AdminService::ListConversations(
    grpc::ServerContext* context, const v1::ListConversationsRequest* request,
    v1::ListConversationsResponse* response) {
  return Serve("ListConversations", context, *request, response,
               &AdminApi::ListConversations);
}
grpc::Status AdminService::GetStats(grpc::ServerContext* context,
                                    const v1::GetStatsRequest* request,
                                    v1::Stats* response) {
  return Serve("GetStats", context, *request, response, &AdminApi::GetStats);
}
grpc::Status AdminService::Backup(grpc::ServerContext* context,
                                  const v1::BackupRequest* request,
                                  v1::BackupResponse* response) {
  return Serve("Backup", context, *request, response, &AdminApi::Backup);
}

grpc::Status AdminService::ListBlocks(grpc::ServerContext* context,
                                      const v1::ListBlocksRequest* request,
                                      v1::ListBlocksResponse* response) {
  return Serve("ListBlocks", context, *request, response,
               &AdminApi::ListBlocks);
}

}  // namespace parley::service
