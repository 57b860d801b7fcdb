// The Store contract, run against every implementation: FakeStore,
// SqliteStore and PgStore must agree on seqs, idempotency, paging and errors.
// PgStore runs on a real PostgreSQL started for this binary, one fresh
// database per test.
#include "service/store.h"

#include <stdlib.h>

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/fake_store.h"
#include "service/pg_store.h"
#include "service/sqlite_store.h"
#include "service/testing/postgres_server.h"

namespace parley::service {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::IsEmpty;

struct StoreFactory {
  std::string name;
  std::function<std::unique_ptr<Store>()> make;
};

std::string MakeTempDir() {
  std::string pattern = ::testing::TempDir() + "/store_test.XXXXXX";
  char* dir = mkdtemp(pattern.data());
  EXPECT_NE(dir, nullptr);
  return pattern;
}

// The PostgreSQL server of this test binary, started on first use and
// stopped at exit.
testing::PostgresServer* SharedPostgres() {
  static std::unique_ptr<testing::PostgresServer> server = [] {
    auto started = testing::PostgresServer::Start();
    EXPECT_TRUE(started.ok()) << started.status();
    return started.ok() ? std::move(started).value() : nullptr;
  }();
  return server.get();
}

std::unique_ptr<Store> MakePgStore() {
  static int databases = 0;
  testing::PostgresServer* server = SharedPostgres();
  if (server == nullptr) return nullptr;
  auto url =
      server->CreateDatabase("store_test_" + std::to_string(++databases));
  EXPECT_TRUE(url.ok()) << url.status();
  if (!url.ok()) return nullptr;
  PgStoreOptions options;
  options.url = *url;
  auto store = PgStore::Open(options);
  EXPECT_TRUE(store.ok()) << store.status();
  if (!store.ok()) return nullptr;
  return std::move(store).value();
}

class StoreTest : public ::testing::TestWithParam<StoreFactory> {
 protected:
  void SetUp() override {
    store_ = GetParam().make();
    ASSERT_NE(store_, nullptr);
    for (const char* id : {"alice", "bob", "carol"}) {
      ASSERT_TRUE(store_->CreateUser({id, "", absl::FromUnixSeconds(1)}).ok());
    }
  }

  absl::StatusOr<AppendResult> AppendSync(
      const std::string& from, const std::string& to, bool group,
      const std::string& client_msg_id, const std::string& text = "hi",
      absl::Time sent_at = absl::FromUnixSeconds(100)) {
    AppendRequest r;
    r.sender = from;
    r.to = to;
    r.to_group = group;
    r.client_msg_id = client_msg_id;
    r.text = text;
    r.sent_at = sent_at;
    r.conversation = group
                         ? "g:" + to
                         : "d:" + std::min(from, to) + ":" + std::max(from, to);
    absl::StatusOr<AppendResult> out;
    absl::Notification done;
    store_->Append(r, [&](absl::StatusOr<AppendResult> result) {
      out = std::move(result);
      done.Notify();
    });
    done.WaitForNotification();
    return out;
  }

  // An edit (text non-empty) or delete of message `seq` of `conversation`
  // by `sender` (empty: an operator), sent at `at` seconds.
  absl::StatusOr<AppendResult> ChangeSync(
      const std::string& sender, const std::string& conversation, uint64_t seq,
      const std::string& client_msg_id, const std::string& text = "",
      int64_t at = 200, absl::Duration window = absl::InfiniteDuration()) {
    AppendRequest r;
    r.sender = sender;
    r.client_msg_id = client_msg_id;
    r.conversation = conversation;
    r.kind = text.empty() ? MessageKind::kDelete : MessageKind::kEdit;
    r.target_seq = seq;
    r.text = text;
    r.sent_at = absl::FromUnixSeconds(at);
    r.edit_window = window;
    if (conversation.rfind("g:", 0) == 0) {
      r.to_group = true;
      r.to = conversation.substr(2);
    } else if (!sender.empty()) {
      // "d:<a>:<b>": the other one.
      const size_t colon = conversation.find(':', 2);
      const std::string a = conversation.substr(2, colon - 2);
      const std::string b = conversation.substr(colon + 1);
      r.to = a == sender ? b : a;
    }
    absl::StatusOr<AppendResult> out;
    absl::Notification done;
    store_->Append(r, [&](absl::StatusOr<AppendResult> result) {
      out = std::move(result);
      done.Notify();
    });
    done.WaitForNotification();
    return out;
  }

  // A group event of `sender` (empty: an operator) on `group`.
  absl::StatusOr<AppendResult> GroupSync(
      const std::string& sender, const std::string& group, GroupEventType type,
      std::vector<std::string> users, const std::string& client_msg_id,
      const std::string& title = "", GroupRole role = GroupRole::kMember,
      size_t limit = 10) {
    AppendRequest r;
    r.sender = sender;
    r.client_msg_id = client_msg_id;
    r.conversation = "g:" + group;
    r.to_group = true;
    r.to = group;
    r.kind = MessageKind::kGroupEvent;
    r.text = title;
    r.sent_at = absl::FromUnixSeconds(300);
    r.group_event.type = type;
    r.group_event.users = std::move(users);
    r.group_event.role = role;
    r.max_group_members = limit;
    absl::StatusOr<AppendResult> out;
    absl::Notification done;
    store_->Append(r, [&](absl::StatusOr<AppendResult> result) {
      out = std::move(result);
      done.Notify();
    });
    done.WaitForNotification();
    return out;
  }

  std::vector<StoredMessage> History(const std::string& conversation) {
    auto page = store_->ReadHistory(conversation, 0, 100);
    EXPECT_TRUE(page.ok()) << page.status();
    return page.ok() ? page->messages : std::vector<StoredMessage>{};
  }

  std::unique_ptr<Store> store_;
};

// Every store's serving of a message: history, and each inbox it is in.
void ExpectNoTextAnywhere(Store& store, const std::string& conversation,
                          const std::string& text) {
  auto page = store.ReadHistory(conversation, 0, 100);
  ASSERT_TRUE(page.ok());
  for (const StoredMessage& m : page->messages) {
    EXPECT_EQ(m.text.find(text), std::string::npos) << m.seq;
  }
  for (const char* user : {"alice", "bob", "carol"}) {
    auto inbox = store.ReadInbox(user, 0, 0, 100);
    ASSERT_TRUE(inbox.ok());
    for (const InboxMessage& m : *inbox) {
      EXPECT_EQ(m.message.text.find(text), std::string::npos)
          << user << " " << m.inbox_seq;
    }
  }
}

TEST_P(StoreTest, CreateUserTwiceIsAlreadyExists) {
  absl::Status status = store_->CreateUser({"alice", "A", absl::Now()});
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(std::string(status.message()), ::testing::HasSubstr("alice"));
}

TEST_P(StoreTest, ListUsersPagesInIdOrder) {
  auto first = store_->ListUsers("", 2);
  ASSERT_TRUE(first.ok());
  EXPECT_THAT(*first, ElementsAre(Field(&UserRecord::id, "alice"),
                                  Field(&UserRecord::id, "bob")));
  auto second = store_->ListUsers("bob", 2);
  ASSERT_TRUE(second.ok());
  EXPECT_THAT(*second, ElementsAre(Field(&UserRecord::id, "carol")));
}

TEST_P(StoreTest, DirectMessagesGetGaplessSeqAndInboxSeq) {
  auto m1 = AppendSync("alice", "bob", false, "c1");
  auto m2 = AppendSync("bob", "alice", false, "c2");
  auto m3 = AppendSync("alice", "carol", false, "c3");
  ASSERT_TRUE(m1.ok() && m2.ok() && m3.ok());
  EXPECT_EQ(m1->message.seq, 1u);
  EXPECT_EQ(m2->message.seq, 2u);
  EXPECT_EQ(m2->message.conversation, "d:alice:bob");
  EXPECT_EQ(m3->message.seq, 1u);  // Another conversation.
  EXPECT_EQ(m1->sender_inbox_seq, 1u);
  EXPECT_EQ(m3->sender_inbox_seq, 3u);  // alice's third inbox message.
  EXPECT_THAT(m2->recipients,
              ElementsAre(Field(&InboxEntry::inbox_seq, 2u),    // alice
                          Field(&InboxEntry::inbox_seq, 2u)));  // bob
  EXPECT_EQ(*store_->InboxHead("alice"), 3u);
  EXPECT_EQ(*store_->InboxHead("carol"), 1u);
}

TEST_P(StoreTest, RepeatedClientMsgIdReturnsOriginalAndStoresNothing) {
  auto first = AppendSync("alice", "bob", false, "same", "one");
  auto again = AppendSync("alice", "bob", false, "same", "two");
  ASSERT_TRUE(first.ok() && again.ok());
  EXPECT_FALSE(first->duplicate);
  EXPECT_TRUE(again->duplicate);
  EXPECT_EQ(again->message.message_id, first->message.message_id);
  EXPECT_EQ(again->message.text, "one");
  EXPECT_EQ(again->sender_inbox_seq, first->sender_inbox_seq);
  EXPECT_THAT(again->recipients, IsEmpty());
  EXPECT_EQ(*store_->InboxHead("bob"), 1u);
  EXPECT_EQ(store_->Stats()->messages, 1u);
  // The same client_msg_id from another sender is another message.
  auto other = AppendSync("bob", "alice", false, "same");
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->duplicate);
}

