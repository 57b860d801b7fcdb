// Ids and conversation names: the naming rules of Parley, as pure functions.
//
//   user and group ids:  [A-Za-z0-9._-]{1,64}
//   direct conversation: "d:<a>:<b>" with a <= b (byte order), so both
//                        participants name it the same way
//   group conversation:  "g:<group id>"
//
// Threading: pure functions, thread-safe.
#ifndef PARLEY_SERVICE_CONVERSATION_H_
#define PARLEY_SERVICE_CONVERSATION_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace parley::service {

// OK when `id` is a valid user or group id; else INVALID_ARGUMENT naming
// `what` (e.g. "user id") and the value.
absl::Status ValidateId(absl::string_view what, absl::string_view id);

// The direct conversation between two users.
std::string DirectConversation(absl::string_view a, absl::string_view b);
// The conversation of a group.
std::string GroupConversation(absl::string_view group_id);

// A parsed conversation name.
struct ConversationRef {
  bool group = false;
  std::string group_id;  // When `group`.
  std::string user_a;    // When direct: user_a <= user_b.
  std::string user_b;
};

// Parses and validates a conversation name; INVALID_ARGUMENT naming the
// problem otherwise.
absl::StatusOr<ConversationRef> ParseConversation(absl::string_view name);

// Whether `text` is valid UTF-8 (no overlongs, no surrogates).
bool IsValidUtf8(absl::string_view text);

}  // namespace parley::service

#endif  // PARLEY_SERVICE_CONVERSATION_H_
