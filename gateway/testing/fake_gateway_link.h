// FakeGatewayLink: an in-process stand-in for parley-service's GatewayLink,
// for the gateway's tests (upstream_link_test, ws_server_test). Test-only.
//
// It answers like a tiny service: a SessionOpen whose token is "ok:<user>"
// is accepted (any other token is rejected as malformed; "busy" as
// unavailable); a Send is acknowledged (idempotent per user and
// client_msg_id, unless its text starts with "hold") and delivered to the
// recipient user's sessions with per-user inbox_seq; a Ping never reaches it.
// Tests can push any event, break every stream (as a service restart would),
// refuse new streams, and wait for what the gateway sent.
//
// Threading: thread-safe. gRPC's sync server runs one thread per stream,
// which is fine for a test double.
#ifndef PARLEY_GATEWAY_TESTING_FAKE_GATEWAY_LINK_H_
#define PARLEY_GATEWAY_TESTING_FAKE_GATEWAY_LINK_H_

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/server.h"
#include "parley/v1/gateway_link.grpc.pb.h"

namespace parley::gateway::testing {

class FakeGatewayLink final : public parley::v1::GatewayLink::Service {
 public:
  FakeGatewayLink() = default;
  ~FakeGatewayLink() override;

  // Listens on 127.0.0.1:0; returns "127.0.0.1:<port>".
  std::string Start();
  void Stop();

  // Every event received, in order, across streams.
  std::vector<parley::v1::GatewayEvent> Events() const;
  // Number of GatewayBatch messages received.
  int batches() const;
  // Streams ever opened (refused ones included).
  int streams_opened() const;
  // Waits until `pred(Events())` holds; false at the timeout.
  bool WaitFor(const std::function<
                   bool(const std::vector<parley::v1::GatewayEvent>&)>& pred,
               absl::Duration timeout = absl::Seconds(10)) const;
  // The id of the newest accepted session of `user`, waiting for it.
  std::string WaitForSession(const std::string& user,
                             absl::Duration timeout = absl::Seconds(10)) const;

  // Sessions whose latest SessionOpen came on a stream still open, sorted.
  std::vector<std::string> Sessions() const;
  // The LinkHello stream_index of the stream carrying `session_id`; -1 if
  // none.
  int StreamIndexOf(const std::string& session_id) const;

  // Sends `event` on the stream that carries `session_id`; false if none.
  bool Push(const std::string& session_id,
            const parley::v1::ServiceEvent& event);
  // Ends every open stream (the gateway sees CANCELLED).
  void BreakStreams();
  // While true, new streams end at once with UNAVAILABLE.
  void SetRefuse(bool refuse);
  // Whether new streams get initial metadata at once (default true), which
  // tells the gateway the stream is accepted.
  void SetSendInitialMetadata(bool on);
  // Whether to auto-accept/ack (default true).
  void SetAutoReply(bool on);

  grpc::Status Connect(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<parley::v1::ServiceBatch,
                               parley::v1::GatewayBatch>* stream) override;

 private:
  struct Stream {
    grpc::ServerContext* context;
    grpc::ServerReaderWriter<parley::v1::ServiceBatch,
                             parley::v1::GatewayBatch>* rw;
    // From the stream's LinkHello; guarded by FakeGatewayLink::mu_.
    int stream_index = -1;
    absl::Mutex write_mu;
    bool open ABSL_GUARDED_BY(write_mu) = true;
  };
  void Reply(const std::shared_ptr<Stream>& stream,
             const parley::v1::GatewayEvent& event);
  bool Write(const std::shared_ptr<Stream>& stream,
             const parley::v1::ServiceBatch& batch);

  std::unique_ptr<grpc::Server> server_;
  mutable absl::Mutex mu_;
  std::vector<parley::v1::GatewayEvent> events_ ABSL_GUARDED_BY(mu_);
  int batches_ ABSL_GUARDED_BY(mu_) = 0;
  int streams_opened_ ABSL_GUARDED_BY(mu_) = 0;
  bool refuse_ ABSL_GUARDED_BY(mu_) = false;
  bool auto_reply_ ABSL_GUARDED_BY(mu_) = true;
  bool send_metadata_ ABSL_GUARDED_BY(mu_) = true;
  std::vector<std::shared_ptr<Stream>> streams_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<Stream>> session_stream_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> session_user_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::string> newest_session_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, uint64_t> inbox_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, parley::v1::Ack> acks_ ABSL_GUARDED_BY(mu_);
};

}  // namespace parley::gateway::testing

#endif  // PARLEY_GATEWAY_TESTING_FAKE_GATEWAY_LINK_H_
