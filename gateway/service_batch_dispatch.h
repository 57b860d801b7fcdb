// DispatchServiceBatch: where the events of a ServiceBatch from
// parley-service go, with no gRPC in sight.
//
// UpstreamLink (upstream_link.h) calls it for every batch read on one of its
// GatewayLink streams; the fuzz target fuzz/service_batch_fuzzer.cc calls it
// the same way. Each event is posted to the Session(s) it is for, through
// their SessionHandles, in batch order:
//   * SessionAccepted, SessionRejected: to the session named;
//   * Delivery: to each session named, the i-th with inbox_seqs[i] (0 when
//     the Delivery lists none); one OutboundFrame is shared by all of them;
//   * DisconnectOrder: to each session named;
//   * Broadcast: to every session on the stream it came on (the service
//     sends one on each of this gateway's streams).
// Sessions that are not attached are skipped. A Delivery or Broadcast whose
// frame CheckEncodable refuses (a service bug: its JSON would be cut off) is
// dropped and logged, as is an event of no known kind.
//
// Threading: DispatchServiceBatch is thread-safe if `sessions` is; it never
// runs a Session method itself (SessionHandle::Post runs them later, on the
// session's executor) and never blocks.
#ifndef PARLEY_GATEWAY_SERVICE_BATCH_DISPATCH_H_
#define PARLEY_GATEWAY_SERVICE_BATCH_DISPATCH_H_

#include <memory>
#include <string>
#include <vector>

#include "gateway/session.h"
#include "google/protobuf/repeated_field.h"
#include "parley/v1/gateway_link.pb.h"

namespace parley::gateway {

// The sessions attached to the gateway's link, by id and by stream.
// Implemented by UpstreamLink (and by the fuzz target's and tests' doubles).
class SessionDirectory {
 public:
  virtual ~SessionDirectory() = default;
  // The handle of `session_id`; nullptr when it is not attached.
  virtual std::shared_ptr<SessionHandle> HandleFor(
      const std::string& session_id) const = 0;
  // The handle of each of `ids`, in order; nullptr for ids not attached.
  virtual std::vector<std::shared_ptr<SessionHandle>> HandlesFor(
      const google::protobuf::RepeatedPtrField<std::string>& ids) const = 0;
  // The handle of every session whose events travel on link stream `stream`.
  virtual std::vector<std::shared_ptr<SessionHandle>> HandlesOnStream(
      int stream) const = 0;
};

// Posts each event of `batch`, read on link stream `stream`, to the sessions
// in `sessions` it is for (see above). Frames are moved out of `batch`.
void DispatchServiceBatch(parley::v1::ServiceBatch* batch, int stream,
                          const SessionDirectory& sessions);

}  // namespace parley::gateway

#endif  // PARLEY_GATEWAY_SERVICE_BATCH_DISPATCH_H_
