#include "gateway/upstream_link.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "grpcpp/support/client_callback.h"

namespace parley::gateway {

using parley::v1::GatewayBatch;
using parley::v1::GatewayEvent;
using parley::v1::ServiceBatch;

// A stream that lived this long after coming up ended "normally": the next
// attempt starts at the initial backoff.
constexpr absl::Duration kHealthyStream = absl::Seconds(1);

// One Connect attempt. Lifetime: created by Connect(), deleted in OnDone().
//
// Writes: at most one write (or the half-close) is in flight, tracked by
// Slot::write_in_flight under Slot::mu; whoever sets it calls StartWrite()
// after releasing the lock. A hold (AddHold before StartCall) keeps the
// reactor alive until the stream is finishing AND no write is in flight or
// about to start, so a write started from a session's thread never races
// with OnDone(). Slot::up is cleared in the same critical section that marks
// the stream finishing, so no new write can start on a finishing stream.
class UpstreamLink::StreamReactor final
    : public grpc::ClientBidiReactor<GatewayBatch, ServiceBatch> {
 public:
  StreamReactor(UpstreamLink* link, Slot* slot,
                std::shared_ptr<grpc::ClientContext> context)
      : link_(link), slot_(slot), context_(std::move(context)) {}

  void Begin() {
    GatewayEvent hello;
    hello.mutable_hello()->set_gateway_id(link_->gateway_id_);
    hello.mutable_hello()->set_stream_index(slot_->index);
    *out_.add_events() = std::move(hello);
    link_->stub_->async()->Connect(context_.get(), this);
    AddHold();
    StartRead(&in_);
    StartWrite(&out_);
    StartCall();
  }

  // Moves queued events into out_, up to the batch caps. Call with
  // slot_->mu held and write_in_flight just set.
  void TakeBatch() ABSL_EXCLUSIVE_LOCKS_REQUIRED(slot_->mu) {
    out_.Clear();
    size_t bytes = 0;
    while (!slot_->pending.empty() &&
           static_cast<size_t>(out_.events_size()) <
               link_->options_.max_batch_events &&
           (bytes == 0 || bytes < link_->options_.max_batch_bytes)) {
      Slot::Queued& queued = slot_->pending.front();
      bytes += queued.bytes;
      *out_.add_events() = std::move(queued.event);
      slot_->pending.pop_front();
    }
    link_->queued_events_.Add(-out_.events_size());
    link_->batch_events_.Observe(out_.events_size());
    link_->events_out_.Increment(out_.events_size());
  }

  void StartBatchWrite() { StartWrite(&out_); }

  // Claims the write slot for the half-close if the stream is not finishing
  // and nothing is queued or in flight; the caller then calls
  // StartWritesDone() after releasing the lock.
  bool TryBeginWritesDoneLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(slot_->mu) {
    if (finishing_ || writes_done_ || slot_->write_in_flight ||
        !slot_->pending.empty()) {
      return false;
    }
    slot_->write_in_flight = true;
    writes_done_ = true;
    return true;
  }

  // Real initial metadata (not a trailers-only refusal) means the service
  // accepted the stream.
  void OnReadInitialMetadataDone(bool ok) override {
    if (!ok) return;
    std::optional<uint64_t> up;
    {
      absl::MutexLock lock(&slot_->mu);
      metadata_received_ = true;
      up = ConfirmUpLocked(/*grace_elapsed=*/false);
    }
    if (up.has_value()) link_->ReportUp(slot_->index, *up);
  }

  // The stream is up once the LinkHello is written and either the service
  // sent initial metadata or the stream survived the grace period. Returns
  // the new generation when this call brought it up.
  std::optional<uint64_t> ConfirmUpLocked(bool grace_elapsed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(slot_->mu) {
    if (came_up_ || finishing_ || !hello_written_) return std::nullopt;
    if (!metadata_received_ && !grace_elapsed) return std::nullopt;
    came_up_ = true;
    up_at_ = absl::Now();
    slot_->up = !slot_->draining;
    generation_ = ++slot_->generation;
    return generation_;
  }

  void OnWriteDone(bool ok) override { AfterWrite(ok); }
  void OnWritesDoneDone(bool ok) override { AfterWrite(ok); }

  void OnReadDone(bool ok) override {
    if (ok) {
      link_->Dispatch(&in_, slot_->index);
      StartRead(&in_);
      return;
    }
    bool release = false;
    std::optional<uint64_t> down;
    {
      absl::MutexLock lock(&slot_->mu);
      down = FinishLocked();
      if (!slot_->write_in_flight && !hold_released_) {
        hold_released_ = true;
        release = true;
      }
    }
    if (down.has_value()) link_->PostLinkState(slot_->index, *down, false);
    if (release) RemoveHold();
  }

  void OnDone(const grpc::Status& status) override {
    std::optional<uint64_t> down;
    int failures = 0;
    {
      absl::MutexLock lock(&slot_->mu);
      down = FinishLocked();
      slot_->reactor = nullptr;
      slot_->context.reset();
      // A stream refused or dropped soon after it came up counts as a failed
      // attempt, so a service that accepts and then ends streams (draining)
      // is not hammered.
      if (came_up_ && absl::Now() - up_at_ >= kHealthyStream) {
        slot_->failures = 0;
      } else {
        ++slot_->failures;
      }
      failures = slot_->failures;
    }
    if (down.has_value()) link_->PostLinkState(slot_->index, *down, false);
    LogWarn("gateway.upstream_stream_ended",
            {{"stream", slot_->index},
             {"code", static_cast<int>(status.error_code())},
             {"message", status.error_message()},
             {"was_up", came_up_ ? "true" : "false"}});
    UpstreamLink* const link = link_;
    const int index = slot_->index;
    const absl::Duration backoff = link->NextBackoff(failures);
    // The context holds a channel reference: drop it while the link's stub
    // still holds another. Once ScheduleReconnect() counts this reactor done,
    // Shutdown() may return and the link (and the stub's channel) go away;
    // the last channel reference must not be dropped on this gRPC callback
    // thread, whose own completion queue it would shut down.
    delete this;
    link->ScheduleReconnect(index, backoff);
  }

 private:
  void AfterWrite(bool ok) {
    bool start_write = false;
    bool release = false;
    std::optional<uint64_t> up;
    std::optional<uint64_t> down;
    std::optional<uint64_t> confirm_later;
    {
      absl::MutexLock lock(&slot_->mu);
      slot_->write_in_flight = false;
      if (!ok) {
        down = FinishLocked();
      } else if (!hello_written_) {
        hello_written_ = true;
        up = ConfirmUpLocked(/*grace_elapsed=*/false);
        if (!up.has_value()) confirm_later = slot_->attempt;
      }
      if (!finishing_ && !writes_done_ && !slot_->pending.empty()) {
        slot_->write_in_flight = true;
        TakeBatch();
        start_write = true;
      } else if (finishing_ && !hold_released_) {
        hold_released_ = true;
        release = true;
      }
    }
    if (up.has_value()) link_->ReportUp(slot_->index, *up);
    if (confirm_later.has_value()) {
      link_->ScheduleConfirm(slot_->index, *confirm_later);
    }
    if (down.has_value()) link_->PostLinkState(slot_->index, *down, false);
    if (start_write) StartWrite(&out_);
    if (release) RemoveHold();
  }

  // Marks the stream finishing; returns the generation to report down, once.
  std::optional<uint64_t> FinishLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(slot_->mu) {
    finishing_ = true;
    if (!came_up_ || reported_down_) return std::nullopt;
    reported_down_ = true;
    slot_->up = false;
    link_->queued_events_.Add(-static_cast<int64_t>(slot_->pending.size()));
    slot_->pending.clear();
    link_->streams_up_.Add(-1);
    return generation_;
  }

  UpstreamLink* const link_;
  Slot* const slot_;
  const std::shared_ptr<grpc::ClientContext> context_;
  GatewayBatch out_;
  ServiceBatch in_;
  // Guarded by slot_->mu.
  bool hello_written_ = false;
  bool metadata_received_ = false;
  bool came_up_ = false;
  absl::Time up_at_;
  bool finishing_ = false;
  bool writes_done_ = false;
  bool hold_released_ = false;
  bool reported_down_ = false;
  uint64_t generation_ = 0;
};

absl::Status UpstreamLinkOptions::Validate() const {
  if (service_address.empty()) {
    return absl::InvalidArgumentError("--service_address is empty");
  }
  if (streams < 1 || streams > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("--upstream_streams must be 1..64, got ", streams));
  }
  if (backoff_initial.count() <= 0 || backoff_max < backoff_initial) {
    return absl::InvalidArgumentError(
        "upstream backoff: need 0 < initial <= max");
  }
  if (backoff_multiplier < 1.0 || backoff_jitter < 0 || backoff_jitter >= 1) {
    return absl::InvalidArgumentError(
        "upstream backoff: need multiplier >= 1 and 0 <= jitter < 1");
  }
  if (max_batch_events < 1 || max_batch_bytes < 1) {
    return absl::InvalidArgumentError("upstream batch caps must be positive");
  }
  return absl::OkStatus();
}

std::shared_ptr<grpc::Channel> UpstreamLink::MakeChannel(
    const UpstreamLinkOptions& options) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
              static_cast<int>(options.keepalive_time.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
              static_cast<int>(options.keepalive_timeout.count()));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // gRPC's own subchannel backoff (1 s initial, 120 s max by default) would
  // hide a restarted service from our faster stream backoff.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              static_cast<int>(options.backoff_initial.count()));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS,
              static_cast<int>(options.backoff_initial.count()));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
              static_cast<int>(options.backoff_max.count()));
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(options.service_address,
                                   grpc::InsecureChannelCredentials(), args);
}

