// AdminApi: what the parley.v1.Admin calls do, without gRPC: validation,
// limits, paging, and the Store, Router and Messaging calls behind each.
// admin_service.h adapts it to gRPC (and checks the admin key). Backups go
// through a StoreBackup (store_backup.h), so nothing here knows the store's
// files.
//
// Every failure is an absl::Status with the gRPC code the call should
// return and a message naming the problem: INVALID_ARGUMENT for malformed
// input, NOT_FOUND, ALREADY_EXISTS, PERMISSION_DENIED, RESOURCE_EXHAUSTED
// for limits, UNAVAILABLE when the store fails. A failed call changes
// nothing.
//
// Paging: page tokens are the last id of the previous page (opaque to
// callers; ListConversations' are the store's, see Store::ListConversations);
// page_size 0 means `default_page_size`, larger than `max_page_size` is capped.
//
// Group changes (CreateGroup, AddMembers, RemoveMembers) go through
// Messaging as an operator's group events: every member sees them in the
// conversation. Adding members already in, or removing users not in, changes
// nothing and stores no event.
//
// Threading: thread-safe. Calls block on the Store (SendMessage and group
// changes until durable): run them on gRPC's sync-server threads or a
// worker.
#ifndef PARLEY_SERVICE_ADMIN_API_H_
#define PARLEY_SERVICE_ADMIN_API_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/token_verifier.h"
#include "parley/v1/admin.pb.h"
#include "service/messaging.h"
#include "service/router.h"
#include "service/store.h"
#include "service/store_backup.h"

namespace parley::service {

// Options for AdminApi.
struct AdminOptions {
  // The keys tokens are minted with (required; IssueToken needs an HS256
  // key).
  std::shared_ptr<const TokenVerifier> tokens;
  // Token lifetime when IssueToken asks for 0, and the longest allowed.
  absl::Duration default_token_ttl = absl::Hours(24);
  absl::Duration max_token_ttl = absl::Hours(24 * 365);
  // List page sizes (users, groups, history).
  uint32_t default_page_size = 100;
  uint32_t max_page_size = 1000;
  // Longest display name and device name, in bytes.
  size_t max_display_name_bytes = 128;
  // Longest broadcast text, in bytes.
  size_t max_text_bytes = 4096;
};

class AdminApi final {
 public:
  using Clock = std::function<absl::Time()>;

  // Everything passed must outlive this object. `backup` may be null (a
  // store that cannot be backed up): Backup then answers UNIMPLEMENTED.
  AdminApi(
      Store* store, Router* router, Messaging* messaging, StoreBackup* backup,
      AdminOptions options, Clock clock = [] { return absl::Now(); });

  absl::StatusOr<v1::User> CreateUser(const v1::CreateUserRequest& request);
  absl::StatusOr<v1::User> GetUser(const v1::GetUserRequest& request);
  absl::StatusOr<v1::ListUsersResponse> ListUsers(
      const v1::ListUsersRequest& request);
  absl::StatusOr<v1::DeleteUserResponse> DeleteUser(
      const v1::DeleteUserRequest& request);
  absl::StatusOr<v1::IssueTokenResponse> IssueToken(
      const v1::IssueTokenRequest& request);
  absl::StatusOr<v1::Group> CreateGroup(const v1::CreateGroupRequest& request);
  absl::StatusOr<v1::Group> AddMembers(const v1::AddMembersRequest& request);
  absl::StatusOr<v1::Group> RemoveMembers(
      const v1::RemoveMembersRequest& request);
  absl::StatusOr<v1::Group> GetGroup(const v1::GetGroupRequest& request);
  absl::StatusOr<v1::ListGroupsResponse> ListGroups(
      const v1::ListGroupsRequest& request);
  // Blocks until the message is durable and delivered (or failed).
  absl::StatusOr<v1::Ack> SendMessage(const v1::SendMessageRequest& request);
  absl::StatusOr<v1::BroadcastResponse> Broadcast(
      const v1::BroadcastRequest& request);
  absl::StatusOr<v1::ListSessionsResponse> ListSessions(
      const v1::ListSessionsRequest& request);
  absl::StatusOr<v1::DisconnectResponse> Disconnect(
      const v1::DisconnectRequest& request);
  absl::StatusOr<v1::Ack> DeleteMessage(
      const v1::DeleteMessageRequest& request);
  absl::StatusOr<v1::GetHistoryResponse> GetHistory(
      const v1::GetHistoryRequest& request);
  absl::StatusOr<v1::ListConversationsResponse> ListConversations(
      const v1::ListConversationsRequest& request);
  absl::StatusOr<v1::Stats> GetStats(const v1::GetStatsRequest& request);
  // Blocks while the copy is written and checked (see StoreBackup::Write).
  absl::StatusOr<v1::BackupResponse> Backup(const v1::BackupRequest& request);
  absl::StatusOr<v1::ListBlocksResponse> ListBlocks(
      const v1::ListBlocksRequest& request);

 private:
  uint32_t PageSize(uint32_t requested) const;
  // Changes the group as an operator (a group event, see
  // Messaging::ChangeGroupAsOperator) and returns it as it is then.
  absl::StatusOr<v1::Group> ChangeGroup(const std::string& group,
                                        GroupEvent change,
                                        const std::string& title);
  absl::Status ValidateMembers(
      const google::protobuf::RepeatedPtrField<std::string>& ids) const;

  Store* const store_;
  Router* const router_;
  Messaging* const messaging_;
  StoreBackup* const backup_;
  const AdminOptions options_;
  const Clock clock_;
  const absl::Time started_at_;
  // For SendMessage requests without a client_msg_id.
  std::atomic<uint64_t> generated_ids_{0};
};

}  // namespace parley::service

#endif  // PARLEY_SERVICE_ADMIN_API_H_
