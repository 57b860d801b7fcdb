// RecordingLinkStream: a LinkStream for tests that keeps every event sent to
// it and lets a test wait for one, and pick out what one session received.
//
// Threading: thread-safe; Wait*() blocks the calling test thread.
#ifndef PARLEY_SERVICE_RECORDING_LINK_STREAM_H_
#define PARLEY_SERVICE_RECORDING_LINK_STREAM_H_

#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "parley/v1/gateway_link.pb.h"
#include "service/link_stream.h"

namespace parley::service {

// The frame the `i`th session of `delivery` gets, as the gateway sends it:
// with that session's inbox_seq when the Delivery lists them.
inline v1::ServerFrame FrameForSession(const v1::Delivery& delivery, int i) {
  v1::ServerFrame frame = delivery.frame();
  if (i < delivery.inbox_seqs_size()) {
    frame.mutable_message()->set_inbox_seq(delivery.inbox_seqs(i));
  }
  return frame;
}

class RecordingLinkStream final : public LinkStream {
 public:
  void Send(v1::ServiceEvent event) override {
    absl::MutexLock lock(&mu_);
    events_.push_back(std::move(event));
  }

  std::vector<v1::ServiceEvent> events() const {
    absl::MutexLock lock(&mu_);
    return events_;
  }

  void Clear() {
    absl::MutexLock lock(&mu_);
    events_.clear();
  }

  // The frames delivered to `session_id`, in order (Accepted and Rejected
  // are not frames; see events()).
  std::vector<v1::ServerFrame> FramesFor(const std::string& session_id) const {
    absl::MutexLock lock(&mu_);
    std::vector<v1::ServerFrame> out;
    for (const v1::ServiceEvent& e : events_) {
      if (!e.has_delivery()) continue;
      for (int i = 0; i < e.delivery().session_ids_size(); ++i) {
        if (e.delivery().session_ids(i) == session_id) {
          out.push_back(FrameForSession(e.delivery(), i));
        }
      }
    }
    return out;
  }

  // Waits until `done(events)` holds; false on timeout.
  bool WaitFor(
      const std::function<bool(const std::vector<v1::ServiceEvent>&)>& done,
      absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto ready = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return done(events_);
    };
    return mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  }

  // Waits until `session_id` received at least `n` frames.
  bool WaitForFrames(const std::string& session_id, size_t n,
                     absl::Duration timeout = absl::Seconds(10)) {
    return WaitFor(
        [&](const std::vector<v1::ServiceEvent>& events) {
          size_t count = 0;
          for (const v1::ServiceEvent& e : events) {
            if (!e.has_delivery()) continue;
            for (const std::string& id : e.delivery().session_ids()) {
              if (id == session_id) ++count;
            }
          }
          return count >= n;
        },
        timeout);
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<v1::ServiceEvent> events_ ABSL_GUARDED_BY(mu_);
};

}  // namespace parley::service

#endif  // PARLEY_SERVICE_RECORDING_LINK_STREAM_H_
