// AdminService: the gRPC adapter for parley.v1.Admin (sync unary API).
//
// It checks the admin key and hands each request to AdminApi, mapping the
// result with common/grpc_status.h. Every call needs the metadata
// `authorization: Bearer <admin key>`; a missing or wrong key gets
// UNAUTHENTICATED before anything is read or changed.
//
// Threading: gRPC calls the handlers on its sync-server threads, where
// blocking on the Store is fine.
#ifndef PARLEY_SERVICE_ADMIN_SERVICE_H_
#define PARLEY_SERVICE_ADMIN_SERVICE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/metrics.h"
#include "parley/v1/admin.grpc.pb.h"
#include "service/admin_api.h"

namespace parley::service {

class AdminService final : public v1::Admin::Service {
 public:
  // `api` and `registry` must outlive the service. `admin_key` must not be
  // empty. Calls are counted in parley_service_admin_calls_total{method,code}.
  AdminService(AdminApi* api, std::string admin_key, Registry& registry);

  grpc::Status CreateUser(grpc::ServerContext* context,
                          const v1::CreateUserRequest* request,
                          v1::User* response) override;
  grpc::Status GetUser(grpc::ServerContext* context,
                       const v1::GetUserRequest* request,
                       v1::User* response) override;
  grpc::Status ListUsers(grpc::ServerContext* context,
                         const v1::ListUsersRequest* request,
                         v1::ListUsersResponse* response) override;
  grpc::Status DeleteUser(grpc::ServerContext* context,
                          const v1::DeleteUserRequest* request,
                          v1::DeleteUserResponse* response) override;
  grpc::Status IssueToken(grpc::ServerContext* context,
                          const v1::IssueTokenRequest* request,
                          v1::IssueTokenResponse* response) override;
  grpc::Status CreateGroup(grpc::ServerContext* context,
                           const v1::CreateGroupRequest* request,
                           v1::Group* response) override;
  grpc::Status AddMembers(grpc::ServerContext* context,
                          const v1::AddMembersRequest* request,
                          v1::Group* response) override;
  grpc::Status RemoveMembers(grpc::ServerContext* context,
                             const v1::RemoveMembersRequest* request,
                             v1::Group* response) override;
  grpc::Status GetGroup(grpc::ServerContext* context,
                        const v1::GetGroupRequest* request,
                        v1::Group* response) override;
  grpc::Status ListGroups(grpc::ServerContext* context,
                          const v1::ListGroupsRequest* request,
                          v1::ListGroupsResponse* response) override;
  grpc::Status SendMessage(grpc::ServerContext* context,
                           const v1::SendMessageRequest* request,
                           v1::Ack* response) override;
  grpc::Status Broadcast(grpc::ServerContext* context,
                         const v1::BroadcastRequest* request,
                         v1::BroadcastResponse* response) override;
  grpc::Status ListSessions(grpc::ServerContext* context,
                            const v1::ListSessionsRequest* request,
                            v1::ListSessionsResponse* response) override;
  grpc::Status Disconnect(grpc::ServerContext* context,
                          const v1::DisconnectRequest* request,
                          v1::DisconnectResponse* response) override;
  grpc::Status DeleteMessage(grpc::ServerContext* context,
                             const v1::DeleteMessageRequest* request,
                             v1::Ack* response) override;
  grpc::Status GetHistory(grpc::ServerContext* context,
                          const v1::GetHistoryRequest* request,
                          v1::GetHistoryResponse* response) override;
  grpc::Status ListConversations(
      grpc::ServerContext* context, const v1::ListConversationsRequest* request,
      v1::ListConversationsResponse* response) override;
  grpc::Status GetStats(grpc::ServerContext* context,
                        const v1::GetStatsRequest* request,
                        v1::Stats* response) override;
  grpc::Status Backup(grpc::ServerContext* context,
                      const v1::BackupRequest* request,
                      v1::BackupResponse* response) override;
  grpc::Status ListBlocks(grpc::ServerContext* context,
                          const v1::ListBlocksRequest* request,
                          v1::ListBlocksResponse* response) override;

 private:
  // OK when the call carries the admin key.
  absl::Status Authorize(const grpc::ServerContext& context) const;

  // Authorizes, runs `method` and maps its outcome.
  template <typename Request, typename Response>
  grpc::Status Serve(
      absl::string_view name, grpc::ServerContext* context,
      const Request& request, Response* response,
      absl::StatusOr<Response> (AdminApi::*method)(const Request&));

  AdminApi* const api_;
  const std::string admin_key_;
  Registry& registry_;
};

}  // namespace parley::service

#endif  // PARLEY_SERVICE_ADMIN_SERVICE_H_
