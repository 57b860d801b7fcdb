#include "service/store.h"

#include <cstdint>

#include "absl/random/random.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_format.h"

namespace parley::service {
namespace {

// The payload that marks a BlockedError.
constexpr absl::string_view kBlockedPayload = "parley.v1/blocked";

}  // namespace

std::string NewStoreGeneration() {
  absl::BitGen bits;
  return absl::StrFormat("%016x", absl::Uniform<uint64_t>(bits));
}

absl::Status BlockedError(absl::string_view message) {
  absl::Status status = absl::PermissionDeniedError(message);
  status.SetPayload(kBlockedPayload, absl::Cord("1"));
  return status;
}

bool IsBlockedError(const absl::Status& status) {
  return status.GetPayload(kBlockedPayload).has_value();
}

}  // namespace parley::service