TEST_P(StoreTest, AppendToUnknownPeerOrGroupStoresNothing) {
  EXPECT_EQ(AppendSync("alice", "nobody", false, "c1").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(AppendSync("alice", "nogroup", true, "c2").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(AppendSync("ghost", "alice", false, "c3").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(*store_->InboxHead("alice"), 0u);
  EXPECT_EQ(store_->Stats()->messages, 0u);
}

TEST_P(StoreTest, GroupAppendFansOutToMembersOnly) {
  ASSERT_TRUE(
      store_->CreateGroup({"team", "Team", {"alice", "bob"}, absl::Now()}, 10)
          .ok());
  auto denied = AppendSync("carol", "team", true, "c0");
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied);
  auto m = AppendSync("alice", "team", true, "c1");
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->message.conversation, "g:team");
  EXPECT_EQ(m->message.seq, 1u);
  EXPECT_THAT(m->recipients, ElementsAre(Field(&InboxEntry::user, "alice"),
                                         Field(&InboxEntry::user, "bob")));
  EXPECT_EQ(*store_->InboxHead("carol"), 0u);
  ASSERT_TRUE(store_->AddMembers("team", {"carol"}, 10).ok());
  auto m2 = AppendSync("carol", "team", true, "c2");
  ASSERT_TRUE(m2.ok());
  EXPECT_EQ(m2->message.seq, 2u);
  EXPECT_EQ(m2->recipients.size(), 3u);
}

TEST_P(StoreTest, GroupSizeLimitIsEnforcedAtomically) {
  auto created =
      store_->CreateGroup({"g", "", {"alice", "bob", "carol"}, absl::Now()}, 2);
  EXPECT_EQ(created.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(store_->GetGroup("g").status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(store_->CreateGroup({"g", "", {"alice"}, absl::Now()}, 2).ok());
  EXPECT_EQ(store_->AddMembers("g", {"bob", "carol"}, 2).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(store_->GetGroup("g")->members, ElementsAre("alice"));
  EXPECT_EQ(store_->AddMembers("g", {"nobody"}, 2).status().code(),
            absl::StatusCode::kNotFound);
  auto removed = store_->RemoveMembers("g", {"alice", "bob"});
  ASSERT_TRUE(removed.ok());
  EXPECT_THAT(removed->members, IsEmpty());
}

TEST_P(StoreTest, ReadInboxPagesAndBounds) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(
        AppendSync("alice", "bob", false, "c" + std::to_string(i)).ok());
  }
  auto page = store_->ReadInbox("bob", 1, 0, 2);
  ASSERT_TRUE(page.ok());
  EXPECT_THAT(*page, ElementsAre(Field(&InboxMessage::inbox_seq, 2u),
                                 Field(&InboxMessage::inbox_seq, 3u)));
  EXPECT_EQ((*page)[0].message.client_msg_id, "c1");
  auto bounded = store_->ReadInbox("bob", 2, 4, 100);
  ASSERT_TRUE(bounded.ok());
  EXPECT_THAT(*bounded, ElementsAre(Field(&InboxMessage::inbox_seq, 3u),
                                    Field(&InboxMessage::inbox_seq, 4u)));
  EXPECT_EQ(store_->ReadInbox("nobody", 0, 0, 10).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(StoreTest, ReadHistoryReturnsNewestPageInSeqOrder) {
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(
        AppendSync("alice", "bob", false, "c" + std::to_string(i)).ok());
  }
  auto newest = store_->ReadHistory("d:alice:bob", 0, 2);
  ASSERT_TRUE(newest.ok());
  EXPECT_THAT(newest->messages, ElementsAre(Field(&StoredMessage::seq, 4u),
                                            Field(&StoredMessage::seq, 5u)));
  EXPECT_TRUE(newest->more);
  auto oldest = store_->ReadHistory("d:alice:bob", 3, 10);
  ASSERT_TRUE(oldest.ok());
  EXPECT_THAT(oldest->messages, ElementsAre(Field(&StoredMessage::seq, 1u),
                                            Field(&StoredMessage::seq, 2u)));
  EXPECT_FALSE(oldest->more);
  EXPECT_EQ(*store_->ConversationHead("d:alice:bob"), 5u);
  EXPECT_EQ(*store_->ConversationHead("d:bob:carol"), 0u);
}

TEST_P(StoreTest, ReadCursorIsMonotonic) {
  auto advance = [&](uint64_t seq) {
    absl::StatusOr<bool> out;
    store_->AdvanceReadCursor("bob", "d:alice:bob", seq,
                              [&](absl::StatusOr<bool> r) { out = r; });
    store_->Flush();
    return out;
  };
  EXPECT_TRUE(*advance(3));
  EXPECT_FALSE(*advance(2));
  EXPECT_FALSE(*advance(3));
  EXPECT_EQ(*store_->ReadCursor("bob", "d:alice:bob"), 3u);
  EXPECT_TRUE(*advance(4));
  EXPECT_EQ(*store_->ReadCursor("bob", "d:alice:bob"), 4u);
  EXPECT_EQ(*store_->ReadCursor("alice", "d:alice:bob"), 0u);
}

// alice's conversations with the given ids, in the store's order, page by
// page of `limit`; every page but the last has a next_page_token.
std::vector<std::vector<std::string>> ConversationPages(Store& store,
                                                        const std::string& user,
                                                        int limit) {
  std::vector<std::vector<std::string>> pages;
  std::string token;
  do {
    absl::StatusOr<ConversationPage> page =
        store.ListConversations(user, token, limit);
    EXPECT_TRUE(page.ok()) << page.status();
    if (!page.ok() || pages.size() > 10) break;
    std::vector<std::string>& ids = pages.emplace_back();
    for (const ConversationSummary& c : page->conversations) {
      ids.push_back(c.conversation);
    }
    token = page->next_page_token;
  } while (!token.empty());
  return pages;
}

TEST_P(StoreTest, ListConversationsOrdersByLastActivityAndPages) {
  auto at = [](int seconds) { return absl::FromUnixSeconds(seconds); };
  ASSERT_TRUE(store_->CreateUser({"dave", "Dave D", at(1)}).ok());
  ASSERT_TRUE(
      store_->CreateGroup({"team", "Team", {"alice", "bob"}, at(50)}, 10).ok());
  ASSERT_TRUE(
      store_->CreateGroup({"quiet", "Quiet", {"alice", "carol"}, at(150)}, 10)
          .ok());
  ASSERT_TRUE(
      store_->CreateGroup({"other", "Other", {"bob", "carol"}, at(500)}, 10)
          .ok());
  ASSERT_TRUE(AppendSync("alice", "bob", false, "c1", "old", at(100)).ok());
  ASSERT_TRUE(AppendSync("dave", "alice", false, "c2", "hey", at(120)).ok());
  ASSERT_TRUE(AppendSync("carol", "alice", false, "c3", "yo", at(200)).ok());
  ASSERT_TRUE(AppendSync("bob", "team", true, "c4", "all", at(300)).ok());
  ASSERT_TRUE(AppendSync("bob", "carol", false, "c5", "psst", at(400)).ok());

  // Newest first; a group without messages by its creation; only alice's.
  EXPECT_THAT(ConversationPages(*store_, "alice", 2),
              ElementsAre(ElementsAre("g:team", "d:alice:carol"),
                          ElementsAre("g:quiet", "d:alice:dave"),
                          ElementsAre("d:alice:bob")));
  EXPECT_THAT(ConversationPages(*store_, "alice", 5),
              ElementsAre(ElementsAre("g:team", "d:alice:carol", "g:quiet",
                                      "d:alice:dave", "d:alice:bob")));

  auto page = store_->ListConversations("alice", "", 10);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->conversations.size(), 5u);
  EXPECT_TRUE(page->next_page_token.empty());
  const ConversationSummary& team = page->conversations[0];
  EXPECT_TRUE(team.group);
  EXPECT_EQ(team.title, "Team");
  EXPECT_EQ(team.peer, "");
  EXPECT_EQ(team.head_seq, 1u);
  EXPECT_EQ(team.last_activity, at(300));
  ASSERT_TRUE(team.last_message.has_value());
  EXPECT_EQ(team.last_message->text, "all");
  EXPECT_EQ(team.last_message->from, "bob");
  const ConversationSummary& carol = page->conversations[1];
  EXPECT_FALSE(carol.group);
  EXPECT_EQ(carol.peer, "carol");
  EXPECT_EQ(carol.title, "carol");  // No display name: the id.
  EXPECT_EQ(carol.last_message->seq, 1u);
  const ConversationSummary& quiet = page->conversations[2];
  EXPECT_EQ(quiet.title, "Quiet");
  EXPECT_EQ(quiet.head_seq, 0u);
  EXPECT_EQ(quiet.last_activity, at(150));
  EXPECT_FALSE(quiet.last_message.has_value());
  EXPECT_EQ(quiet.unread, 0u);
  EXPECT_EQ(page->conversations[3].title, "Dave D");
  EXPECT_EQ(page->conversations[3].peer, "dave");

  // bob sees the team, carol, alice; dave only alice.
  EXPECT_THAT(ConversationPages(*store_, "bob", 10),
              ElementsAre(ElementsAre("g:other", "d:bob:carol", "g:team",
                                      "d:alice:bob")));
  EXPECT_THAT(ConversationPages(*store_, "dave", 10),
              ElementsAre(ElementsAre("d:alice:dave")));
  // A removed member no longer lists the group.
  ASSERT_TRUE(store_->RemoveMembers("quiet", {"alice"}).ok());
  EXPECT_THAT(ConversationPages(*store_, "alice", 10),
              ElementsAre(ElementsAre("g:team", "d:alice:carol", "d:alice:dave",
                                      "d:alice:bob")));
}

TEST_P(StoreTest, ListConversationsBreaksActivityTiesByIdAcrossPages) {
  // Every message at the same time: the order is by id, descending, and a
  // page boundary inside the tie neither repeats nor skips one.
  ASSERT_TRUE(AppendSync("alice", "bob", false, "c1").ok());
  ASSERT_TRUE(AppendSync("alice", "carol", false, "c2").ok());
  ASSERT_TRUE(AppendSync("alice", "alice", false, "c3").ok());
  EXPECT_THAT(
      ConversationPages(*store_, "alice", 1),
      ElementsAre(ElementsAre("d:alice:carol"), ElementsAre("d:alice:bob"),
                  ElementsAre("d:alice:alice")));
  // A conversation with oneself has oneself as its peer.
  auto page = store_->ListConversations("alice", "", 10);
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->conversations[2].peer, "alice");
  EXPECT_EQ(page->conversations[2].unread, 0u);
}

TEST_P(StoreTest, ListConversationsCountsUnreadAndReadPositions) {
  ASSERT_TRUE(store_
                  ->CreateGroup(
                      {"team", "", {"alice", "bob", "carol"}, absl::Now()}, 10)
                  .ok());
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(
        AppendSync("bob", "alice", false, "b" + std::to_string(i)).ok());
  }
  ASSERT_TRUE(AppendSync("alice", "bob", false, "a4").ok());
  ASSERT_TRUE(AppendSync("bob", "alice", false, "b5").ok());
  ASSERT_TRUE(AppendSync("carol", "team", true, "t1").ok());
  ASSERT_TRUE(AppendSync("carol", "team", true, "t2").ok());
  auto advance = [&](const std::string& user, const std::string& conversation,
                     uint64_t seq) {
    store_->AdvanceReadCursor(
        user, conversation, seq,
        [](absl::StatusOr<bool> r) { ASSERT_TRUE(r.ok()); });
    store_->Flush();
  };
  advance("alice", "d:alice:bob", 2);
  advance("bob", "d:alice:bob", 4);
  advance("alice", "g:team", 1);

  auto find = [&](const std::string& user, const std::string& id) {
    auto page = store_->ListConversations(user, "", 10);
    EXPECT_TRUE(page.ok()) << page.status();
    for (const ConversationSummary& c : page->conversations) {
      if (c.conversation == id) return c;
    }
    ADD_FAILURE() << id << " is not among " << user << "'s conversations";
    return ConversationSummary();
  };
  const ConversationSummary alice_dm = find("alice", "d:alice:bob");
  EXPECT_EQ(alice_dm.head_seq, 5u);
  EXPECT_EQ(alice_dm.read_seq, 2u);
  EXPECT_EQ(alice_dm.unread, 2u);  // Seqs 3 and 5; 4 is alice's own.
  EXPECT_EQ(alice_dm.peer_read_seq, 4u);
  const ConversationSummary bob_dm = find("bob", "d:alice:bob");
  EXPECT_EQ(bob_dm.read_seq, 4u);
  EXPECT_EQ(bob_dm.unread, 0u);  // Seq 5 is bob's own.
  EXPECT_EQ(bob_dm.peer_read_seq, 2u);
  const ConversationSummary alice_team = find("alice", "g:team");
  EXPECT_EQ(alice_team.read_seq, 1u);
  EXPECT_EQ(alice_team.unread, 1u);
  EXPECT_EQ(alice_team.peer_read_seq, 0u);
  EXPECT_EQ(alice_team.title, "");
  EXPECT_EQ(find("bob", "g:team").unread, 2u);
  EXPECT_EQ(find("carol", "g:team").unread, 0u);

  EXPECT_EQ(*store_->CountUnread("alice", "d:alice:bob", 2), 2u);
  EXPECT_EQ(*store_->CountUnread("alice", "d:alice:bob", 0), 4u);
  EXPECT_EQ(*store_->CountUnread("bob", "d:alice:bob", 0), 1u);
  EXPECT_EQ(*store_->CountUnread("alice", "d:alice:bob", 5), 0u);
  EXPECT_EQ(*store_->CountUnread("alice", "d:alice:carol", 0), 0u);
}

