// GatewayBatchHandler: what parley-service does with the GatewayBatches of one
// GatewayLink stream, with no gRPC in sight.
//
// GatewayLinkService's reactor (gateway_link_service.h) owns one per stream
// and hands it each batch read; the fuzz target
// fuzz/gateway_batch_fuzzer.cc calls it the same way. Per stream:
//   * the first event must be LinkHello: it opens the stream in Messaging
//     (StreamOpened). Any other first event is refused with INVALID_ARGUMENT
//     and nothing of its batch reaches Messaging; the caller then ends the
//     stream.
//   * after that, each event goes to Messaging in order: SessionOpen to
//     OpenSession, SessionFrame to HandleFrame, SessionClose to CloseSession.
//     A later LinkHello, and an event of no known kind, is ignored.
//   * when the stream ends, Close() tells Messaging (StreamClosed) if the
//     LinkHello came, so it forgets the stream's sessions.
//
// Example (on the stream's strand):
//   GatewayBatchHandler handler(&messaging, &stream, peer);
//   for each batch read:
//     if (absl::Status s = handler.Handle(batch); !s.ok()) end the stream;
//   when the stream ends: handler.Close(why);
//
// Threading: thread-compatible. Handle() and Close() run one at a time, in
// stream order, on a thread that may block (Messaging reads the store; see
// Messaging::HandlesWithoutBlocking for the frames that never do).
// `messaging` and `stream` must outlive the handler.
#ifndef PARLEY_SERVICE_GATEWAY_BATCH_HANDLER_H_
#define PARLEY_SERVICE_GATEWAY_BATCH_HANDLER_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "parley/v1/gateway_link.pb.h"
#include "service/messaging.h"
#include "service/router.h"

namespace parley::service {

class GatewayBatchHandler final {
 public:
  // `peer` names the gateway's address in the log.
  GatewayBatchHandler(Messaging* messaging, LinkStream* stream,
                      std::string peer);
  GatewayBatchHandler(const GatewayBatchHandler&) = delete;
  GatewayBatchHandler& operator=(const GatewayBatchHandler&) = delete;

  // Hands the events of `batch` to Messaging, in order. INVALID_ARGUMENT
  // when the stream's first event is not LinkHello; the stream must then end
  // (call Close(), and Handle() no more).
  absl::Status Handle(const v1::GatewayBatch& batch);

  // The stream ended (`why` goes to the log). Call once, after the last
  // Handle(); nothing is sent to the stream once it returns.
  void Close(absl::string_view why);

  // The gateway_id of the stream's LinkHello; empty before it. Set before
  // Messaging learns of the stream, so the stream's Send() may read it.
  const std::string& gateway_id() const { return gateway_id_; }

 private:
  Messaging* const messaging_;
  LinkStream* const stream_;
  const std::string peer_;
  bool hello_seen_ = false;
  std::string gateway_id_;
};

}  // namespace parley::service

#endif  // PARLEY_SERVICE_GATEWAY_BATCH_HANDLER_H_
