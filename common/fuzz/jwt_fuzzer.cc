// libFuzzer target: the client token verifier (common/jwt.h), which
// parley-service runs on every token a client presents (SessionOpen.token,
// from ?token= or a hello frame).
//
// Each input is verified against a fixed secret and clock as it is, and, read
// as "<header JSON>\n<claims JSON>", encoded and signed with the secret, so
// that the fuzzer also reaches the claims behind a valid signature. Each time:
//   * a refusal is UNAUTHENTICATED and ClassifyTokenError names its kind;
//   * an accepted token has a subject, expires after now, and the claims
//     minted again (MintToken) verify to the same claims;
//   * the signed token is never refused for its signature when its header is
//     JSON naming HS256.
// Built and run by tests/fuzz/run.sh (--config=fuzz, clang).
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/fuzz/fuzz_check.h"
#include "common/jwt.h"
#include "google/protobuf/util/json_util.h"
#include "parley/v1/token.pb.h"

namespace parley {
namespace {

constexpr absl::string_view kSecret = "fuzz-secret";

// 2026-01-01T00:00:00Z; the seed corpus's tokens expire in 2100.
absl::Time Now() { return absl::FromUnixSeconds(1767225600); }

std::string Describe(const TokenClaims& c) {
  return absl::StrCat(
      "sub=", c.subject, " exp=", absl::FormatTime(c.expires_at),
      " iat=", absl::FormatTime(c.issued_at), " dev=", c.device);
}

// Verifies `token`; returns the kind of refusal (kNone when accepted).
TokenError Check(absl::string_view token) {
  const absl::StatusOr<TokenClaims> claims = VerifyToken(token, kSecret, Now());
  if (!claims.ok()) {
    const TokenError kind = ClassifyTokenError(claims.status());
    if (claims.status().code() != absl::StatusCode::kUnauthenticated ||
        kind == TokenError::kNone) {
      FuzzFail(absl::StrCat("refused with ", claims.status().ToString(),
                            ", kind ", static_cast<int>(kind)));
    }
    return kind;
  }
  if (claims->subject.empty() || claims->expires_at <= Now()) {
    FuzzFail(absl::StrCat("accepted ", Describe(*claims)));
  }
  const std::string minted = MintToken(*claims, kSecret);
  const absl::StatusOr<TokenClaims> again = VerifyToken(minted, kSecret, Now());
  if (!again.ok() || again->subject != claims->subject ||
      again->expires_at != claims->expires_at ||
      again->issued_at != claims->issued_at ||
      again->device != claims->device) {
    FuzzFail(absl::StrCat(
        "claims ", Describe(*claims), " minted as ", minted, " verify as ",
        again.ok() ? Describe(*again) : again.status().ToString()));
  }
  return TokenError::kNone;
}

std::string HmacSha256(absl::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), kSecret.data(), static_cast<int>(kSecret.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out,
       &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

// Whether `json` is a header naming HS256, read the way the verifier reads it.
bool NamesHs256(absl::string_view json) {
  v1::JwtHeader header;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  return google::protobuf::util::JsonStringToMessage(
             google::protobuf::StringPiece(json.data(), json.size()), &header,
             options)
             .ok() &&
         header.alg() == "HS256";
}

}  // namespace
}  // namespace parley

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  parley::Check(input);
  // The input as "<header JSON>\n<claims JSON>", encoded and signed.
  const std::vector<absl::string_view> json =
      absl::StrSplit(input, absl::MaxSplits('\n', 1));
  if (json.size() < 2) return 0;
  const std::string signing_input =
      absl::StrCat(absl::WebSafeBase64Escape(json[0]), ".",
                   absl::WebSafeBase64Escape(json[1]));
  const std::string token = absl::StrCat(
      signing_input, ".",
      absl::WebSafeBase64Escape(parley::HmacSha256(signing_input)));
  if (parley::Check(token) == parley::TokenError::kBadSignature &&
      parley::NamesHs256(json[0])) {
    parley::FuzzFail(absl::StrCat("the signature of ", token, " was refused"));
  }
  return 0;
}