TEST_P(StoreTest, ListConversationsRefusesUnknownUsersAndBadTokens) {
  EXPECT_EQ(store_->ListConversations("nobody", "", 10).status().code(),
            absl::StatusCode::kNotFound);
  for (const char* token : {"x", "!!", "bm8tc2xhc2g", "YWJjL2Q"}) {
    EXPECT_EQ(store_->ListConversations("alice", token, 10).status().code(),
              absl::StatusCode::kInvalidArgument)
        << token;
  }
  // A user in no conversation gets an empty last page.
  auto empty = store_->ListConversations("carol", "", 10);
  ASSERT_TRUE(empty.ok());
  EXPECT_THAT(empty->conversations, IsEmpty());
  EXPECT_TRUE(empty->next_page_token.empty());
}

TEST_P(StoreTest, ContactsAreGroupMatesAndDirectPeers) {
  ASSERT_TRUE(
      store_->CreateGroup({"g", "", {"alice", "bob"}, absl::Now()}, 10).ok());
  ASSERT_TRUE(AppendSync("carol", "alice", false, "c1").ok());
  EXPECT_THAT(*store_->Contacts("alice", 10), ElementsAre("bob", "carol"));
  EXPECT_THAT(*store_->Contacts("carol", 10), ElementsAre("alice"));
  // A group above the size limit does not make contacts; direct peers stay.
  EXPECT_THAT(*store_->Contacts("alice", 1), ElementsAre("carol"));
  EXPECT_THAT(*store_->Contacts("bob", 1), IsEmpty());
}

