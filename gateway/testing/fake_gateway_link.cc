#include "gateway/testing/fake_gateway_link.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace parley::gateway::testing {

using parley::v1::GatewayBatch;
using parley::v1::GatewayEvent;
using parley::v1::ServiceBatch;
using parley::v1::ServiceEvent;

FakeGatewayLink::~FakeGatewayLink() { Stop(); }

std::string FakeGatewayLink::Start() {
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port);
  builder.RegisterService(this);
  server_ = builder.BuildAndStart();
  return absl::StrCat("127.0.0.1:", port);
}

void FakeGatewayLink::Stop() {
  if (server_ == nullptr) return;
  BreakStreams();
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
  server_.reset();
}

std::vector<GatewayEvent> FakeGatewayLink::Events() const {
  absl::MutexLock lock(&mu_);
  return events_;
}

int FakeGatewayLink::batches() const {
  absl::MutexLock lock(&mu_);
  return batches_;
}

int FakeGatewayLink::streams_opened() const {
  absl::MutexLock lock(&mu_);
  return streams_opened_;
}

namespace {

// Adapts a predicate over the event list to absl::Condition, which
// re-evaluates it whenever mu_ is released, so no polling is needed.
struct EventsPredicate {
  const std::vector<GatewayEvent>* events;
  const std::function<bool(const std::vector<GatewayEvent>&)>* pred;
  bool Eval() const { return (*pred)(*events); }
};

}  // namespace

bool FakeGatewayLink::WaitFor(
    const std::function<bool(const std::vector<GatewayEvent>&)>& pred,
    absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  EventsPredicate p{&events_, &pred};
  return mu_.AwaitWithTimeout(absl::Condition(&p, &EventsPredicate::Eval),
                              timeout);
}

std::string FakeGatewayLink::WaitForSession(const std::string& user,
                                            absl::Duration timeout) const {
  std::string id;
  WaitFor(
      [&](const std::vector<GatewayEvent>&) ABSL_NO_THREAD_SAFETY_ANALYSIS {
        auto it = newest_session_.find(user);
        if (it == newest_session_.end()) return false;
        id = it->second;
        return true;
      },
      timeout);
  return id;
}

std::vector<std::string> FakeGatewayLink::Sessions() const {
  std::vector<std::string> ids;
  absl::MutexLock lock(&mu_);
  for (const auto& [id, stream] : session_stream_) ids.push_back(id);
  return ids;
}

int FakeGatewayLink::StreamIndexOf(const std::string& session_id) const {
  absl::MutexLock lock(&mu_);
  auto it = session_stream_.find(session_id);
  return it == session_stream_.end() ? -1 : it->second->stream_index;
}

bool FakeGatewayLink::Push(const std::string& session_id,
                           const ServiceEvent& event) {
  std::shared_ptr<Stream> stream;
  {
    absl::MutexLock lock(&mu_);
    auto it = session_stream_.find(session_id);
    if (it == session_stream_.end()) return false;
    stream = it->second;
  }
  ServiceBatch batch;
  *batch.add_events() = event;
  return Write(stream, batch);
}

void FakeGatewayLink::BreakStreams() {
  std::vector<std::shared_ptr<Stream>> streams;
  {
    absl::MutexLock lock(&mu_);
    streams = streams_;
  }
  for (auto& stream : streams) {
    absl::MutexLock lock(&stream->write_mu);
    if (stream->open) stream->context->TryCancel();
  }
}

void FakeGatewayLink::SetRefuse(bool refuse) {
  absl::MutexLock lock(&mu_);
  refuse_ = refuse;
}

void FakeGatewayLink::SetSendInitialMetadata(bool on) {
  absl::MutexLock lock(&mu_);
  send_metadata_ = on;
}

void FakeGatewayLink::SetAutoReply(bool on) {
  absl::MutexLock lock(&mu_);
  auto_reply_ = on;
}

bool FakeGatewayLink::Write(const std::shared_ptr<Stream>& stream,
                            const ServiceBatch& batch) {
  absl::MutexLock lock(&stream->write_mu);
  if (!stream->open) return false;
  return stream->rw->Write(batch);
}

