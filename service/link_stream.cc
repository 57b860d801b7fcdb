#include "service/link_stream.h"

#include <string>
#include <utility>

namespace parley::service {

void SendFrameTo(LinkStream* stream, absl::string_view session_id,
                 v1::ServerFrame frame) {
  v1::ServiceEvent event;
  event.mutable_delivery()->add_session_ids(std::string(session_id));
  *event.mutable_delivery()->mutable_frame() = std::move(frame);
  stream->Send(std::move(event));
}

}  // namespace parley::service