TEST_P(StoreTest, RevokedTokensNotBeforeIsKeptAndNeverMovesBack) {
  EXPECT_EQ(store_->GetUser("alice")->tokens_not_before, absl::InfinitePast());
  ASSERT_TRUE(store_->RevokeTokens("alice", absl::FromUnixSeconds(2000)).ok());
  EXPECT_EQ(store_->GetUser("alice")->tokens_not_before,
            absl::FromUnixSeconds(2000));
  // An earlier time does not undo a later revocation.
  ASSERT_TRUE(store_->RevokeTokens("alice", absl::FromUnixSeconds(1500)).ok());
  EXPECT_EQ(store_->GetUser("alice")->tokens_not_before,
            absl::FromUnixSeconds(2000));
  ASSERT_TRUE(store_->RevokeTokens("alice", absl::FromUnixSeconds(3000)).ok());
  auto users = store_->ListUsers("", 10);
  ASSERT_TRUE(users.ok());
  ASSERT_EQ(users->size(), 3u);
  EXPECT_EQ((*users)[0].tokens_not_before, absl::FromUnixSeconds(3000));
  EXPECT_EQ((*users)[1].tokens_not_before, absl::InfinitePast());
  EXPECT_EQ(store_->RevokeTokens("nobody", absl::Now()).code(),
            absl::StatusCode::kNotFound);
  // A user deleted and created again starts without a revocation.
  ASSERT_TRUE(store_->DeleteUser("alice").ok());
  ASSERT_TRUE(store_->CreateUser({"alice", "", absl::FromUnixSeconds(1)}).ok());
  EXPECT_EQ(store_->GetUser("alice")->tokens_not_before, absl::InfinitePast());
}

TEST_P(StoreTest, DeleteUserRemovesMembershipInboxAndKeys) {
  ASSERT_TRUE(
      store_->CreateGroup({"g", "", {"alice", "bob"}, absl::Now()}, 10).ok());
  ASSERT_TRUE(AppendSync("alice", "bob", false, "k").ok());
  ASSERT_TRUE(store_->DeleteUser("alice").ok());
  EXPECT_EQ(store_->GetUser("alice").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->DeleteUser("alice").code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(store_->GetGroup("g")->members, ElementsAre("bob"));
  // Bob keeps the message; a re-created alice starts a fresh inbox and may
  // reuse the key.
  EXPECT_EQ(*store_->InboxHead("bob"), 1u);
  ASSERT_TRUE(store_->CreateUser({"alice", "", absl::Now()}).ok());
  EXPECT_EQ(*store_->InboxHead("alice"), 0u);
  auto again = AppendSync("alice", "bob", false, "k");
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->duplicate);
  EXPECT_EQ(again->message.seq, 2u);
  EXPECT_EQ(again->sender_inbox_seq, 1u);
}