UpstreamLink::UpstreamLink(
    UpstreamLinkOptions options,
    std::unique_ptr<parley::v1::GatewayLink::StubInterface> stub,
    Registry& registry)
    : options_(std::move(options)),
      stub_(std::move(stub)),
      reconnects_(registry.GetCounter(
          "parley_gateway_upstream_reconnects_total",
          "Times an upstream stream came back up after ending.")),
      streams_up_(registry.GetGauge("parley_gateway_upstream_streams_up",
                                    "Upstream GatewayLink streams up.")),
      queued_events_(registry.GetGauge(
          "parley_gateway_upstream_queued_events",
          "Events queued for the upstream, not yet written.")),
      batch_events_(registry.GetHistogram(
          "parley_gateway_upstream_batch_events",
          "Events per GatewayBatch written.", Histogram::SizeBuckets())),
      events_out_(
          registry.GetCounter("parley_gateway_upstream_events_out_total",
                              "Events written to the service.")),
      events_in_(registry.GetCounter("parley_gateway_upstream_events_in_total",
                                     "Events received from the service.")) {
  for (int i = 0; i < options_.streams; ++i) {
    slots_.push_back(std::make_unique<Slot>());
    slots_.back()->index = i;
  }
  absl::MutexLock lock(&mu_);
  next_attempt_.assign(options_.streams, absl::InfiniteFuture());
  confirm_at_.assign(options_.streams, absl::InfiniteFuture());
  confirm_attempt_.assign(options_.streams, 0);
}

