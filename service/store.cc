#include "service/store.h"

#include <cstdint>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace parley::service {
namespace {

// The payload that marks a BlockedError.
constexpr absl::string_view kBlockedPayload = "parley.v1/blocked";

}  // namespace

std::string NewStoreGeneration() {
  absl::BitGen bits;
  return absl::StrFormat("%016x", absl::Uniform<uint64_t>(bits));
}

std::string EncodeGroupEvent(const GroupEvent& event) {
  std::string out = absl::StrCat(static_cast<int>(event.type), " ",
                                 static_cast<int>(event.role));
  for (const std::string& user : event.users) absl::StrAppend(&out, " ", user);
  return out;
}

GroupEvent DecodeGroupEvent(absl::string_view encoded) {
  GroupEvent event;
  std::vector<absl::string_view> parts =
      absl::StrSplit(encoded, ' ', absl::SkipEmpty());
  int value = 0;
  if (parts.size() >= 1 && absl::SimpleAtoi(parts[0], &value)) {
    event.type = static_cast<GroupEventType>(value);
  }
  if (parts.size() >= 2 && absl::SimpleAtoi(parts[1], &value)) {
    event.role = static_cast<GroupRole>(value);
  }
  for (size_t i = 2; i < parts.size(); ++i) {
    event.users.emplace_back(parts[i]);
  }
  return event;
}

// The token is "<activity_us>/<conversation>", base64url-encoded: opaque to
// clients, who have no use for its parts.
std::string EncodeConversationCursor(const ConversationCursor& cursor) {
  return absl::WebSafeBase64Escape(
      absl::StrCat(cursor.activity_us, "/", cursor.conversation));
}

absl::StatusOr<ConversationCursor> DecodeConversationCursor(
    absl::string_view page_token) {
  std::string raw;
  ConversationCursor cursor;
  size_t slash = std::string::npos;
  if (absl::WebSafeBase64Unescape(page_token, &raw)) slash = raw.find('/');
  if (slash == std::string::npos || slash + 1 == raw.size() ||
      !absl::SimpleAtoi(absl::string_view(raw).substr(0, slash),
                        &cursor.activity_us) ||
      raw.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(
        "page_token is not one this service handed out (pass "
        "next_page_token as it came)");
  }
  cursor.conversation = raw.substr(slash + 1);
  return cursor;
}

absl::Status BlockedError(absl::string_view message) {
  absl::Status status = absl::PermissionDeniedError(message);
  status.SetPayload(kBlockedPayload, absl::Cord("1"));
  return status;
}

bool IsBlockedError(const absl::Status& status) {
  return status.GetPayload(kBlockedPayload).has_value();
}

absl::Status TooManyBlocksError(absl::string_view user, uint64_t blocks,
                                size_t max_blocked) {
  return absl::ResourceExhaustedError(
      absl::StrCat("user \"", user, "\" already blocks ", blocks,
                   " users; the limit is ", max_blocked));
}

}  // namespace parley::service
