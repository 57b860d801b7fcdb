#include "service/store.h"

#include <cstdint>

#include "absl/random/random.h"
#include "absl/strings/str_format.h"

namespace parley::service {

std::string NewStoreGeneration() {
  absl::BitGen bits;
  return absl::StrFormat("%016x", absl::Uniform<uint64_t>(bits));
}

}  // namespace parley::service
