#include "service/gateway_batch_handler.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "common/build_info.h"
#include "common/log.h"

namespace parley::service {

GatewayBatchHandler::GatewayBatchHandler(Messaging* messaging,
                                         LinkStream* stream, std::string peer)
    : messaging_(messaging), stream_(stream), peer_(std::move(peer)) {}

absl::Status GatewayBatchHandler::Handle(const v1::GatewayBatch& batch) {
  for (const v1::GatewayEvent& event : batch.events()) {
    if (!hello_seen_) {
      if (!event.has_hello()) {
        return absl::InvalidArgumentError("the first event must be LinkHello");
      }
      const v1::LinkHello& hello = event.hello();
      if (absl::Status compatible =
              CheckLinkProtocol(hello.link_protocol(), hello.gateway_version(),
                                absl::StrCat("gateway ", hello.gateway_id()));
          !compatible.ok()) {
        LogWarn("link.refused", {{"gateway", hello.gateway_id()},
                                 {"gateway_version", hello.gateway_version()},
                                 {"peer", peer_},
                                 {"reason", compatible.message()}});
        return compatible;
      }
      hello_seen_ = true;
      gateway_id_ = hello.gateway_id();
      messaging_->StreamOpened(stream_, hello);
      LogInfo("link.open", {{"gateway", gateway_id_},
                            {"stream", hello.stream_index()},
                            {"gateway_version", hello.gateway_version().empty()
                                                    ? "unknown"
                                                    : hello.gateway_version()},
                            {"peer", peer_}});
      continue;
    }
    switch (event.event_case()) {
      case v1::GatewayEvent::kOpen:
        messaging_->OpenSession(stream_, event.open());
        break;
      case v1::GatewayEvent::kFrame:
        messaging_->HandleFrame(stream_, event.frame());
        break;
      case v1::GatewayEvent::kClose:
        messaging_->CloseSession(stream_, event.close());
        break;
      case v1::GatewayEvent::kHello:
      case v1::GatewayEvent::EVENT_NOT_SET:
        break;
    }
  }
  return absl::OkStatus();
}

void GatewayBatchHandler::Close(absl::string_view why) {
  if (!hello_seen_) return;
  messaging_->StreamClosed(stream_);
  LogInfo("link.closed",
          {{"gateway", gateway_id_}, {"peer", peer_}, {"status", why}});
}

}  // namespace parley::service
