#include "service/fake_bus.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::service {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(SubjectMatchesTest, StarIsOneTokenAndGreaterThanTheRest) {
  EXPECT_TRUE(SubjectMatches("a.b", "a.b"));
  EXPECT_FALSE(SubjectMatches("a.b", "a.b.c"));
  EXPECT_TRUE(SubjectMatches("a.*.c", "a.x.c"));
  EXPECT_FALSE(SubjectMatches("a.*", "a.x.c"));
  EXPECT_TRUE(SubjectMatches("a.>", "a.x.c"));
  EXPECT_FALSE(SubjectMatches("a.>", "a"));
}

class FakeBusTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(b_.Subscribe("t.>", [this](const Bus::Message& m) {
                    got_.push_back(m.data);
                  }).ok());
  }
  FakeBusNetwork network_;
  FakeBus a_{&network_};
  FakeBus b_{&network_};
  std::vector<std::string> got_;
};

TEST_F(FakeBusTest, HeldPublishesArriveReversedOnRelease) {
  network_.Hold();
  a_.Publish("t.1", "1");
  a_.Publish("t.2", "2");
  EXPECT_THAT(got_, IsEmpty());
  network_.Release(/*reverse=*/true);
  EXPECT_THAT(got_, ElementsAre("2", "1"));
}

TEST_F(FakeBusTest, LostPublishesAndThoseOfADisconnectedBusNeverArrive) {
  std::vector<Bus::Event> events;
  a_.SetEventHandler([&](Bus::Event e) { events.push_back(e); });
  network_.SetLosing(true);
  a_.Publish("t.1", "lost");
  network_.SetLosing(false);
  network_.Disconnect(&a_);
  a_.Publish("t.2", "cut off");
  network_.Reconnect(&a_);
  a_.Publish("t.3", "3");
  EXPECT_THAT(got_, ElementsAre("3"));
  EXPECT_THAT(events,
              ElementsAre(Bus::Event::kDisconnected, Bus::Event::kReconnected));
}

TEST_F(FakeBusTest, ARequestGathersReplies) {
  ASSERT_TRUE(b_.Subscribe("q", [this](const Bus::Message& m) {
                  b_.Reply(m.reply, "pong");
                }).ok());
  network_.Hold();  // Requests are never held.
  std::vector<std::string> answers = a_.Request(
      "q", "ping", absl::Seconds(1),
      [](const std::vector<std::string>& got) { return got.size() == 1; });
  EXPECT_THAT(answers, ElementsAre("pong"));
}

}  // namespace
}  // namespace parley::service