TEST_P(StoreTest, DeletedUserNeitherSendsNorReceives) {
  ASSERT_TRUE(AppendSync("alice", "bob", false, "k1").ok());
  ASSERT_TRUE(store_->DeleteUser("alice").ok());
  EXPECT_EQ(AppendSync("alice", "bob", false, "k2").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(AppendSync("bob", "alice", false, "k3").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(*store_->InboxHead("bob"), 1u);
}

TEST_P(StoreTest, RecreatedUserStartsItsInboxAtOne) {
  ASSERT_TRUE(AppendSync("alice", "bob", false, "k1").ok());
  ASSERT_TRUE(AppendSync("alice", "bob", false, "k2").ok());
  ASSERT_TRUE(store_->DeleteUser("bob").ok());
  ASSERT_TRUE(store_->CreateUser({"bob", "", absl::Now()}).ok());
  auto sent = AppendSync("alice", "bob", false, "k3");
  ASSERT_TRUE(sent.ok());
  EXPECT_EQ(sent->message.seq, 3u);  // The conversation goes on.
  EXPECT_EQ(sent->sender_inbox_seq, 3u);
  EXPECT_THAT(sent->recipients, ::testing::Contains(::testing::Field(
                                    &InboxEntry::inbox_seq, 1u)));
  EXPECT_EQ(*store_->InboxHead("bob"), 1u);
}

TEST_P(StoreTest, BlocksAreSetListedAndUnset) {
  EXPECT_THAT(*store_->ListBlocked("alice"), IsEmpty());
  EXPECT_TRUE(*store_->SetBlocked("alice", "carol", true, 10));
  EXPECT_TRUE(*store_->SetBlocked("alice", "bob", true, 10));
  // Repeating a block changes nothing.
  EXPECT_FALSE(*store_->SetBlocked("alice", "bob", true, 10));
  EXPECT_THAT(*store_->ListBlocked("alice"), ElementsAre("bob", "carol"));
  EXPECT_THAT(*store_->ListBlocked("bob"), IsEmpty());
  EXPECT_TRUE(*store_->BlockedEitherWay("alice", "bob"));
  EXPECT_TRUE(*store_->BlockedEitherWay("bob", "alice"));
  EXPECT_FALSE(*store_->BlockedEitherWay("bob", "carol"));
  EXPECT_TRUE(*store_->SetBlocked("alice", "bob", false, 10));
  EXPECT_FALSE(*store_->SetBlocked("alice", "bob", false, 10));
  EXPECT_THAT(*store_->ListBlocked("alice"), ElementsAre("carol"));
  EXPECT_FALSE(*store_->BlockedEitherWay("alice", "bob"));
}

TEST_P(StoreTest, BlockingOneselfOrAnUnknownUserIsRefused) {
  auto self = store_->SetBlocked("alice", "alice", true, 10);
  EXPECT_EQ(self.status().code(), absl::StatusCode::kInvalidArgument);
  auto unknown = store_->SetBlocked("alice", "nobody", true, 10);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(unknown.status().message()),
              ::testing::HasSubstr("nobody"));
  EXPECT_EQ(store_->SetBlocked("nobody", "alice", true, 10).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->ListBlocked("nobody").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(*store_->ListBlocked("alice"), IsEmpty());
}

TEST_P(StoreTest, BlockListIsBoundedAtomically) {
  ASSERT_TRUE(*store_->SetBlocked("alice", "bob", true, 1));
  auto over = store_->SetBlocked("alice", "carol", true, 1);
  EXPECT_EQ(over.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(*store_->ListBlocked("alice"), ElementsAre("bob"));
  // At the limit, repeating a block and unblocking still work.
  EXPECT_FALSE(*store_->SetBlocked("alice", "bob", true, 1));
  EXPECT_TRUE(*store_->SetBlocked("alice", "bob", false, 1));
  EXPECT_TRUE(*store_->SetBlocked("alice", "carol", true, 1));
}

TEST_P(StoreTest, DirectMessagesAreRefusedBothWaysWhileBlocked) {
  ASSERT_TRUE(AppendSync("bob", "alice", false, "k1").ok());
  ASSERT_TRUE(*store_->SetBlocked("alice", "bob", true, 10));
  auto to_blocker = AppendSync("bob", "alice", false, "k2");
  EXPECT_TRUE(IsBlockedError(to_blocker.status())) << to_blocker.status();
  EXPECT_EQ(to_blocker.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(to_blocker.status().message(),
            "user \"alice\" does not accept your messages");
  auto from_blocker = AppendSync("alice", "bob", false, "k3");
  EXPECT_TRUE(IsBlockedError(from_blocker.status())) << from_blocker.status();
  EXPECT_THAT(std::string(from_blocker.status().message()),
              ::testing::HasSubstr("you blocked \"bob\""));
  // Nothing stored, nothing numbered.
  EXPECT_EQ(*store_->ConversationHead("d:alice:bob"), 1u);
  EXPECT_EQ(*store_->InboxHead("alice"), 1u);
  EXPECT_EQ(*store_->InboxHead("bob"), 1u);
  EXPECT_EQ(store_->Stats()->messages, 1u);
  // Others, and notes to oneself, are unaffected.
  EXPECT_TRUE(AppendSync("carol", "bob", false, "k4").ok());
  EXPECT_TRUE(AppendSync("alice", "alice", false, "k5").ok());
  // A refused send left no idempotency key: once unblocked, its retry is a
  // new message.
  ASSERT_TRUE(*store_->SetBlocked("alice", "bob", false, 10));
  auto retried = AppendSync("bob", "alice", false, "k2");
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_FALSE(retried->duplicate);
  EXPECT_EQ(retried->message.seq, 2u);
}

TEST_P(StoreTest, GroupMessagesIgnoreBlocks) {
  ASSERT_TRUE(
      store_->CreateGroup({"g", "", {"alice", "bob"}, absl::Now()}, 10).ok());
  ASSERT_TRUE(*store_->SetBlocked("alice", "bob", true, 10));
  auto m = AppendSync("bob", "g", true, "k1");
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_THAT(m->recipients, ElementsAre(Field(&InboxEntry::user, "alice"),
                                         Field(&InboxEntry::user, "bob")));
}

TEST_P(StoreTest, ContactsExcludeBlockedPairsEitherWay) {
  ASSERT_TRUE(
      store_->CreateGroup({"g", "", {"alice", "bob", "carol"}, absl::Now()}, 10)
          .ok());
  ASSERT_TRUE(AppendSync("alice", "bob", false, "k1").ok());
  ASSERT_TRUE(*store_->SetBlocked("bob", "alice", true, 10));
  EXPECT_THAT(*store_->Contacts("alice", 10), ElementsAre("carol"));
  EXPECT_THAT(*store_->Contacts("bob", 10), ElementsAre("carol"));
  EXPECT_THAT(*store_->Contacts("carol", 10), ElementsAre("alice", "bob"));
  ASSERT_TRUE(*store_->SetBlocked("bob", "alice", false, 10));
  EXPECT_THAT(*store_->Contacts("alice", 10), ElementsAre("bob", "carol"));
  EXPECT_THAT(*store_->Contacts("bob", 10), ElementsAre("alice", "carol"));
}

TEST_P(StoreTest, DeleteUserRemovesBlocksBothWays) {
  ASSERT_TRUE(*store_->SetBlocked("alice", "bob", true, 10));
  ASSERT_TRUE(*store_->SetBlocked("carol", "alice", true, 10));
  ASSERT_TRUE(store_->DeleteUser("alice").ok());
  EXPECT_THAT(*store_->ListBlocked("carol"), IsEmpty());
  ASSERT_TRUE(store_->CreateUser({"alice", "", absl::Now()}).ok());
  EXPECT_THAT(*store_->ListBlocked("alice"), IsEmpty());
  EXPECT_TRUE(AppendSync("carol", "alice", false, "k1").ok());
  EXPECT_TRUE(AppendSync("alice", "bob", false, "k2").ok());
}

TEST_P(StoreTest, NoDirectMessageCommitsAfterTheBlockThatRefusedOne) {
  // Sends race with the block; in commit order, the accepted ones all come
  // before the refused ones.
  absl::Mutex mu;
  std::vector<absl::StatusCode> outcomes;
  constexpr int kSends = 200;
  for (int i = 0; i < kSends; ++i) {
    if (i == kSends / 2) {
      ASSERT_TRUE(*store_->SetBlocked("alice", "bob", true, 10));
    }
    AppendRequest r;
    r.sender = "bob";
    r.to = "alice";
    r.client_msg_id = "k" + std::to_string(i);
    r.text = "hi";
    r.sent_at = absl::FromUnixSeconds(100);
    r.conversation = "d:alice:bob";
    store_->Append(r, [&](absl::StatusOr<AppendResult> result) {
      absl::MutexLock lock(&mu);
      outcomes.push_back(result.status().code());
    });
  }
  store_->Flush();
  absl::MutexLock lock(&mu);
  ASSERT_EQ(outcomes.size(), static_cast<size_t>(kSends));
  const auto first_refused = std::find(outcomes.begin(), outcomes.end(),
                                       absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(std::count(first_refused, outcomes.end(), absl::StatusCode::kOk),
            0);
  EXPECT_GE(std::count(first_refused, outcomes.end(),
                       absl::StatusCode::kPermissionDenied),
            kSends / 2);
  const uint64_t accepted = first_refused - outcomes.begin();
  EXPECT_EQ(*store_->ConversationHead("d:alice:bob"), accepted);
}

TEST_P(StoreTest, EditAndDeleteAreEventsNumberedLikeMessages) {
  ASSERT_TRUE(AppendSync("alice", "bob", false, "c1", "first draft").ok());
  auto edit = ChangeSync("alice", "d:alice:bob", 1, "e1", "second draft");
  ASSERT_TRUE(edit.ok()) << edit.status();
  EXPECT_FALSE(edit->duplicate);
  EXPECT_EQ(edit->message.seq, 2u);
  EXPECT_EQ(edit->message.kind, MessageKind::kEdit);
  EXPECT_EQ(edit->message.target_seq, 1u);
  EXPECT_EQ(edit->message.text, "second draft");
  EXPECT_EQ(edit->message.to, "bob");
  EXPECT_EQ(edit->sender_inbox_seq, 2u);
  EXPECT_THAT(edit->recipients, ElementsAre(Field(&InboxEntry::user, "alice"),
                                            Field(&InboxEntry::user, "bob")));

  std::vector<StoredMessage> history = History("d:alice:bob");
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[0].text, "second draft");
  EXPECT_EQ(history[0].edited_at, absl::FromUnixSeconds(200));
  EXPECT_FALSE(history[0].deleted);
  EXPECT_EQ(history[0].kind, MessageKind::kText);
  EXPECT_EQ(history[1].kind, MessageKind::kEdit);
  EXPECT_EQ(history[1].text, "second draft");
  ExpectNoTextAnywhere(*store_, "d:alice:bob", "first draft");

  auto del = ChangeSync("alice", "d:alice:bob", 1, "x1");
  ASSERT_TRUE(del.ok()) << del.status();
  EXPECT_EQ(del->message.seq, 3u);
  EXPECT_EQ(del->message.kind, MessageKind::kDelete);
  EXPECT_EQ(del->message.text, "");
  EXPECT_EQ(del->sender_inbox_seq, 3u);

  // bob's inbox: the tombstone, then both events, once each, in order.
  auto inbox = store_->ReadInbox("bob", 0, 0, 100);
  ASSERT_TRUE(inbox.ok());
  ASSERT_EQ(inbox->size(), 3u);
  EXPECT_EQ((*inbox)[0].inbox_seq, 1u);
  EXPECT_TRUE((*inbox)[0].message.deleted);
  EXPECT_EQ((*inbox)[0].message.text, "");
  EXPECT_EQ((*inbox)[1].message.kind, MessageKind::kEdit);
  EXPECT_EQ((*inbox)[1].message.text, "") << "the edit's text is scrubbed";
  EXPECT_EQ((*inbox)[2].message.kind, MessageKind::kDelete);
  EXPECT_EQ((*inbox)[2].message.target_seq, 1u);
  ExpectNoTextAnywhere(*store_, "d:alice:bob", "draft");
  EXPECT_EQ(*store_->ConversationHead("d:alice:bob"), 3u);
}

TEST_P(StoreTest, UnreadAndTheListCountOnlyTextsStillThere) {
  ASSERT_TRUE(
      AppendSync("bob", "alice", false, "b1", "one", absl::FromUnixSeconds(100))
          .ok());
  ASSERT_TRUE(
      AppendSync("bob", "alice", false, "b2", "two", absl::FromUnixSeconds(110))
          .ok());
  // An edit event is no unread message and does not move the conversation.
  ASSERT_TRUE(ChangeSync("bob", "d:alice:bob", 1, "e1", "one!", 200).ok());
  auto page = store_->ListConversations("alice", "", 10);
  ASSERT_TRUE(page.ok()) << page.status();
  ASSERT_EQ(page->conversations.size(), 1u);
  EXPECT_EQ(page->conversations[0].head_seq, 3u);
  EXPECT_EQ(page->conversations[0].unread, 2u);
  EXPECT_EQ(page->conversations[0].last_activity, absl::FromUnixSeconds(110));
  ASSERT_TRUE(page->conversations[0].last_message.has_value());
  EXPECT_EQ(page->conversations[0].last_message->seq, 2u);
  EXPECT_EQ(page->conversations[0].last_message->text, "two");
  // A deleted message is no longer unread; the list shows its tombstone.
  ASSERT_TRUE(ChangeSync("bob", "d:alice:bob", 2, "x2", "", 210).ok());
  page = store_->ListConversations("alice", "", 10);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->conversations[0].unread, 1u);
  ASSERT_TRUE(page->conversations[0].last_message.has_value());
  EXPECT_TRUE(page->conversations[0].last_message->deleted);
  EXPECT_EQ(page->conversations[0].last_message->text, "");
  EXPECT_EQ(*store_->CountUnread("alice", "d:alice:bob", 0), 1u);
  EXPECT_EQ(*store_->CountUnread("bob", "d:alice:bob", 0), 0u);
}

TEST_P(StoreTest, GroupEditReachesTheMembersAtCommitTime) {
  ASSERT_TRUE(
      store_
          ->CreateGroup(
              {"team", "", {"alice", "bob"}, absl::FromUnixSeconds(1)}, 10)
          .ok());
  ASSERT_TRUE(AppendSync("alice", "team", true, "c1", "hello").ok());
  ASSERT_TRUE(store_->AddMembers("team", {"carol"}, 10).ok());
  auto edit = ChangeSync("alice", "g:team", 1, "e1", "hello all");
  ASSERT_TRUE(edit.ok()) << edit.status();
  EXPECT_TRUE(edit->message.to_group);
  EXPECT_EQ(edit->message.to, "team");
  EXPECT_THAT(edit->recipients, ElementsAre(Field(&InboxEntry::user, "alice"),
                                            Field(&InboxEntry::user, "bob"),
                                            Field(&InboxEntry::user, "carol")));
  EXPECT_EQ(History("g:team")[0].text, "hello all");
}

TEST_P(StoreTest, RefusedEditsAndDeletesStoreNothing) {
  ASSERT_TRUE(
      store_
          ->CreateGroup(
              {"team", "", {"alice", "bob"}, absl::FromUnixSeconds(1)}, 10)
          .ok());
  ASSERT_TRUE(AppendSync("alice", "bob", false, "c1", "mine").ok());
  ASSERT_TRUE(ChangeSync("alice", "d:alice:bob", 1, "e1", "mine!").ok());
  ASSERT_TRUE(AppendSync("alice", "team", true, "c2", "group text").ok());
  ASSERT_TRUE(AppendSync("alice", "bob", false, "c3", "gone").ok());
  ASSERT_TRUE(ChangeSync("alice", "d:alice:bob", 3, "x1").ok());
  const uint64_t alice = *store_->InboxHead("alice");
  const uint64_t bob = *store_->InboxHead("bob");

  struct Case {
    std::string sender, conversation;
    uint64_t seq;
    std::string text;
    absl::Duration window;
    absl::StatusCode code;
    std::string named;
  };
  const Case cases[] = {
      {"bob", "d:alice:bob", 1, "bob's", absl::InfiniteDuration(),
       absl::StatusCode::kPermissionDenied, "sent by \"alice\""},
      {"bob", "d:alice:bob", 1, "", absl::InfiniteDuration(),
       absl::StatusCode::kPermissionDenied, "sent by \"alice\""},
      {"alice", "d:alice:bob", 1, "late", absl::Seconds(99),
       absl::StatusCode::kFailedPrecondition, "edit window"},
      {"alice", "d:alice:bob", 2, "", absl::InfiniteDuration(),
       absl::StatusCode::kFailedPrecondition, "not a text message"},
      {"alice", "d:alice:bob", 3, "", absl::InfiniteDuration(),
       absl::StatusCode::kFailedPrecondition, "already deleted"},
      {"alice", "d:alice:bob", 3, "again", absl::InfiniteDuration(),
       absl::StatusCode::kFailedPrecondition, "already deleted"},
      {"alice", "d:alice:bob", 9, "nope", absl::InfiniteDuration(),
       absl::StatusCode::kNotFound, "message 9"},
      {"carol", "g:team", 1, "", absl::InfiniteDuration(),
       absl::StatusCode::kPermissionDenied, "not a member"},
      {"alice", "g:nogroup", 1, "", absl::InfiniteDuration(),
       absl::StatusCode::kNotFound, "nogroup"},
      {"", "d:alice:bob", 1, "operators do not edit", absl::InfiniteDuration(),
       absl::StatusCode::kInvalidArgument, "operator"},
  };
  int n = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.sender + " " + c.conversation + " " + c.text);
    auto result = ChangeSync(c.sender, c.conversation, c.seq,
                             "r" + std::to_string(++n), c.text, 200, c.window);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.status().code(), c.code) << result.status();
    EXPECT_THAT(std::string(result.status().message()),
                ::testing::HasSubstr(c.named));
  }
  EXPECT_EQ(*store_->InboxHead("alice"), alice);
  EXPECT_EQ(*store_->InboxHead("bob"), bob);
  EXPECT_EQ(*store_->ConversationHead("d:alice:bob"), 4u);
  EXPECT_EQ(History("d:alice:bob")[0].text, "mine!");
  // Within the window it works, and the refused keys were not spent.
  auto ok = ChangeSync("alice", "d:alice:bob", 1, "r3", "in time", 150,
                       absl::Seconds(99));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_FALSE(ok->duplicate);
}

