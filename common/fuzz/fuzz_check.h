// What Parley's libFuzzer targets (the *_fuzzer.cc files next to this one and
// under gateway/fuzz, service/fuzz) share: FuzzFail, how they report a broken
// property (it prints what was expected and what happened, then aborts;
// libFuzzer reports the abort as a crash and saves the input that caused it),
// and the RFC 6455 rule two of them check the gateway's closes against.
//
//   if (printed != reference) {
//     FuzzFail(absl::StrCat("printed ", printed, ", want ", reference));
//   }
//
// Thread-safe: FuzzFail writes to stderr and ends the process; the rest are
// pure functions.
#ifndef PARLEY_COMMON_FUZZ_FUZZ_CHECK_H_
#define PARLEY_COMMON_FUZZ_FUZZ_CHECK_H_

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/string_view.h"

namespace parley {

[[noreturn]] inline void FuzzFail(absl::string_view what) {
  std::fprintf(stderr, "fuzz property broken: %.*s\n",
               static_cast<int>(what.size()), what.data());
  std::abort();
}

// Whether a close frame may carry `code` (RFC 6455 7.4): 1000-4999 less the
// reserved codes (1004, 1016-2999) and those never sent (1005, 1006, 1015).
inline bool SendableCloseCode(uint32_t code) {
  if (code < 1000 || code > 4999 || (code >= 1016 && code <= 2999)) {
    return false;
  }
  return code != 1004 && code != 1005 && code != 1006 && code != 1015;
}

}  // namespace parley

#endif  // PARLEY_COMMON_FUZZ_FUZZ_CHECK_H_
