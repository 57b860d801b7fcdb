#include "gateway/client_message_check.h"

#include <string_view>

#include "common/ws_frame.h"
#include "gateway/session.h"

namespace parley::gateway {

std::optional<MessageClose> CheckClientMessage(absl::string_view payload,
                                               bool binary) {
  // Debian's Abseil has its own string_view, not std::string_view.
  if (!binary &&
      !EndsOnWholeCodePoint(std::string_view(payload.data(), payload.size()))) {
    return MessageClose{kCloseInvalidPayload,
                        "invalid UTF-8: a text message ends mid code point"};
  }
  return std::nullopt;
}

}  // namespace parley::gateway