TEST_P(StoreTest, RepeatedEditIsADuplicateAndStoresNothing) {
  ASSERT_TRUE(AppendSync("alice", "bob", false, "c1", "one").ok());
  auto first = ChangeSync("alice", "d:alice:bob", 1, "e1", "two");
  auto again = ChangeSync("alice", "d:alice:bob", 1, "e1", "three");
  ASSERT_TRUE(first.ok() && again.ok());
  EXPECT_TRUE(again->duplicate);
  EXPECT_TRUE(again->recipients.empty());
  EXPECT_EQ(again->message.seq, first->message.seq);
  EXPECT_EQ(again->message.message_id, first->message.message_id);
  EXPECT_EQ(again->sender_inbox_seq, first->sender_inbox_seq);
  EXPECT_EQ(again->message.kind, MessageKind::kEdit);
  EXPECT_EQ(History("d:alice:bob")[0].text, "two");
  EXPECT_EQ(*store_->InboxHead("bob"), 2u);
}

TEST_P(StoreTest, AnOperatorDeletesAnyMessageWithoutAWindow) {
  ASSERT_TRUE(AppendSync("bob", "alice", false, "c1", "spam").ok());
  // An operator has no inbox: the event enters both users' only.
  auto del = ChangeSync("", "d:alice:bob", 1, "moderation:1", "", 1'000'000,
                        absl::Seconds(1));
  ASSERT_TRUE(del.ok()) << del.status();
  EXPECT_EQ(del->message.from, "");
  EXPECT_EQ(del->message.kind, MessageKind::kDelete);
  EXPECT_EQ(del->message.to, "alice");  // Addressed like its target.
  EXPECT_EQ(del->sender_inbox_seq, 0u);
  EXPECT_THAT(del->recipients, ElementsAre(Field(&InboxEntry::user, "alice"),
                                           Field(&InboxEntry::user, "bob")));
  EXPECT_TRUE(History("d:alice:bob")[0].deleted);
  ExpectNoTextAnywhere(*store_, "d:alice:bob", "spam");
  auto again = ChangeSync("", "d:alice:bob", 1, "moderation:1");
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->duplicate);

  ASSERT_TRUE(
      store_
          ->CreateGroup(
              {"team", "", {"alice", "carol"}, absl::FromUnixSeconds(1)}, 10)
          .ok());
  ASSERT_TRUE(AppendSync("carol", "team", true, "c2", "rude").ok());
  auto group = ChangeSync("", "g:team", 1, "moderation:2");
  ASSERT_TRUE(group.ok()) << group.status();
  EXPECT_THAT(group->recipients,
              ElementsAre(Field(&InboxEntry::user, "alice"),
                          Field(&InboxEntry::user, "carol")));
  EXPECT_TRUE(History("g:team")[0].deleted);
}

