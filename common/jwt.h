// Client tokens: HS256 JWTs as specified in proto/parley/v1/token.proto.
//
// Used by parley-service to verify the tokens clients present and to mint them
// for the admin API, and by tools (load generator, tests) that mint tokens
// with the shared secret like any backend would.
//
// Verification failures are distinguishable: ClassifyTokenError() tells a
// malformed token from a bad signature from an expired one, so the service
// can reject each with its own reason. Thread-safe: pure functions.
#ifndef PARLEY_COMMON_JWT_H_
#define PARLEY_COMMON_JWT_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace parley {

// What a valid token says.
struct TokenClaims {
  std::string subject;    // The user id (sub).
  absl::Time expires_at;  // exp, whole seconds.
  absl::Time issued_at;   // iat; absl::UnixEpoch() when absent.
  std::string device;     // dev; may be empty.
};

// Why a token was refused.
enum class TokenError {
  kNone,          // Not a token error (OK, or some other status).
  kMalformed,     // Not three base64url parts of the right JSON, or no sub/exp.
  kBadSignature,  // Wrong algorithm or an HMAC that does not match.
  kExpired,       // exp is at or before now.
};

// Mints a token. `secret` must not be empty.
std::string MintToken(const TokenClaims& claims, absl::string_view secret);

// Checks the signature, then the expiry against `now`. Errors carry a
// TokenError (read it with ClassifyTokenError) and a message naming the cause.
absl::StatusOr<TokenClaims> VerifyToken(absl::string_view token,
                                        absl::string_view secret,
                                        absl::Time now);

// The TokenError carried by a VerifyToken() failure; kNone otherwise.
TokenError ClassifyTokenError(const absl::Status& status);

}  // namespace parley

#endif  // PARLEY_COMMON_JWT_H_
