// UpstreamLink: the gRPC adapter between the gateway's sessions and
// parley-service's GatewayLink.Connect.
//
// It keeps `streams` long-lived bidirectional streams (callback API, no
// thread per stream) on one channel, and multiplexes every client session
// over them: a session always uses stream hash(session_id) % streams.
//
//   * Batching: events queue per stream while a write is in flight and go out
//     together as one GatewayBatch (capped in events and bytes), so under load
//     there is not one gRPC write per client frame.
//   * First event on every stream: LinkHello{gateway_id, stream_index}. The
//     stream counts as up once that write completes and the service either
//     sent initial metadata or left the stream open for `ready_grace` (a
//     refusing service ends it at once); each time it comes up
//     it gets a new generation (see gateway/upstream.h) and every session
//     attached to it is told OnLinkUp(generation), so it re-announces itself
//     and re-sends what was not acknowledged.
//   * When a stream ends (service restart, deploy, network), its sessions are
//     told OnLinkDown(generation), queued events are dropped (sessions keep
//     what matters), and the link reconnects after a jittered exponential
//     backoff. Client WebSockets stay open throughout.
//   * Inbound ServiceBatch events are routed to sessions by id
//     (DispatchServiceBatch, gateway/service_batch_dispatch.h) and posted to
//     each session's executor through its SessionHandle: gRPC threads never
//     touch a Session or a websocketpp object.
//
// Threading: thread-safe. Upstream methods, Attach() and Detach() may be
// called from any thread and never block on the network. Shutdown() blocks
// (up to its timeout) and must not be called from a gRPC callback or a
// session's executor.
#ifndef PARLEY_GATEWAY_UPSTREAM_LINK_H_
#define PARLEY_GATEWAY_UPSTREAM_LINK_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "gateway/service_batch_dispatch.h"
#include "gateway/session.h"
#include "gateway/upstream.h"
#include "grpcpp/channel.h"
#include "parley/v1/gateway_link.grpc.pb.h"

namespace parley::gateway {

struct UpstreamLinkOptions {
  // Where parley-service's GatewayLink listens ("host:port").
  std::string service_address = "127.0.0.1:7400";
  // This gateway's id in LinkHello (unique among gateways).
  std::string gateway_id;
  // Number of Connect streams (>= 1).
  int streams = 1;
  // Reconnect backoff: first delay, growth factor, cap, and +/- jitter
  // fraction applied to each delay.
  std::chrono::milliseconds backoff_initial{100};
  double backoff_multiplier = 2.0;
  std::chrono::milliseconds backoff_max{5000};
  double backoff_jitter = 0.2;
  // gRPC keepalive: ping the service this often with no traffic, and drop
  // the connection if the ack takes longer than the timeout. Agreed with
  // parley-service, which permits pings every 10 s.
  std::chrono::milliseconds keepalive_time{20000};
  std::chrono::milliseconds keepalive_timeout{10000};
  // A new stream counts as up when the service sends initial metadata, or
  // when it is still open this long after the LinkHello was written.
  std::chrono::milliseconds ready_grace{250};
  // Caps on one GatewayBatch.
  size_t max_batch_events = 1024;
  size_t max_batch_bytes = 1 << 20;

  // Checks the values; INVALID_ARGUMENT naming the field otherwise.
  absl::Status Validate() const;
};

class UpstreamLink final : public Upstream, private SessionDirectory {
 public:
  // A channel to options.service_address with the keepalive and reconnect
  // settings above.
  static std::shared_ptr<grpc::Channel> MakeChannel(
      const UpstreamLinkOptions& options);

  // `stub` is usually GatewayLink::NewStub(MakeChannel(options)). Metrics
  // go to `registry`. Nothing happens until Start().
  UpstreamLink(UpstreamLinkOptions options,
               std::unique_ptr<parley::v1::GatewayLink::StubInterface> stub,
               Registry& registry);
  ~UpstreamLink() override;
  UpstreamLink(const UpstreamLink&) = delete;
  UpstreamLink& operator=(const UpstreamLink&) = delete;

  // Opens the streams and starts the reconnect thread. A non-empty
  // `gateway_id` replaces options.gateway_id (main() learns it only after
  // the listener is bound).
  void Start(std::string gateway_id = "");

  // Routes service events for `session_id` to `handle` from now on.
  void Attach(const std::string& session_id,
              std::shared_ptr<SessionHandle> handle);
  void Detach(const std::string& session_id);