UpstreamLink::~UpstreamLink() { Shutdown(absl::ZeroDuration()); }

void UpstreamLink::Start(std::string gateway_id) {
  {
    absl::MutexLock lock(&mu_);
    if (started_ || shutting_down_) return;
    started_ = true;
    gateway_id_ =
        gateway_id.empty() ? options_.gateway_id : std::move(gateway_id);
    std::fill(next_attempt_.begin(), next_attempt_.end(), absl::Now());
  }
  reconnect_thread_ = std::thread([this] { ReconnectLoop(); });
}

void UpstreamLink::Attach(const std::string& session_id,
                          std::shared_ptr<SessionHandle> handle) {
  absl::MutexLock lock(&sessions_mu_);
  sessions_[session_id] = Attached{std::move(handle), SlotFor(session_id)};
}

void UpstreamLink::Detach(const std::string& session_id) {
  absl::MutexLock lock(&sessions_mu_);
  sessions_.erase(session_id);
}

bool UpstreamLink::AllStreamsUp() const {
  for (const auto& slot : slots_) {
    absl::MutexLock lock(&slot->mu);
    if (!slot->up) return false;
  }
  return true;
}

int UpstreamLink::SlotFor(const std::string& session_id) const {
  return static_cast<int>(std::hash<std::string>()(session_id) % slots_.size());
}

std::optional<uint64_t> UpstreamLink::Open(
    const parley::v1::SessionOpen& open) {
  GatewayEvent event;
  *event.mutable_open() = open;
  return Enqueue(*slots_[SlotFor(open.session_id())], std::move(event),
                 std::nullopt);
}