// The recipients of an append, as "user:inbox_seq".
std::vector<std::string> Inboxes(const AppendResult& result) {
  std::vector<std::string> out;
  for (const InboxEntry& e : result.recipients) {
    out.push_back(e.user + ":" + std::to_string(e.inbox_seq));
  }
  return out;
}

TEST_P(StoreTest, GroupEventsChangeTheGroupAndAreNumberedLikeMessages) {
  using T = GroupEventType;
  auto created = GroupSync("alice", "g1", T::kCreated, {"bob"}, "k1", "Team");
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->message.seq, 1u);
  EXPECT_EQ(created->message.kind, MessageKind::kGroupEvent);
  EXPECT_EQ(created->message.text, "Team");
  EXPECT_THAT(created->message.group_event.users, ElementsAre("alice", "bob"));
  EXPECT_THAT(Inboxes(*created), ElementsAre("alice:1", "bob:1"));
  EXPECT_EQ(created->sender_inbox_seq, 1u);
  auto group = store_->GetGroup("g1");
  ASSERT_TRUE(group.ok()) << group.status();
  EXPECT_EQ(group->display_name, "Team");
  EXPECT_EQ(group->created_at, absl::FromUnixSeconds(300));
  EXPECT_THAT(group->members, ElementsAre("alice", "bob"));
  EXPECT_EQ(group->roles,
            (std::map<std::string, GroupRole>{{"alice", GroupRole::kOwner}}));

  auto added =
      GroupSync("alice", "g1", T::kMembersAdded, {"carol", "bob"}, "k2");
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(added->message.seq, 2u);
  EXPECT_THAT(added->message.group_event.users, ElementsAre("carol"));
  EXPECT_THAT(Inboxes(*added), ElementsAre("alice:2", "bob:2", "carol:1"));
  // The new member sends at once.
  ASSERT_TRUE(AppendSync("carol", "g1", true, "c1").ok());

  auto promoted = GroupSync("alice", "g1", T::kRoleChanged, {"bob"}, "k3", "",
                            GroupRole::kAdmin);
  ASSERT_TRUE(promoted.ok()) << promoted.status();
  EXPECT_EQ(promoted->message.group_event.role, GroupRole::kAdmin);
  auto renamed = GroupSync("bob", "g1", T::kRenamed, {}, "k4", "Crew");
  ASSERT_TRUE(renamed.ok()) << renamed.status();
  EXPECT_EQ(store_->GetGroup("g1")->display_name, "Crew");

  // The removed member gets the event, and nothing after it.
  auto removed = GroupSync("bob", "g1", T::kMembersRemoved, {"carol"}, "k5");
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->message.seq, 6u);
  EXPECT_THAT(Inboxes(*removed), ElementsAre("alice:6", "bob:6", "carol:5"));
  auto left = GroupSync("bob", "g1", T::kMemberLeft, {}, "k6");
  ASSERT_TRUE(left.ok()) << left.status();
  EXPECT_THAT(left->message.group_event.users, ElementsAre("bob"));
  EXPECT_THAT(Inboxes(*left), ElementsAre("alice:7", "bob:7"));
  group = store_->GetGroup("g1");
  ASSERT_TRUE(group.ok());
  EXPECT_THAT(group->members, ElementsAre("alice"));
  EXPECT_EQ(AppendSync("carol", "g1", true, "c2").status().code(),
            absl::StatusCode::kPermissionDenied);

  // History and inboxes serve the events as stored.
  std::vector<StoredMessage> history = History("g:g1");
  ASSERT_EQ(history.size(), 7u);
  std::vector<T> types;
  for (const StoredMessage& m : history) types.push_back(m.group_event.type);
  EXPECT_THAT(types, ElementsAre(T::kCreated, T::kMembersAdded, T::kNone,
                                 T::kRoleChanged, T::kRenamed,
                                 T::kMembersRemoved, T::kMemberLeft));
  EXPECT_EQ(history[3].group_event.role, GroupRole::kAdmin);
  EXPECT_EQ(history[4].text, "Crew");
  EXPECT_EQ(history[4].from, "bob");
  auto inbox = store_->ReadInbox("carol", 0, 0, 10);
  ASSERT_TRUE(inbox.ok());
  ASSERT_EQ(inbox->size(), 5u);
  EXPECT_EQ((*inbox)[4].message.group_event.type, T::kMembersRemoved);
  EXPECT_THAT((*inbox)[4].message.group_event.users, ElementsAre("carol"));
}

