#include "service/conversation.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace parley::service {

absl::Status ValidateId(absl::string_view what, absl::string_view id) {
  if (id.empty() || id.size() > 64) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " \"", id, "\" must be 1 to 64 characters [A-Za-z0-9._-]"));
  }
  for (char c : id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' &&
        c != '_' && c != '-') {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " \"", id, "\" has a character outside [A-Za-z0-9._-]"));
    }
  }
  return absl::OkStatus();
}

std::string DirectConversation(absl::string_view a, absl::string_view b) {
  return a <= b ? absl::StrCat("d:", a, ":", b) : absl::StrCat("d:", b, ":", a);
}

std::string GroupConversation(absl::string_view group_id) {
  return absl::StrCat("g:", group_id);
}

absl::StatusOr<ConversationRef> ParseConversation(absl::string_view name) {
  ConversationRef ref;
  if (absl::StartsWith(name, "g:")) {
    ref.group = true;
    ref.group_id = std::string(name.substr(2));
    absl::Status valid = ValidateId("group id", ref.group_id);
    if (!valid.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("conversation \"", name, "\": ", valid.message()));
    }
    return ref;
  }
  if (absl::StartsWith(name, "d:")) {
    std::vector<std::string> parts = absl::StrSplit(name.substr(2), ':');
    if (parts.size() == 2 && ValidateId("user id", parts[0]).ok() &&
        ValidateId("user id", parts[1]).ok()) {
      if (parts[0] > parts[1]) {
        return absl::InvalidArgumentError(
            absl::StrCat("conversation \"", name,
                         "\" must name its users in sorted order: \"",
                         DirectConversation(parts[0], parts[1]), "\""));
      }
      ref.user_a = parts[0];
      ref.user_b = parts[1];
      return ref;
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("conversation \"", name,
                   "\" is not \"d:<user>:<user>\" or \"g:<group>\""));
}

bool IsValidUtf8(absl::string_view text) {
  size_t i = 0;
  const size_t n = text.size();
  while (i < n) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    int extra;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    for (int k = 1; k <= extra; ++k) {
      if (i + static_cast<size_t>(k) >= n) return false;
      const unsigned char cc = static_cast<unsigned char>(text[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += extra + 1;
  }
  return true;
}

}  // namespace parley::service