bool UpstreamLink::Frame(uint64_t generation, parley::v1::SessionFrame frame) {
  Slot& slot = *slots_[SlotFor(frame.session_id())];
  GatewayEvent event;
  *event.mutable_frame() = std::move(frame);
  return Enqueue(slot, std::move(event), generation).has_value();
}

void UpstreamLink::Close(parley::v1::SessionClose close) {
  Slot& slot = *slots_[SlotFor(close.session_id())];
  GatewayEvent event;
  *event.mutable_close() = std::move(close);
  Enqueue(slot, std::move(event), std::nullopt);
}

std::optional<uint64_t> UpstreamLink::Enqueue(
    Slot& slot, GatewayEvent event, std::optional<uint64_t> generation) {
  StreamReactor* writer = nullptr;
  uint64_t current;
  // Sized outside the lock; the batch caps use it.
  const size_t bytes = event.ByteSizeLong();
  {
    absl::MutexLock lock(&slot.mu);
    if (!slot.up || slot.draining) return std::nullopt;
    if (generation.has_value() && *generation != slot.generation) {
      return std::nullopt;
    }
    current = slot.generation;
    slot.pending.push_back(Slot::Queued{std::move(event), bytes});
    queued_events_.Add(1);
    if (!slot.write_in_flight) {
      slot.write_in_flight = true;
      writer = slot.reactor;
      writer->TakeBatch();
    }
  }
  if (writer != nullptr) writer->StartBatchWrite();
  return current;
}

void UpstreamLink::Connect(Slot& slot) {
  auto context = std::make_shared<grpc::ClientContext>();
  auto* reactor = new StreamReactor(this, &slot, context);
  {
    absl::MutexLock lock(&slot.mu);
    ++slot.attempt;
    slot.reactor = reactor;
    slot.context = context;
    slot.write_in_flight = true;  // The LinkHello.
  }
  {
    absl::MutexLock lock(&mu_);
    ++live_reactors_;
  }
  reactor->Begin();
}

void UpstreamLink::ScheduleReconnect(int slot, absl::Duration delay) {
  absl::MutexLock lock(&mu_);
  --live_reactors_;
  if (!shutting_down_) {
    next_attempt_[slot] = absl::Now() + delay;
    reconnect_cv_.Signal();
  }
}

absl::Duration UpstreamLink::NextBackoff(int failures) {
  double ms = static_cast<double>(options_.backoff_initial.count()) *
              std::pow(options_.backoff_multiplier, std::max(0, failures - 1));
  ms = std::min(ms, static_cast<double>(options_.backoff_max.count()));
  absl::MutexLock lock(&mu_);
  const double jitter = absl::Uniform(bitgen_, 1.0 - options_.backoff_jitter,
                                      1.0 + options_.backoff_jitter);
  return absl::Milliseconds(ms * jitter);
}

void UpstreamLink::ReportUp(int slot, uint64_t generation) {
  streams_up_.Add(1);
  if (generation > 1) reconnects_.Increment();
  PostLinkState(slot, generation, true);
}

void UpstreamLink::ScheduleConfirm(int slot, uint64_t attempt) {
  absl::MutexLock lock(&mu_);
  confirm_at_[slot] = absl::Now() + absl::FromChrono(options_.ready_grace);
  confirm_attempt_[slot] = attempt;
  reconnect_cv_.Signal();
}

void UpstreamLink::ConfirmStream(int index, uint64_t attempt) {
  Slot& slot = *slots_[index];
  std::optional<uint64_t> up;
  {
    absl::MutexLock lock(&slot.mu);
    // A live reactor is only deleted after OnDone clears slot.reactor.
    if (slot.attempt == attempt && slot.reactor != nullptr) {
      up = slot.reactor->ConfirmUpLocked(/*grace_elapsed=*/true);
    }
  }
  if (up.has_value()) ReportUp(index, *up);
}

