#include "service/webhook_notifier.h"

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace parley::service {
namespace {

using ::testing::HasSubstr;

// A poster that answers from a script (then 200) and records every post.
class ScriptedPoster final : public HttpPoster {
 public:
  struct Request {
    std::string url;
    std::vector<std::string> headers;
    std::string body;
  };

  explicit ScriptedPoster(std::deque<PostResult> script,
                          absl::Notification* gate = nullptr)
      : script_(std::move(script)), gate_(gate) {}

  PostResult Post(const std::string& url,
                  const std::vector<std::string>& headers,
                  const std::string& body, absl::Duration) override {
    if (gate_ != nullptr) gate_->WaitForNotification();
    absl::MutexLock lock(&mu_);
    posts_.push_back({url, headers, body});
    if (script_.empty()) return {200, ""};
    PostResult r = script_.front();
    script_.pop_front();
    return r;
  }

  std::vector<Request> posts() {
    absl::MutexLock lock(&mu_);
    return posts_;
  }

 private:
  absl::Mutex mu_;
  std::deque<PostResult> script_ ABSL_GUARDED_BY(mu_);
  std::vector<Request> posts_ ABSL_GUARDED_BY(mu_);
  absl::Notification* gate_;
};

WebhookOptions Options() {
  WebhookOptions o;
  o.url = "http://127.0.0.1:1/hook";
  o.secret = "hook-secret";
  o.backoff_initial = absl::Milliseconds(1);
  o.backoff_max = absl::Milliseconds(5);
  o.workers = 1;
  return o;
}

StoredMessage Message(const std::string& text = "hello bob") {
  StoredMessage m;
  m.message_id = "42";
  m.conversation = "d:alice:bob";
  m.seq = 3;
  m.from = "alice";
  m.to = "bob";
  m.text = text;
  m.sent_at = absl::FromUnixSeconds(1800000000);
  return m;
}

std::string Header(const ScriptedPoster::Request& post,
                   absl::string_view name) {
  for (const std::string& h : post.headers) {
    if (absl::StartsWith(h, absl::StrCat(name, ": "))) {
      return h.substr(name.size() + 2);
    }
  }
  return "";
}

int64_t Count(Registry& r, absl::string_view result) {
  return static_cast<int64_t>(
      r.GetCounter("parley_service_webhook_notices_total", "",
                   {{"result", std::string(result)}})
          .Value());
}

TEST(WebhookNotifierTest, PostsASignedNoticeTheReceiverCanCheck) {
  Registry registry;
  auto poster = std::make_unique<ScriptedPoster>(std::deque<PostResult>{});
  ScriptedPoster* posts = poster.get();
  WebhookNotifier notifier(Options(), std::move(poster), registry);
  ASSERT_TRUE(notifier.Notify(NoticeFor(Message(), "bob", 7, true, 100)));
  notifier.WaitIdle();

  ASSERT_EQ(posts->posts().size(), 1u);
  const auto post = posts->posts()[0];
  EXPECT_EQ(post.url, "http://127.0.0.1:1/hook");
  EXPECT_EQ(Header(post, "Content-Type"), "application/json");
  const std::string timestamp = Header(post, "X-Parley-Timestamp");
  int64_t ts = 0;
  ASSERT_TRUE(absl::SimpleAtoi(timestamp, &ts));
  EXPECT_LE(std::abs(ts - absl::ToUnixSeconds(absl::Now())), 60);
  EXPECT_EQ(Header(post, "X-Parley-Signature"),
            SignWebhook("hook-secret", ts, post.body));

  v1::OfflineNotice notice;
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage(post.body, &notice).ok());
  EXPECT_EQ(notice.notice_id(), "42:bob");
  EXPECT_EQ(notice.recipient(), "bob");
  EXPECT_EQ(notice.sender(), "alice");
  EXPECT_EQ(notice.conversation(), "d:alice:bob");
  EXPECT_EQ(notice.inbox_seq(), 7u);
  EXPECT_EQ(notice.preview(), "hello bob");
  EXPECT_FALSE(notice.truncated());
  EXPECT_EQ(notice.sent_at(), "2027-01-15T08:00:00Z");
  EXPECT_EQ(Count(registry, "sent"), 1);
}

TEST(WebhookNotifierTest, SignatureIsHmacSha256OfTimestampDotBody) {
  // echo -n '1700000000.{"a":1}' | openssl dgst -sha256 -hmac k
  EXPECT_EQ(
      SignWebhook("k", 1700000000, R"({"a":1})"),
      "v1=1b6ad1bc9bf48c52ce01939866d5877c6cc4e87ddad27e16673cb8c4964394a3");
}

TEST(WebhookNotifierTest, PreviewIsCutAtACharacterBoundaryOrLeftOut) {
  // "héllo": h, 2-byte é, then llo. Four bytes would split the é.
  v1::OfflineNotice cut = NoticeFor(Message("h\xc3\xa9llo"), "bob", 1, true, 2);
  EXPECT_EQ(cut.preview(), "h");
  EXPECT_TRUE(cut.truncated());
  EXPECT_EQ(NoticeFor(Message("h\xc3\xa9llo"), "bob", 1, true, 3).preview(),
            "h\xc3\xa9");
  v1::OfflineNotice none = NoticeFor(Message(), "bob", 1, false, 100);
  EXPECT_EQ(none.preview(), "");
  EXPECT_FALSE(none.truncated());
}

TEST(WebhookNotifierTest, RetriesUnavailableAndTimeoutsButNotRefusals) {
  Registry registry;
  auto poster = std::make_unique<ScriptedPoster>(
      std::deque<PostResult>{{503, ""},
                             {0, "Connection refused"},
                             {429, ""},
                             {200, ""},    // notice 1
                             {400, ""}});  // notice 2
  ScriptedPoster* posts = poster.get();
  WebhookNotifier notifier(Options(), std::move(poster), registry);
  notifier.Notify(NoticeFor(Message(), "bob", 1, true, 100));
  notifier.WaitIdle();
  notifier.Notify(NoticeFor(Message(), "carol", 1, true, 100));
  notifier.WaitIdle();
  EXPECT_EQ(posts->posts().size(), 5u);
  EXPECT_EQ(Count(registry, "sent"), 1);
  EXPECT_EQ(Count(registry, "failed"), 1);
  EXPECT_EQ(
      registry.GetCounter("parley_service_webhook_retries_total", "").Value(),
      3u);
  // A retry is the same notice: the receiver deduplicates by notice_id.
  EXPECT_EQ(posts->posts()[0].body, posts->posts()[3].body);
}

TEST(WebhookNotifierTest, GivesUpAfterMaxAttempts) {
  Registry registry;
  WebhookOptions o = Options();
  o.max_attempts = 3;
  auto poster = std::make_unique<ScriptedPoster>(
      std::deque<PostResult>{{500, ""}, {500, ""}, {500, ""}, {500, ""}});
  ScriptedPoster* posts = poster.get();
  WebhookNotifier notifier(o, std::move(poster), registry);
  notifier.Notify(NoticeFor(Message(), "bob", 1, true, 100));
  notifier.WaitIdle();
  EXPECT_EQ(posts->posts().size(), 3u);
  EXPECT_EQ(Count(registry, "failed"), 1);
  EXPECT_EQ(Count(registry, "sent"), 0);
}

TEST(WebhookNotifierTest, ASlowReceiverNeverBlocksNotifyAndAFullQueueDrops) {
  Registry registry;
  WebhookOptions o = Options();
  o.max_queued = 3;
  absl::Notification gate;
  auto poster =
      std::make_unique<ScriptedPoster>(std::deque<PostResult>{}, &gate);
  WebhookNotifier notifier(o, std::move(poster), registry);
  // The receiver holds every post; Notify still returns at once.
  int accepted = 0;
  for (int i = 0; i < 10; ++i) {
    accepted += notifier.Notify(
        NoticeFor(Message(), absl::StrCat("u", i), 1, true, 100));
  }
  EXPECT_EQ(accepted, 3);
  EXPECT_EQ(Count(registry, "dropped"), 7);
  gate.Notify();
  notifier.WaitIdle();
  EXPECT_EQ(Count(registry, "sent"), 3);
  EXPECT_EQ(registry.GetGauge("parley_service_webhook_queued", "").Value(), 0);
}

TEST(WebhookNotifierTest, OptionsNameWhatIsWrong) {
  WebhookOptions o = Options();
  EXPECT_TRUE(o.Validate().ok());
  o.url = "ftp://x";
  EXPECT_THAT(std::string(o.Validate().message()), HasSubstr("http://"));
  o = Options();
  o.secret = "";
  EXPECT_THAT(std::string(o.Validate().message()),
              HasSubstr("--webhook_secret is required"));
  o = Options();
  o.url = "";
  o.secret = "";
  EXPECT_TRUE(o.Validate().ok());  // No webhook.
}

}  // namespace
}  // namespace parley::service