grpc::Status FakeGatewayLink::Connect(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<ServiceBatch, GatewayBatch>* rw) {
  auto stream = std::make_shared<Stream>();
  stream->context = context;
  stream->rw = rw;
  {
    absl::MutexLock lock(&mu_);
    ++streams_opened_;
    if (refuse_) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "refusing streams");
    }
    streams_.push_back(stream);
    if (send_metadata_) rw->SendInitialMetadata();
  }
  GatewayBatch batch;
  while (rw->Read(&batch)) {
    {
      absl::MutexLock lock(&mu_);
      ++batches_;
      for (const GatewayEvent& event : batch.events()) events_.push_back(event);
    }
    for (const GatewayEvent& event : batch.events()) Reply(stream, event);
  }
  {
    absl::MutexLock lock(&stream->write_mu);
    stream->open = false;
  }
  absl::MutexLock lock(&mu_);
  for (auto it = session_stream_.begin(); it != session_stream_.end();) {
    it = it->second == stream ? session_stream_.erase(it) : std::next(it);
  }
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream ended");
}

void FakeGatewayLink::Reply(const std::shared_ptr<Stream>& stream,
                            const GatewayEvent& event) {
  ServiceBatch out;
  // Deliveries to other streams' sessions, written after `out`.
  std::vector<std::pair<std::shared_ptr<Stream>, ServiceBatch>> others;
  {
    absl::MutexLock lock(&mu_);
    if (event.has_hello()) {
      stream->stream_index = static_cast<int>(event.hello().stream_index());
      return;
    }
    if (!auto_reply_) return;
    if (event.has_open()) {
      const auto& open = event.open();
      session_stream_[open.session_id()] = stream;
      if (absl::StartsWith(open.token(), "ok:")) {
        const std::string user = open.token().substr(3);
        session_user_[open.session_id()] = user;
        newest_session_[user] = open.session_id();
        auto* accepted = out.add_events()->mutable_accepted();
        accepted->set_session_id(open.session_id());
        accepted->set_user_id(user);
        accepted->set_inbox_seq(inbox_[user]);
        accepted->set_device(open.device());
      } else {
        auto* rejected = out.add_events()->mutable_rejected();
        rejected->set_session_id(open.session_id());
        if (open.token() == "busy") {
          rejected->set_reason(parley::v1::REJECT_REASON_UNAVAILABLE);
          rejected->set_message("service busy");
        } else {
          rejected->set_reason(parley::v1::REJECT_REASON_TOKEN_MALFORMED);
          rejected->set_message("token is malformed");
        }
      }
    } else if (event.has_close()) {
      session_stream_.erase(event.close().session_id());
    } else if (event.has_frame() && event.frame().frame().has_send()) {
      const std::string& session = event.frame().session_id();
      const auto& send = event.frame().frame().send();
      if (absl::StartsWith(send.text(), "hold")) return;
      const std::string from = session_user_[session];
      const std::string key = absl::StrCat(from, "/", send.client_msg_id());
      auto it = acks_.find(key);
      if (it == acks_.end()) {
        parley::v1::Ack ack;
        ack.set_client_msg_id(send.client_msg_id());
        ack.set_message_id(absl::StrCat("m", acks_.size() + 1));
        ack.set_conversation(absl::StrCat("d:", from, ":", send.to().user()));
        ack.set_seq(acks_.size() + 1);
        ack.set_inbox_seq(++inbox_[from]);
        it = acks_.emplace(key, ack).first;
        // Deliver to the recipient's sessions.
        const std::string to = send.to().user();
        const uint64_t inbox = ++inbox_[to];
        for (const auto& [id, user] : session_user_) {
          if (user != to) continue;
          auto s = session_stream_.find(id);
          if (s == session_stream_.end()) continue;
          ServiceBatch batch;
          auto* delivery = batch.add_events()->mutable_delivery();
          delivery->add_session_ids(id);
          auto* message = delivery->mutable_frame()->mutable_message();
          message->set_inbox_seq(inbox);
          message->set_message_id(ack.message_id());
          message->set_from(from);
          message->set_text(send.text());
          message->set_client_msg_id(send.client_msg_id());
          others.emplace_back(s->second, std::move(batch));
        }
      }
      auto* delivery = out.add_events()->mutable_delivery();
      delivery->add_session_ids(session);
      *delivery->mutable_frame()->mutable_ack() = it->second;
    }
  }
  if (out.events_size() > 0) Write(stream, out);
  for (auto& [s, batch] : others) Write(s, batch);
}

}  // namespace parley::gateway::testing