TEST_P(StoreTest, RefusedGroupEventsStoreNothing) {
  using T = GroupEventType;
  ASSERT_TRUE(store_->CreateUser({"dave", "", absl::FromUnixSeconds(1)}).ok());
  ASSERT_TRUE(
      GroupSync("alice", "g1", T::kCreated, {"bob", "carol"}, "k1", "Team")
          .ok());
  ASSERT_TRUE(GroupSync("alice", "g1", T::kRoleChanged, {"bob"}, "k2", "",
                        GroupRole::kAdmin)
                  .ok());
  struct Case {
    absl::StatusOr<AppendResult> result;
    absl::StatusCode code;
  };
  const std::vector<Case> cases = {
      // A plain member may neither add, remove nor rename.
      {GroupSync("carol", "g1", T::kMembersAdded, {"dave"}, "x1"),
       absl::StatusCode::kPermissionDenied},
      {GroupSync("carol", "g1", T::kMembersRemoved, {"bob"}, "x2"),
       absl::StatusCode::kPermissionDenied},
      {GroupSync("carol", "g1", T::kRenamed, {}, "x3", "Mine"),
       absl::StatusCode::kPermissionDenied},
      // An admin removes plain members only, and sets no roles.
      {GroupSync("bob", "g1", T::kMembersRemoved, {"alice"}, "x4"),
       absl::StatusCode::kPermissionDenied},
      {GroupSync("bob", "g1", T::kRoleChanged, {"carol"}, "x5", "",
                 GroupRole::kAdmin),
       absl::StatusCode::kPermissionDenied},
      // Not a member.
      {GroupSync("dave", "g1", T::kMemberLeft, {}, "x6"),
       absl::StatusCode::kPermissionDenied},
      // The owner leaves only after passing the ownership on.
      {GroupSync("alice", "g1", T::kMemberLeft, {}, "x7"),
       absl::StatusCode::kFailedPrecondition},
      // Nothing to change.
      {GroupSync("alice", "g1", T::kMembersAdded, {"bob"}, "x8"),
       absl::StatusCode::kFailedPrecondition},
      {GroupSync("alice", "g1", T::kMembersRemoved, {"dave"}, "x9"),
       absl::StatusCode::kFailedPrecondition},
      {GroupSync("alice", "g1", T::kRoleChanged, {"bob"}, "x10", "",
                 GroupRole::kAdmin),
       absl::StatusCode::kFailedPrecondition},
      // Unknown users and groups, a taken id.
      {GroupSync("alice", "g1", T::kMembersAdded, {"nobody"}, "x11"),
       absl::StatusCode::kNotFound},
      {GroupSync("alice", "nogroup", T::kMembersAdded, {"dave"}, "x12"),
       absl::StatusCode::kNotFound},
      {GroupSync("alice", "g2", T::kCreated, {"nobody"}, "x13", "New"),
       absl::StatusCode::kNotFound},
      {GroupSync("bob", "g1", T::kCreated, {}, "x14", "Again"),
       absl::StatusCode::kAlreadyExists},
      // Over the limit.
      {GroupSync("alice", "g1", T::kMembersAdded, {"dave"}, "x15", "",
                 GroupRole::kMember, /*limit=*/3),
       absl::StatusCode::kResourceExhausted},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(cases[i].result.status().code(), cases[i].code)
        << "case " << i << ": " << cases[i].result.status();
  }
  EXPECT_EQ(*store_->ConversationHead("g:g1"), 2u);
  for (const char* user : {"alice", "bob", "carol"}) {
    EXPECT_EQ(*store_->InboxHead(user), 2u) << user;
  }
  EXPECT_EQ(*store_->InboxHead("dave"), 0u);
  EXPECT_EQ(store_->GetGroup("g2").status().code(),
            absl::StatusCode::kNotFound);
  auto group = store_->GetGroup("g1");
  ASSERT_TRUE(group.ok());
  EXPECT_THAT(group->members, ElementsAre("alice", "bob", "carol"));
  EXPECT_EQ(group->display_name, "Team");
  // Refused keys stay free.
  EXPECT_TRUE(GroupSync("alice", "g1", T::kMembersAdded, {"dave"}, "x1").ok());
}

TEST_P(StoreTest, OwnershipPassesOnAndThenTheOldOwnerMayLeave) {
  using T = GroupEventType;
  ASSERT_TRUE(GroupSync("alice", "g1", T::kCreated, {"bob"}, "k1", "T").ok());
  auto passed = GroupSync("alice", "g1", T::kRoleChanged, {"bob"}, "k2", "",
                          GroupRole::kOwner);
  ASSERT_TRUE(passed.ok()) << passed.status();
  auto group = store_->GetGroup("g1");
  ASSERT_TRUE(group.ok());
  EXPECT_EQ(group->roles,
            (std::map<std::string, GroupRole>{{"alice", GroupRole::kAdmin},
                                              {"bob", GroupRole::kOwner}}));
  ASSERT_TRUE(GroupSync("alice", "g1", T::kMemberLeft, {}, "k3").ok());
  // The last member, the owner, may leave too.
  ASSERT_TRUE(GroupSync("bob", "g1", T::kMemberLeft, {}, "k4").ok());
  EXPECT_THAT(store_->GetGroup("g1")->members, IsEmpty());
}

TEST_P(StoreTest, GroupSizeLimitHoldsForGroupEventsAtomically) {
  using T = GroupEventType;
  EXPECT_EQ(GroupSync("alice", "g1", T::kCreated, {"bob", "carol"}, "k1", "T",
                      GroupRole::kMember, /*limit=*/2)
                .status()
                .code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(store_->GetGroup("g1").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(*store_->InboxHead("bob"), 0u);
  ASSERT_TRUE(GroupSync("alice", "g1", T::kCreated, {"bob"}, "k2", "T",
                        GroupRole::kMember, 2)
                  .ok());
  EXPECT_EQ(GroupSync("alice", "g1", T::kMembersAdded, {"carol"}, "k3", "",
                      GroupRole::kMember, 2)
                .status()
                .code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(store_->GetGroup("g1")->members, ElementsAre("alice", "bob"));
  EXPECT_EQ(*store_->ConversationHead("g:g1"), 1u);
  EXPECT_EQ(*store_->InboxHead("carol"), 0u);
}

TEST_P(StoreTest, RepeatedCreateAnswersTheFirstGroup) {
  using T = GroupEventType;
  auto first = GroupSync("alice", "g1", T::kCreated, {"bob"}, "k1", "T");
  ASSERT_TRUE(first.ok()) << first.status();
  // The retry names a new id, as a client's retry would get one.
  auto again = GroupSync("alice", "g2", T::kCreated, {"bob"}, "k1", "T");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->duplicate);
  EXPECT_EQ(again->message.conversation, "g:g1");
  EXPECT_EQ(again->message.message_id, first->message.message_id);
  EXPECT_EQ(again->sender_inbox_seq, 1u);
  EXPECT_EQ(store_->GetGroup("g2").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_P(StoreTest, OperatorGroupEventsNeedNoMembershipAndMakeNoOwner) {
  using T = GroupEventType;
  auto created = GroupSync("", "ops", T::kCreated, {"bob", "alice"}, "o1", "");
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->message.from, "");
  EXPECT_THAT(Inboxes(*created), ElementsAre("alice:1", "bob:1"));
  EXPECT_EQ(created->sender_inbox_seq, 0u);
  EXPECT_THAT(store_->GetGroup("ops")->roles, IsEmpty());
  ASSERT_TRUE(GroupSync("", "ops", T::kMembersAdded, {"carol"}, "o2").ok());
  auto removed = GroupSync("", "ops", T::kMembersRemoved, {"alice"}, "o3");
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_THAT(Inboxes(*removed), ElementsAre("alice:3", "bob:3", "carol:2"));
  EXPECT_THAT(store_->GetGroup("ops")->members, ElementsAre("bob", "carol"));
}

// An edit or delete in a direct conversation is a message to the peer: a
// block refuses it as it refuses a send. An operator's delete is no user's.
TEST_P(StoreTest, BlocksRefuseUsersEditsAndDeletesButNotAnOperators) {
  ASSERT_TRUE(AppendSync("alice", "bob", false, "c1", "before").ok());
  ASSERT_TRUE(*store_->SetBlocked("bob", "alice", true, 10));
  auto edit = ChangeSync("alice", "d:alice:bob", 1, "e1", "after");
  EXPECT_TRUE(IsBlockedError(edit.status())) << edit.status();
  auto del = ChangeSync("alice", "d:alice:bob", 1, "x1");
  EXPECT_TRUE(IsBlockedError(del.status())) << del.status();
  EXPECT_EQ(*store_->ConversationHead("d:alice:bob"), 1u);
  auto moderation = ChangeSync("", "d:alice:bob", 1, "moderation:1");
  ASSERT_TRUE(moderation.ok()) << moderation.status();
  EXPECT_TRUE(History("d:alice:bob")[0].deleted);
}

TEST_P(StoreTest, StatsCountUsersAndMessages) {
  ASSERT_TRUE(AppendSync("alice", "bob", false, "c1").ok());
  auto stats = store_->Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->users, 3u);
  EXPECT_EQ(stats->messages, 1u);
}

INSTANTIATE_TEST_SUITE_P(
    Stores, StoreTest,
    ::testing::Values(
        StoreFactory{"Fake", [] { return std::make_unique<FakeStore>(); }},
        StoreFactory{"Sqlite",
                     []() -> std::unique_ptr<Store> {
                       SqliteStoreOptions options;
                       options.path = MakeTempDir() + "/parley.db";
                       auto store = SqliteStore::Open(options);
                       EXPECT_TRUE(store.ok()) << store.status();
                       return std::move(store).value();
                     }},
        StoreFactory{"Postgres", MakePgStore}),
    [](const ::testing::TestParamInfo<StoreFactory>& info) {
      return info.param.name;
    });

}  // namespace
}  // namespace parley::service
