#include "service/webhook_notifier.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "google/protobuf/util/json_util.h"

namespace parley::service {
namespace {

// The longest prefix of `text` of at most `max` bytes that does not end
// inside a UTF-8 character.
absl::string_view Utf8Prefix(absl::string_view text, size_t max) {
  if (text.size() <= max) return text;
  size_t n = max;
  // Back off over continuation bytes (10xxxxxx) to the start of a character.
  while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
  return text.substr(0, n);
}

bool Retryable(const PostResult& r) {
  return r.http_status == 0 || r.http_status == 429 || r.http_status >= 500;
}

}  // namespace

absl::Status WebhookOptions::Validate() const {
  if (url.empty()) return absl::OkStatus();
  if (!absl::StartsWith(url, "http://") && !absl::StartsWith(url, "https://")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--webhook_url must be an http:// or https:// URL, not \"", url, "\""));
  }
  if (secret.empty()) {
    return absl::InvalidArgumentError(
        "--webhook_secret is required with --webhook_url (notices are "
        "signed with it)");
  }
  if (max_queued == 0 || max_attempts < 1 || workers < 1 ||
      timeout <= absl::ZeroDuration() ||
      backoff_initial <= absl::ZeroDuration() ||
      backoff_max < backoff_initial) {
    return absl::InvalidArgumentError(
        "webhook limits must be positive (max_queued, max_attempts, workers, "
        "timeout) and backoff_initial <= backoff_max");
  }
  return absl::OkStatus();
}

v1::OfflineNotice NoticeFor(const StoredMessage& message,
                            const std::string& recipient, uint64_t inbox_seq,
                            bool preview, size_t preview_bytes) {
  v1::OfflineNotice n;
  n.set_notice_id(absl::StrCat(message.message_id, ":", recipient));
  n.set_recipient(recipient);
  n.set_sender(message.from);
  n.set_conversation(message.conversation);
  n.set_message_id(message.message_id);
  n.set_inbox_seq(inbox_seq);
  n.set_sent_at(absl::FormatTime("%Y-%m-%d%ET%H:%M:%E*SZ", message.sent_at,
                                 absl::UTCTimeZone()));
  if (preview) {
    absl::string_view cut = Utf8Prefix(message.text, preview_bytes);
    n.set_preview(std::string(cut));
    n.set_truncated(cut.size() < message.text.size());
  }
  return n;
}

std::string SignWebhook(const std::string& secret, int64_t timestamp,
                        const std::string& body) {
  const std::string input = absl::StrCat(timestamp, ".", body);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac,
       &len);
  return absl::StrCat("v1=", absl::BytesToHexString(absl::string_view(
                                 reinterpret_cast<const char*>(mac), len)));
}

WebhookNotifier::WebhookNotifier(WebhookOptions options,
                                 std::unique_ptr<HttpPoster> poster,
                                 Registry& registry)
    : options_(std::move(options)),
      poster_(std::move(poster)),
      sent_(registry.GetCounter("parley_service_webhook_notices_total",
                                "Offline notices, by outcome: sent (2xx), "
                                "failed (refused or out of attempts), "
                                "dropped (queue full).",
                                {{"result", "sent"}})),
      failed_(registry.GetCounter("parley_service_webhook_notices_total", "",
                                  {{"result", "failed"}})),
      dropped_(registry.GetCounter("parley_service_webhook_notices_total", "",
                                   {{"result", "dropped"}})),
      retries_(registry.GetCounter(
          "parley_service_webhook_retries_total",
          "Offline notices posted again after a retryable failure.")),
      queued_gauge_(registry.GetGauge(
          "parley_service_webhook_queued",
          "Offline notices waiting to be posted (retries included).")),
      post_seconds_(registry.GetHistogram(
          "parley_service_webhook_post_seconds",
          "How long one webhook POST took, connection included.",
          {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10})) {
  for (int i = 0; i < options_.workers; ++i) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
}

