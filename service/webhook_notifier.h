// WebhookNotifier: the offline-notification webhook. For each recipient of a
// stored message who had no live session, parley-service POSTs a signed
// OfflineNotice (proto/parley/v1/webhook.proto) to the operator's URL, which
// is where push services (APNs, FCM) are connected.
//
// It never blocks or delays delivery: Notify() only queues (O(1) under a
// mutex) and returns; worker threads post. A notice that fails retryably (a
// refused connection, a timeout, 429, 5xx) is posted again after an
// exponential backoff with jitter, up to `max_attempts`; one the receiver
// refuses otherwise (another 4xx) is not. The queue, retries included, holds
// at most `max_queued` notices: beyond it a notice is dropped and counted.
// Metrics: parley_service_webhook_notices_total{result="sent"|"failed"|
// "dropped"}, parley_service_webhook_retries_total,
// parley_service_webhook_queued, parley_service_webhook_post_seconds.
//
//   WebhookOptions options;
//   options.url = "https://push.example/parley";
//   options.secret = "...";
//   WebhookNotifier notifier(options, std::make_unique<CurlPoster>(),
//                            registry);
//   notifier.Notify(NoticeFor(stored_message, "bob", inbox_seq));
//
// Threading: thread-safe. Notify() never blocks on I/O. The destructor stops
// the workers after the posts in flight (each bounded by `timeout`); what is
// still queued is dropped and logged.
#ifndef PARLEY_SERVICE_WEBHOOK_NOTIFIER_H_
#define PARLEY_SERVICE_WEBHOOK_NOTIFIER_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "parley/v1/webhook.pb.h"
#include "service/store.h"

namespace parley::service {

struct WebhookOptions {
  // Where notices are POSTed (http:// or https://); empty = no webhook.
  std::string url;
  // The HMAC-SHA256 key of X-Parley-Signature (required with a url).
  std::string secret;
  // Whether notices carry the first `preview_bytes` of the text.
  bool preview = true;
  size_t preview_bytes = 100;
  // Most notices waiting (retries included); beyond it new ones are dropped.
  size_t max_queued = 10000;
  // Posts per notice before it is given up (>= 1).
  int max_attempts = 6;
  // Backoff before the second post; doubles each time, up to the cap; +/- 20%
  // jitter.
  absl::Duration backoff_initial = absl::Seconds(1);
  absl::Duration backoff_max = absl::Minutes(1);
  // One post, connection included.
  absl::Duration timeout = absl::Seconds(5);
  // Posts in flight at once.
  int workers = 2;

  // INVALID_ARGUMENT naming the field.
  absl::Status Validate() const;
};

// How one POST went.
struct PostResult {
  // The HTTP status; 0 when there was no response (refused, timeout, DNS).
  int http_status = 0;
  // Why there was no response, for the log.
  std::string error;
};

// Sends one HTTP POST. The production adapter is CurlPoster
// (service/curl_poster.h). Thread-safe: workers call it concurrently.
class HttpPoster {
 public:
  virtual ~HttpPoster() = default;
  virtual PostResult Post(const std::string& url,
                          const std::vector<std::string>& headers,
                          const std::string& body, absl::Duration timeout) = 0;
};

// The notice for `recipient` of a stored message at `inbox_seq` of their
// inbox, with the text cut to `preview_bytes` at a character boundary (no
// preview when !preview).
v1::OfflineNotice NoticeFor(const StoredMessage& message,
                            const std::string& recipient, uint64_t inbox_seq,
                            bool preview, size_t preview_bytes);

// X-Parley-Signature's value: "v1=" + hex HMAC-SHA256(secret,
// "<timestamp>.<body>").
std::string SignWebhook(const std::string& secret, int64_t timestamp,
                        const std::string& body);

class WebhookNotifier final {
 public:
  // `options` must be valid. Starts the workers.
  WebhookNotifier(WebhookOptions options, std::unique_ptr<HttpPoster> poster,
                  Registry& registry);
  ~WebhookNotifier();

  WebhookNotifier(const WebhookNotifier&) = delete;
  WebhookNotifier& operator=(const WebhookNotifier&) = delete;

  // Queues a notice; false (counted as dropped) when the queue is full.
  bool Notify(v1::OfflineNotice notice);

  // Blocks until nothing is queued or in flight (tests, shutdown).
  void WaitIdle();

 private:
  struct Pending {
    v1::OfflineNotice notice;
    int attempts = 0;
  };

  void WorkerLoop();
  // Posts once; returns whether to retry.
  bool PostOnce(const Pending& pending);
  absl::Duration Backoff(int attempts);

  const WebhookOptions options_;
  const std::unique_ptr<HttpPoster> poster_;

  Counter& sent_;
  Counter& failed_;
  Counter& dropped_;
  Counter& retries_;
  Gauge& queued_gauge_;
  Histogram& post_seconds_;

  absl::Mutex mu_;
  absl::CondVar changed_;  // Queued, done, or stopping.
  // Notices by when they are due (now for new ones, later for retries).
  std::multimap<absl::Time, Pending> queue_ ABSL_GUARDED_BY(mu_);
  size_t in_flight_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::BitGen bitgen_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> workers_;
};

}  // namespace parley::service

#endif  // PARLEY_SERVICE_WEBHOOK_NOTIFIER_H_
