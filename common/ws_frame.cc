#include "common/ws_frame.h"

namespace parley {

void AppendWsFrameHeader(uint8_t opcode, uint64_t length, bool masked,
                         std::string* out) {
  const uint8_t mask_bit = masked ? 0x80 : 0x00;
  out->push_back(static_cast<char>(0x80 | (opcode & 0x0F)));
  if (length < 126) {
    out->push_back(static_cast<char>(mask_bit | length));
  } else if (length <= 0xFFFF) {
    out->push_back(static_cast<char>(mask_bit | 126));
    out->push_back(static_cast<char>(length >> 8));
    out->push_back(static_cast<char>(length & 0xFF));
  } else {
    out->push_back(static_cast<char>(mask_bit | 127));
    for (int shift = 56; shift >= 0; shift -= 8) {
      out->push_back(static_cast<char>((length >> shift) & 0xFF));
    }
  }
}

bool EndsOnWholeCodePoint(std::string_view text) {
  // Step back over the continuation bytes (10xxxxxx) of the last sequence.
  size_t continuation = 0;
  while (continuation < 3 && continuation < text.size() &&
         (static_cast<uint8_t>(text[text.size() - 1 - continuation]) & 0xC0) ==
             0x80) {
    ++continuation;
  }
  if (continuation == text.size()) return continuation == 0;
  const uint8_t lead =
      static_cast<uint8_t>(text[text.size() - 1 - continuation]);
  const size_t want = lead < 0x80 ? 0 : lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : 1;
  return continuation == want;
}

}  // namespace parley
