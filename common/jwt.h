// Client tokens: JWTs as specified in proto/parley/v1/token.proto.
//
// The parsing and claim checks every token goes through, whatever signed it:
// VerifyTokenWith() splits and decodes the token, hands the header, the
// signing input and the signature to a SignatureCheck (HS256 under a shared
// key here; the key set of common/token_verifier.h adds rotation by kid and
// RS256/ES256 from a JWKS file), then reads the claims and checks the expiry.
// MintToken() makes HS256 tokens, for the admin API and for tools (load
// generator, tests) that mint tokens with a shared key like any backend would.
//
// Verification failures are distinguishable: ClassifyTokenError() tells a
// malformed token from a bad signature from an expired one (and the rest), so
// the service can reject each with its own reason. Thread-safe: pure
// functions.
#ifndef PARLEY_COMMON_JWT_H_
#define PARLEY_COMMON_JWT_H_

#include <functional>
#include <string>
#include <vector>

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
  // iss; may be empty. (Initialised so that callers who list the four
  // fields above in braces need not name these.)
  std::string issuer{};
  // aud: a string or an array of strings in the token; may be empty.
  std::vector<std::string> audiences{};
};

// The header fields a signature check reads.
struct TokenHeader {
  std::string alg;
  std::string kid;  // May be empty.
};

// Why a token was refused.
enum class TokenError {
  kNone,          // Not a token error (OK, or some other status).
  kMalformed,     // Not three base64url parts of the right JSON, or no sub/exp.
  kBadSignature,  // Wrong algorithm or an HMAC that does not match.
  kExpired,       // exp is at or before now.
  kUnknownKey,    // The kid names no configured key (rotated out?).
  kNotAccepted,   // A valid token for another issuer or audience.
};

// An UNAUTHENTICATED status carrying `kind` (see ClassifyTokenError).
absl::Status TokenFailure(TokenError kind, absl::string_view message);

// Checks a token's signature: `signing_input` is "header.claims" as sent,
// `signature` the decoded bytes. OK, or a TokenFailure naming the cause.
using SignatureCheck = std::function<absl::Status(
    const TokenHeader& header, absl::string_view signing_input,
    absl::string_view signature)>;

// The HS256 check under one shared key (constant-time comparison).
absl::Status CheckHs256(absl::string_view secret,
                        absl::string_view signing_input,
                        absl::string_view signature);

// Mints an HS256 token; `kid`, when not empty, goes into the header.
// `secret` must not be empty.
std::string MintToken(const TokenClaims& claims, absl::string_view secret,
                      absl::string_view kid = "");

// Decodes the token, runs `check` on its signature, then reads the claims and
// checks the expiry against `now`. Errors carry a TokenError (read it with
// ClassifyTokenError) and a message naming the cause.
absl::StatusOr<TokenClaims> VerifyTokenWith(absl::string_view token,
                                            const SignatureCheck& check,
                                            absl::Time now);

// VerifyTokenWith() for HS256 under one shared key, whatever the kid.
absl::StatusOr<TokenClaims> VerifyToken(absl::string_view token,
                                        absl::string_view secret,
                                        absl::Time now);

// The TokenError carried by a VerifyToken() failure; kNone otherwise.
TokenError ClassifyTokenError(const absl::Status& status);

}  // namespace parley

#endif  // PARLEY_COMMON_JWT_H_
