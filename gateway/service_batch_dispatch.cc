#include "gateway/service_batch_dispatch.h"

#include <cstddef>
#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "common/frame_codec.h"
#include "common/log.h"

namespace parley::gateway {
namespace {

using parley::v1::ServiceEvent;

// Whether a frame from the service can go to clients; logs one that cannot
// (a service bug: its JSON would be cut off mid-frame).
bool Encodable(const parley::v1::ServerFrame& frame) {
  const absl::Status status = CheckEncodable(frame);
  if (status.ok()) return true;
  LogWarn("gateway.upstream_bad_frame", {{"error", status.message()}});
  return false;
}

}  // namespace

void DispatchServiceBatch(parley::v1::ServiceBatch* batch, int stream,
                          const SessionDirectory& sessions) {
  for (ServiceEvent& event : *batch->mutable_events()) {
    switch (event.event_case()) {
      case ServiceEvent::kAccepted: {
        auto accepted = event.accepted();
        if (auto handle = sessions.HandleFor(accepted.session_id())) {
          handle->Post([accepted](Session& s) { s.OnAccepted(accepted); });
        }
        break;
      }
      case ServiceEvent::kRejected: {
        auto rejected = event.rejected();
        if (auto handle = sessions.HandleFor(rejected.session_id())) {
          handle->Post([rejected](Session& s) { s.OnRejected(rejected); });
        }
        break;
      }
      case ServiceEvent::kDelivery: {
        const parley::v1::Delivery& delivery = event.delivery();
        if (!Encodable(delivery.frame())) break;
        auto frame = std::make_shared<const OutboundFrame>(
            std::move(*event.mutable_delivery()->mutable_frame()));
        const auto handles = sessions.HandlesFor(delivery.session_ids());
        for (size_t i = 0; i < handles.size(); ++i) {
          if (handles[i] == nullptr) continue;
          // Each session's own place in its inbox, when the Delivery has them.
          const uint64_t inbox_seq =
              i < static_cast<size_t>(delivery.inbox_seqs_size())
                  ? delivery.inbox_seqs(static_cast<int>(i))
                  : 0;
          handles[i]->Post([frame, inbox_seq](Session& s) {
            s.OnDelivery(*frame, inbox_seq);
          });
        }
        break;
      }
      case ServiceEvent::kDisconnect: {
        auto order = event.disconnect();
        for (auto& handle : sessions.HandlesFor(order.session_ids())) {
          if (handle == nullptr) continue;
          handle->Post([order](Session& s) { s.OnDisconnect(order); });
        }
        break;
      }
      case ServiceEvent::kBroadcast: {
        if (!Encodable(event.broadcast().frame())) break;
        auto frame = std::make_shared<const OutboundFrame>(
            std::move(*event.mutable_broadcast()->mutable_frame()));
        for (auto& handle : sessions.HandlesOnStream(stream)) {
          handle->Post([frame](Session& s) { s.OnDelivery(*frame, 0); });
        }
        break;
      }
      default:
        LogWarn("gateway.upstream_unknown_event",
                {{"case", static_cast<int>(event.event_case())}});
        break;
    }
  }
}

}  // namespace parley::gateway