WebhookNotifier::~WebhookNotifier() {
  size_t left = 0;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    left = queue_.size();
    changed_.SignalAll();
  }
  for (std::thread& t : workers_) t.join();
  if (left > 0) {
    LogWarn("webhook.dropped_at_shutdown", {{"notices", left}});
  }
}

bool WebhookNotifier::Notify(v1::OfflineNotice notice) {
  absl::MutexLock lock(&mu_);
  if (queue_.size() + in_flight_ >= options_.max_queued) {
    dropped_.Increment();
    return false;
  }
  queue_.emplace(absl::Now(), Pending{std::move(notice), 0});
  queued_gauge_.Set(static_cast<int64_t>(queue_.size()));
  changed_.Signal();
  return true;
}

void WebhookNotifier::WaitIdle() {
  absl::MutexLock lock(&mu_);
  while (!queue_.empty() || in_flight_ > 0) changed_.Wait(&mu_);
}

absl::Duration WebhookNotifier::Backoff(int attempts) {
  absl::Duration d = options_.backoff_initial;
  for (int i = 1; i < attempts && d < options_.backoff_max; ++i) d *= 2;
  d = std::min(d, options_.backoff_max);
  return d * absl::Uniform(bitgen_, 0.8, 1.2);
}

void WebhookNotifier::WorkerLoop() {
  while (true) {
    Pending pending;
    {
      absl::MutexLock lock(&mu_);
      while (true) {
        if (stopping_) return;
        if (!queue_.empty()) {
          const absl::Time due = queue_.begin()->first;
          if (due <= absl::Now()) break;
          changed_.WaitWithDeadline(&mu_, due);
        } else {
          changed_.Wait(&mu_);
        }
      }
      pending = std::move(queue_.begin()->second);
      queue_.erase(queue_.begin());
      ++in_flight_;
      queued_gauge_.Set(static_cast<int64_t>(queue_.size()));
    }
    ++pending.attempts;
    const bool retry = PostOnce(pending);
    absl::MutexLock lock(&mu_);
    --in_flight_;
    if (retry && pending.attempts < options_.max_attempts && !stopping_) {
      retries_.Increment();
      queue_.emplace(absl::Now() + Backoff(pending.attempts),
                     std::move(pending));
      queued_gauge_.Set(static_cast<int64_t>(queue_.size()));
    } else if (retry) {
      failed_.Increment();
      LogWarn("webhook.gave_up", {{"notice", pending.notice.notice_id()},
                                  {"attempts", pending.attempts}});
    }
    changed_.SignalAll();
  }
}

bool WebhookNotifier::PostOnce(const Pending& pending) {
  std::string body;
  google::protobuf::util::JsonPrintOptions print;
  print.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(pending.notice, &body,
                                                    print);
  const int64_t timestamp = absl::ToUnixSeconds(absl::Now());
  const std::vector<std::string> headers = {
      "Content-Type: application/json",
      absl::StrCat("X-Parley-Timestamp: ", timestamp),
      absl::StrCat("X-Parley-Signature: ",
                   SignWebhook(options_.secret, timestamp, body)),
  };
  const absl::Time start = absl::Now();
  const PostResult result =
      poster_->Post(options_.url, headers, body, options_.timeout);
  post_seconds_.Observe(absl::ToDoubleSeconds(absl::Now() - start));
  if (result.http_status >= 200 && result.http_status < 300) {
    sent_.Increment();
    return false;
  }
  const bool retry = Retryable(result);
  LogWarn("webhook.post_failed",
          {{"notice", pending.notice.notice_id()},
           {"attempt", pending.attempts},
           {"status", result.http_status},
           {"error", result.error.empty() ? "-" : result.error},
           {"retry",
            retry && pending.attempts < options_.max_attempts ? "yes" : "no"}});
  if (!retry) failed_.Increment();
  return retry;
}

}  // namespace parley::service