void UpstreamLink::ReconnectLoop() {
  absl::MutexLock lock(&mu_);
  while (!shutting_down_) {
    const absl::Time now = absl::Now();
    absl::Time earliest = absl::InfiniteFuture();
    std::vector<int> due;
    std::vector<std::pair<int, uint64_t>> confirms;
    for (size_t i = 0; i < next_attempt_.size(); ++i) {
      if (next_attempt_[i] <= now) {
        due.push_back(static_cast<int>(i));
        next_attempt_[i] = absl::InfiniteFuture();
      } else {
        earliest = std::min(earliest, next_attempt_[i]);
      }
      if (confirm_at_[i] <= now) {
        confirms.emplace_back(static_cast<int>(i), confirm_attempt_[i]);
        confirm_at_[i] = absl::InfiniteFuture();
      } else {
        earliest = std::min(earliest, confirm_at_[i]);
      }
    }
    if (!due.empty() || !confirms.empty()) {
      mu_.Unlock();
      for (const auto& [i, attempt] : confirms) ConfirmStream(i, attempt);
      for (int i : due) Connect(*slots_[i]);
      mu_.Lock();
      continue;
    }
    reconnect_cv_.WaitWithDeadline(&mu_, earliest);
  }
}

void UpstreamLink::Dispatch(ServiceBatch* batch, int slot) {
  events_in_.Increment(batch->events_size());
  DispatchServiceBatch(batch, slot, *this);
}

bool UpstreamLink::NoLiveReactors(UpstreamLink* link) {
  return link->live_reactors_ == 0;
}

std::shared_ptr<SessionHandle> UpstreamLink::HandleFor(
    const std::string& session_id) const {
  absl::MutexLock lock(&sessions_mu_);
  auto it = sessions_.find(session_id);
  return it == sessions_.end() ? nullptr : it->second.handle;
}

std::vector<std::shared_ptr<SessionHandle>> UpstreamLink::HandlesFor(
    const google::protobuf::RepeatedPtrField<std::string>& ids) const {
  std::vector<std::shared_ptr<SessionHandle>> handles;
  handles.reserve(ids.size());
  absl::MutexLock lock(&sessions_mu_);
  for (const std::string& id : ids) {
    auto it = sessions_.find(id);
    handles.push_back(it == sessions_.end() ? nullptr : it->second.handle);
  }
  return handles;
}

std::vector<std::shared_ptr<SessionHandle>> UpstreamLink::HandlesOnStream(
    int stream) const {
  std::vector<std::shared_ptr<SessionHandle>> handles;
  absl::MutexLock lock(&sessions_mu_);
  for (const auto& [id, attached] : sessions_) {
    if (attached.slot == stream) handles.push_back(attached.handle);
  }
  return handles;
}

void UpstreamLink::PostLinkState(int slot, uint64_t generation, bool up) {
  const std::vector<std::shared_ptr<SessionHandle>> handles =
      HandlesOnStream(slot);
  LogInfo(up ? "gateway.upstream_up" : "gateway.upstream_down",
          {{"stream", slot},
           {"generation", generation},
           {"sessions", handles.size()}});
  for (auto& handle : handles) {
    if (up) {
      handle->Post([generation](Session& s) { s.OnLinkUp(generation); });
    } else {
      handle->Post([generation](Session& s) { s.OnLinkDown(generation); });
    }
  }
}

void UpstreamLink::Shutdown(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) return;
    shutting_down_ = true;
    reconnect_cv_.Signal();
  }
  if (reconnect_thread_.joinable()) reconnect_thread_.join();
  for (auto& slot : slots_) {
    absl::MutexLock lock(&slot->mu);
    slot->draining = true;
  }
  // Write what is queued, then half-close each stream.
  for (auto& slot : slots_) {
    StreamReactor* reactor = nullptr;
    {
      absl::MutexLock lock(&slot->mu);
      slot->mu.AwaitWithDeadline(
          absl::Condition(
              +[](Slot* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
                return s->reactor == nullptr ||
                       (!s->write_in_flight && s->pending.empty());
              },
              slot.get()),
          deadline);
      if (slot->reactor != nullptr &&
          slot->reactor->TryBeginWritesDoneLocked()) {
        reactor = slot->reactor;
      }
    }
    // Safe: the claimed write keeps the reactor's hold.
    if (reactor != nullptr) reactor->StartWritesDone();
  }
  // Wait for the service to end the streams, then cancel what is left.
  {
    absl::MutexLock lock(&mu_);
    if (mu_.AwaitWithDeadline(absl::Condition(&NoLiveReactors, this),
                              deadline)) {
      return;
    }
  }
  for (auto& slot : slots_) {
    std::shared_ptr<grpc::ClientContext> context;
    {
      absl::MutexLock lock(&slot->mu);
      context = slot->context;
    }
    if (context != nullptr) context->TryCancel();
  }
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&NoLiveReactors, this));
}

}  // namespace parley::gateway
