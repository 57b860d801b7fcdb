// LinkStream and the session facts that travel with it: what the routing
// layer (router.h) and the logic (messaging.h, admin_api.h) need to know of
// one gateway's GatewayLink stream, without gRPC. gateway_link_service.h
// implements LinkStream over the gRPC stream; tests record what is sent
// (recording_link_stream.h).
//
// Threading: LinkStream::Send() may be called from any thread, also under a
// router's mutex, and must never block or call back into a router.
#ifndef PARLEY_SERVICE_LINK_STREAM_H_
#define PARLEY_SERVICE_LINK_STREAM_H_

#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "parley/v1/gateway_link.pb.h"

namespace parley::service {

// The service's end of one GatewayLink stream, as the logic sees it.
class LinkStream {
 public:
  virtual ~LinkStream() = default;
  // Queues one event for the gateway. Never blocks; events queued one after
  // the other are sent in that order.
  virtual void Send(v1::ServiceEvent event) = 0;
};

// What operators see of a session.
struct SessionInfo {
  std::string session_id;
  std::string user_id;
  std::string device;
  std::string gateway_id;
  std::string peer_address;
  absl::Time connected_at;
};

// Sends one frame to one session on `stream`, registered or not (answers
// about sessions no router knows, such as "not open").
void SendFrameTo(LinkStream* stream, absl::string_view session_id,
                 v1::ServerFrame frame);

}  // namespace parley::service

#endif  // PARLEY_SERVICE_LINK_STREAM_H_
