#include "tools/loadgen/pair_table.h"

#include <functional>
#include <vector>

#include "gtest/gtest.h"

namespace parley::loadgen {
namespace {

using Table = PairTable<int, std::less<int>>;

TEST(PairTableTest, TwoMembersOfAKeyArePeers) {
  Table t;
  EXPECT_TRUE(t.Join("k", 1));
  EXPECT_FALSE(t.Peer(1).has_value());
  EXPECT_TRUE(t.Join("k", 2));
  EXPECT_EQ(t.Peer(1), 2);
  EXPECT_EQ(t.Peer(2), 1);
}

TEST(PairTableTest, ThirdMemberIsRefused) {
  Table t;
  t.Join("k", 1);
  t.Join("k", 2);
  EXPECT_FALSE(t.Join("k", 3));
  EXPECT_FALSE(t.Peer(3).has_value());
}

TEST(PairTableTest, LeavingFreesTheSlotForANewPeer) {
  Table t;
  t.Join("k", 1);
  t.Join("k", 2);
  t.Leave(1);
  EXPECT_FALSE(t.Peer(2).has_value());
  EXPECT_TRUE(t.Join("k", 3));
  EXPECT_EQ(t.Peer(2), 3);
  t.Leave(2);
  t.Leave(3);
  EXPECT_EQ(t.size(), 0u);
}

TEST(PairTableTest, MembersListsWhoHoldsAKey) {
  Table t;
  EXPECT_TRUE(t.Members("k").empty());
  t.Join("k", 1);
  t.Join("k", 2);
  EXPECT_EQ(t.Members("k"), (std::vector<int>{1, 2}));
  t.Leave(1);
  EXPECT_EQ(t.Members("k"), (std::vector<int>{2}));
}

TEST(PairTableTest, KeysAreIndependent) {
  Table t;
  t.Join("a", 1);
  t.Join("b", 2);
  EXPECT_FALSE(t.Peer(1).has_value());
  t.Leave(7);  // Unknown handles are ignored.
  EXPECT_EQ(t.size(), 2u);
}

}  // namespace
}  // namespace parley::loadgen
