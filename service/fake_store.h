// FakeStore: an in-memory Store for unit tests of the domain logic.
//
// It keeps the Store contract (gapless seqs, idempotency, commit-order
// callbacks) with maps under a mutex; nothing is durable. Appends follow the
// IM rules every store shares (append_rules.h). Append and
// AdvanceReadCursor run their callbacks inline, on the caller's thread, while
// holding an ordering lock, so callbacks still run one at a time in commit
// order even when several threads write.
//
// Threading: thread-safe.
#ifndef PARLEY_SERVICE_FAKE_STORE_H_
#define PARLEY_SERVICE_FAKE_STORE_H_

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "service/store.h"

namespace parley::service {

class FakeStore final : public Store {
 public:
  FakeStore() = default;
  // A store with this generation (a restore gives the same data a new one).
  explicit FakeStore(std::string generation)
      : generation_(std::move(generation)) {}

  absl::Status CreateUser(const UserRecord& user) override;
  absl::StatusOr<UserRecord> GetUser(absl::string_view id) override;
  absl::StatusOr<std::vector<UserRecord>> ListUsers(absl::string_view after_id,
                                                    int limit) override;
  absl::Status DeleteUser(absl::string_view id) override;
  absl::Status RevokeTokens(absl::string_view id,
                            absl::Time not_before) override;

  absl::Status CreateGroup(const GroupRecord& group,
                           size_t max_members) override;
  absl::StatusOr<GroupRecord> GetGroup(absl::string_view id) override;
  absl::StatusOr<std::vector<GroupRecord>> ListGroups(
      absl::string_view after_id, int limit) override;
  absl::StatusOr<GroupRecord> AddMembers(
      absl::string_view group_id, const std::vector<std::string>& user_ids,
      size_t max_members) override;
  absl::StatusOr<GroupRecord> RemoveMembers(
      absl::string_view group_id,
      const std::vector<std::string>& user_ids) override;

  void Append(AppendRequest request, AppendCallback done) override;
  absl::StatusOr<uint64_t> InboxHead(absl::string_view user) override;
  absl::StatusOr<std::vector<InboxMessage>> ReadInbox(absl::string_view user,
                                                      uint64_t after_seq,
                                                      uint64_t upto_seq,
                                                      int limit) override;
  absl::StatusOr<HistoryPage> ReadHistory(absl::string_view conversation,
                                          uint64_t before_seq,
                                          int limit) override;
  absl::StatusOr<uint64_t> ConversationHead(
      absl::string_view conversation) override;

  absl::StatusOr<ConversationPage> ListConversations(
      absl::string_view user, absl::string_view page_token, int limit) override;
  absl::StatusOr<uint64_t> CountUnread(absl::string_view user,
                                       absl::string_view conversation,
                                       uint64_t after_seq) override;

  void AdvanceReadCursor(std::string user, std::string conversation,
                         uint64_t seq, CursorCallback done) override;
  absl::StatusOr<uint64_t> ReadCursor(absl::string_view user,
                                      absl::string_view conversation) override;

  absl::StatusOr<std::vector<std::string>> Contacts(
      absl::string_view user, size_t max_group_members) override;
  absl::StatusOr<bool> SetBlocked(absl::string_view user,
                                  absl::string_view other, bool blocked,
                                  size_t max_blocked) override;
  absl::StatusOr<std::vector<std::string>> ListBlocked(
      absl::string_view user) override;
  absl::StatusOr<bool> BlockedEitherWay(absl::string_view a,
                                        absl::string_view b) override;
  absl::StatusOr<StoreStats> Stats() override;
  const std::string& Generation() const override { return generation_; }
  // Writes complete inside the call that makes them: nothing to wait for.
  void Flush() override {}

 private:
  const std::string generation_ = NewStoreGeneration();
  struct User {
    UserRecord record;
    std::vector<size_t> inbox;  // Indexes into messages_; inbox_seq - 1.
  };
  struct Group {
    GroupRecord record;  // `members` and `roles` unused; see members below.
    std::map<std::string, GroupRole> members;
  };

  absl::StatusOr<AppendResult> AppendLocked(const AppendRequest& request)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  GroupRecord ToRecord(const Group& group) const;

  // Held across a write and its callback, so callbacks run in commit order.
  absl::Mutex order_mu_;
  absl::Mutex mu_ ABSL_ACQUIRED_AFTER(order_mu_);
  std::map<std::string, User, std::less<>> users_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Group, std::less<>> groups_ ABSL_GUARDED_BY(mu_);
  std::vector<StoredMessage> messages_ ABSL_GUARDED_BY(mu_);
  // conversation -> indexes into messages_, in seq order.
  std::map<std::string, std::vector<size_t>, std::less<>> conversations_
      ABSL_GUARDED_BY(mu_);
  // (sender, client_msg_id) -> (index into messages_, sender inbox_seq).
  std::map<std::pair<std::string, std::string>, std::pair<size_t, uint64_t>>
      idempotency_ ABSL_GUARDED_BY(mu_);
  // (user, conversation) -> read seq.
  std::map<std::pair<std::string, std::string>, uint64_t> cursors_
      ABSL_GUARDED_BY(mu_);
  // (blocker, blocked).
  std::set<std::pair<std::string, std::string>> blocks_ ABSL_GUARDED_BY(mu_);
  // Direct-conversation participants: user -> peers.
  std::map<std::string, std::set<std::string>, std::less<>> direct_peers_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace parley::service

#endif  // PARLEY_SERVICE_FAKE_STORE_H_
