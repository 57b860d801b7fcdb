// GatewayLinkService: the gRPC adapter for parley.v1.GatewayLink.Connect,
// on the callback API (a reactor per stream, never a thread per stream).
//
// Per stream:
//   * Start: initial metadata is sent at once (the gateway's "link up").
//   * Reads: one GatewayBatch at a time. The batch is handed to the stream's
//     SerialExecutor (a strand on the shared worker pool), which runs its
//     events through Messaging in order; the next read starts only when the
//     batch is done, so a fast gateway cannot queue unbounded work. The first
//     event must be LinkHello (else INVALID_ARGUMENT).
//   * Writes: one write in flight. Events that pile up meanwhile go out
//     together as the next ServiceBatch (at most `max_batch_events` and
//     `max_batch_bytes`). A
//     gateway that stops reading while more than `max_queued_events` wait is
//     cut off with UNAVAILABLE; it reconnects and resumes (resume_after).
//   * End: when the gateway half-closes or the stream breaks, the stream's
//     sessions are forgotten (not a presence change) and the call finishes.
//     CloseStreams() ends every stream with UNAVAILABLE ("reconnect") once its
//     queued events are written, and refuses new streams the same way.
//
// Threading: reactor callbacks never block: they post to the strand or queue
// writes under a short mutex. Send() (LinkStream) may be called from any
// thread.
#ifndef PARLEY_SERVICE_GATEWAY_LINK_SERVICE_H_
#define PARLEY_SERVICE_GATEWAY_LINK_SERVICE_H_

#include <cstddef>
#include <set>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "parley/v1/gateway_link.grpc.pb.h"
#include "service/executor.h"
#include "service/messaging.h"

namespace parley::service {

// Options for GatewayLinkService.
struct GatewayLinkOptions {
  // Events queued for one stream beyond which the stream is ended with
  // UNAVAILABLE (the gateway is not reading).
  size_t max_queued_events = 100000;
  // Most events in one ServiceBatch write.
  size_t max_batch_events = 1024;
  // Most bytes in one ServiceBatch (a larger single event goes alone): keeps
  // batches well under gRPC's default 4 MiB receive limit on the gateway.
  size_t max_batch_bytes = 1 << 20;
};

class GatewayLinkService final : public v1::GatewayLink::CallbackService {
 public:
  // `messaging` and `pool` must outlive the service and every stream.
  GatewayLinkService(Messaging* messaging, ThreadPool* pool,
                     GatewayLinkOptions options);
  ~GatewayLinkService() override;

  grpc::ServerBidiReactor<v1::GatewayBatch, v1::ServiceBatch>* Connect(
      grpc::CallbackServerContext* context) override;

  // Refuses new streams from now on (UNAVAILABLE).
  void RefuseNewStreams();
  // Ends every stream with UNAVAILABLE after its queued events are written.
  void CloseStreams();
  // Waits until every stream has finished; false on timeout.
  bool WaitForStreamsDone(absl::Duration timeout);

 private:
  class Reactor;

  void Unregister(Reactor* reactor);

  Messaging* const messaging_;
  ThreadPool* const pool_;
  const GatewayLinkOptions options_;

  absl::Mutex mu_;
  std::set<Reactor*> reactors_ ABSL_GUARDED_BY(mu_);
  bool draining_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace parley::service

#endif  // PARLEY_SERVICE_GATEWAY_LINK_SERVICE_H_
