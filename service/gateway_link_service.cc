#include "service/gateway_link_service.h"

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/build_info.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "service/gateway_batch_handler.h"

namespace parley::service {

class GatewayLinkService::Reactor final
    : public grpc::ServerBidiReactor<v1::GatewayBatch, v1::ServiceBatch>,
      public LinkStream {
 public:
  Reactor(GatewayLinkService* service, grpc::CallbackServerContext* context)
      : service_(service),
        peer_(context->peer()),
        strand_(SerialExecutor::Create(service->pool_)),
        batches_(service->messaging_, this, peer_) {
    // What this service is, for the gateway's compatibility check.
    context->AddInitialMetadata("parley-version", GetBuildInfo().version);
    context->AddInitialMetadata("parley-link-protocol",
                                absl::StrCat(kLinkProtocol));
  }

  // Starts reading (a served stream) or finishes at once (a refused one).
  void Start() {
    // Initial metadata at once: the gateway takes it as "the stream is up"
    // without waiting for the first batch.
    StartSendInitialMetadata();
    StartRead(&in_);
  }
  void Refuse(const grpc::Status& status) {
    {
      absl::MutexLock lock(&write_mu_);
      finished_ = true;
    }
    Finish(status);
  }

  // LinkStream. Called under the Router's mutex from any thread.
  void Send(v1::ServiceEvent event) override {
    absl::MutexLock lock(&write_mu_);
    if (finished_ || finish_status_.has_value() || broken_) return;
    if (pending_.size() >= service_->options_.max_queued_events) {
      LogWarn("link.overflow",
              {{"gateway", batches_.gateway_id()}, {"peer", peer_}});
      pending_.clear();
      broken_ = true;
      RequestClose(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                "the gateway does not read its stream; "
                                "reconnect and resume"));
      return;
    }
    pending_.push_back(std::move(event));
    MaybeWriteLocked();
  }

  // Ends the stream from any thread: forgets its sessions, writes what is
  // queued, then finishes with `status`.
  void RequestClose(grpc::Status status) {
    strand_->Post(
        [this, status = std::move(status)] { CloseOnStrand(status); });
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      RequestClose(grpc::Status::OK);
      return;
    }
    auto batch = std::make_shared<v1::GatewayBatch>(std::move(in_));
    in_.Clear();
    auto handle = [this, batch] {
      if (closing_) return;
      const absl::Status status = batches_.Handle(*batch);
      if (!status.ok()) CloseOnStrand(ToGrpcStatus(status));
      if (!closing_) StartRead(&in_);
    };
    // The busy path (Sends) runs here on gRPC's thread when the strand is
    // idle: a pool thread's wake-up per batch costs more than the handling.
    if (HandlesWithoutBlocking(*batch)) {
      strand_->Dispatch(std::move(handle));
    } else {
      strand_->Post(std::move(handle));
    }
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&write_mu_);
    write_in_flight_ = false;
    if (!ok) {
      // The stream broke; the failed read will close it.
      broken_ = true;
      pending_.clear();
    }
    MaybeWriteLocked();
  }

  void OnDone() override {
    service_->Unregister(this);
    // Runs after every task already posted for this stream.
    strand_->Post([this] { delete this; });
  }

 private:
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_) {
    if (write_in_flight_ || finished_) return;
    if (pending_.empty() || broken_) {
      if (finish_status_.has_value()) {
        finished_ = true;
        Finish(*finish_status_);
      }
      return;
    }
    out_.Clear();
    size_t bytes = 0;
    while (!pending_.empty() && static_cast<size_t>(out_.events_size()) <
                                    service_->options_.max_batch_events) {
      const size_t size = pending_.front().ByteSizeLong();
      if (out_.events_size() > 0 &&
          bytes + size > service_->options_.max_batch_bytes) {
        break;
      }
      bytes += size;
      *out_.add_events() = std::move(pending_.front());
      pending_.pop_front();
    }
    write_in_flight_ = true;
    StartWrite(&out_);
  }

  void CloseOnStrand(const grpc::Status& status) {
    if (closing_) return;
    closing_ = true;
    batches_.Close(status.error_message());
    absl::MutexLock lock(&write_mu_);
    finish_status_ = status;
    MaybeWriteLocked();
  }

  static bool HandlesWithoutBlocking(const v1::GatewayBatch& batch) {
    for (const v1::GatewayEvent& event : batch.events()) {
      if (!event.has_frame() ||
          !Messaging::HandlesWithoutBlocking(event.frame())) {
        return false;
      }
    }
    return true;
  }

  GatewayLinkService* const service_;
  const std::string peer_;
  const std::shared_ptr<SerialExecutor> strand_;

  // Strand-only state.
  v1::GatewayBatch in_;
  GatewayBatchHandler batches_;
  bool closing_ = false;

  absl::Mutex write_mu_;
  std::deque<v1::ServiceEvent> pending_ ABSL_GUARDED_BY(write_mu_);
  v1::ServiceBatch out_ ABSL_GUARDED_BY(write_mu_);
  bool write_in_flight_ ABSL_GUARDED_BY(write_mu_) = false;
  bool broken_ ABSL_GUARDED_BY(write_mu_) = false;
  bool finished_ ABSL_GUARDED_BY(write_mu_) = false;
  std::optional<grpc::Status> finish_status_ ABSL_GUARDED_BY(write_mu_);
};

GatewayLinkService::GatewayLinkService(Messaging* messaging, ThreadPool* pool,
                                       GatewayLinkOptions options)
    : messaging_(messaging), pool_(pool), options_(options) {}

GatewayLinkService::~GatewayLinkService() = default;

grpc::ServerBidiReactor<v1::GatewayBatch, v1::ServiceBatch>*
GatewayLinkService::Connect(grpc::CallbackServerContext* context) {
  auto* reactor = new Reactor(this, context);
  absl::MutexLock lock(&mu_);
  reactors_.insert(reactor);
  if (draining_) {
    reactor->Refuse(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                 "the service is shutting down; reconnect"));
  } else {
    reactor->Start();
  }
  return reactor;
}

void GatewayLinkService::Unregister(Reactor* reactor) {
  absl::MutexLock lock(&mu_);
  reactors_.erase(reactor);
}

void GatewayLinkService::RefuseNewStreams() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
}

void GatewayLinkService::CloseStreams() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  for (Reactor* reactor : reactors_) {
    reactor->RequestClose(
        grpc::Status(grpc::StatusCode::UNAVAILABLE,
                     "the service is shutting down; reconnect"));
  }
}

bool GatewayLinkService::WaitForStreamsDone(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return reactors_.empty();
  };
  return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
}

}  // namespace parley::service