  // Whether every stream is up (for /readyz).
  bool AllStreamsUp() const;

  // Stops accepting events, writes what is queued, half-closes the streams
  // and waits for them to end; cancels whatever is left at `timeout`. Stops
  // reconnecting. Idempotent.
  void Shutdown(absl::Duration timeout);

  // Upstream.
  std::optional<uint64_t> Open(const parley::v1::SessionOpen& open) override;
  bool Frame(uint64_t generation, parley::v1::SessionFrame frame) override;
  void Close(parley::v1::SessionClose close) override;

 private:
  class StreamReactor;
  struct Slot {
    // An event waiting for the next write, with its encoded size.
    struct Queued {
      parley::v1::GatewayEvent event;
      size_t bytes;
    };
    int index = 0;
    absl::Mutex mu;
    // The stream attempt in progress (null between attempts).
    StreamReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
    std::shared_ptr<grpc::ClientContext> context ABSL_GUARDED_BY(mu);
    bool up ABSL_GUARDED_BY(mu) = false;
    bool draining ABSL_GUARDED_BY(mu) = false;
    uint64_t generation ABSL_GUARDED_BY(mu) = 0;
    bool write_in_flight ABSL_GUARDED_BY(mu) = false;
    std::deque<Queued> pending ABSL_GUARDED_BY(mu);
    int failures ABSL_GUARDED_BY(mu) = 0;
    // Counts Connect() calls; names the current attempt.
    uint64_t attempt ABSL_GUARDED_BY(mu) = 0;
  };
  struct Attached {
    std::shared_ptr<SessionHandle> handle;
    int slot = 0;
  };

  int SlotFor(const std::string& session_id) const;
  // Queues `event` on `slot` if it is up (and at `generation` when given);
  // returns the generation or nullopt.
  std::optional<uint64_t> Enqueue(Slot& slot, parley::v1::GatewayEvent event,
                                  std::optional<uint64_t> generation);
  void Connect(Slot& slot);
  void ReconnectLoop();
  void ScheduleReconnect(int slot, absl::Duration delay);
  void ScheduleConfirm(int slot, uint64_t attempt);
  void ConfirmStream(int slot, uint64_t attempt);
  void ReportUp(int slot, uint64_t generation);
  absl::Duration NextBackoff(int failures);
  // Routes one batch that arrived on stream `slot` (DispatchServiceBatch);
  // frames are moved out.
  void Dispatch(parley::v1::ServiceBatch* batch, int slot);
  void PostLinkState(int slot, uint64_t generation, bool up);
  static bool NoLiveReactors(UpstreamLink* link)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(link->mu_);

  // SessionDirectory: the attached sessions.
  std::shared_ptr<SessionHandle> HandleFor(
      const std::string& session_id) const override;
  std::vector<std::shared_ptr<SessionHandle>> HandlesFor(
      const google::protobuf::RepeatedPtrField<std::string>& ids)
      const override;
  std::vector<std::shared_ptr<SessionHandle>> HandlesOnStream(
      int stream) const override;

  const UpstreamLinkOptions options_;
  // Set once by Start(), before any stream exists.
  std::string gateway_id_;
  const std::unique_ptr<parley::v1::GatewayLink::StubInterface> stub_;
  std::vector<std::unique_ptr<Slot>> slots_;

  mutable absl::Mutex sessions_mu_;
  std::unordered_map<std::string, Attached> sessions_
      ABSL_GUARDED_BY(sessions_mu_);

  absl::Mutex mu_;
  absl::CondVar reconnect_cv_;
  // When each slot should next try to connect (InfiniteFuture: connected
  // or connecting).
  std::vector<absl::Time> next_attempt_ ABSL_GUARDED_BY(mu_);
  // When to confirm a quiet new stream as up, and which attempt.
  std::vector<absl::Time> confirm_at_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> confirm_attempt_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  // Stream attempts not yet done (OnDone not yet run).
  int live_reactors_ ABSL_GUARDED_BY(mu_) = 0;
  absl::BitGen bitgen_ ABSL_GUARDED_BY(mu_);
  std::thread reconnect_thread_;

  Counter& reconnects_;
  Gauge& streams_up_;
  Gauge& queued_events_;
  Histogram& batch_events_;
  Counter& events_out_;
  Counter& events_in_;
};

}  // namespace parley::gateway

#endif  // PARLEY_GATEWAY_UPSTREAM_LINK_H_
