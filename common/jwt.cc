#include "common/jwt.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <optional>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "parley/v1/token.pb.h"

namespace parley {
namespace {

constexpr absl::string_view kTokenErrorUrl = "type.parley.dev/token-error";

std::string Hmac(absl::string_view secret, absl::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out,
       &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &json, options);
  return json;
}

// A NumericDate claim (seconds since the epoch, possibly fractional) as a
// time, truncated to whole seconds; nullopt when it is not a finite number
// of seconds within int64 (NaN and Infinity are valid JSON for a double).
std::optional<absl::Time> NumericDate(double seconds) {
  constexpr double kLimit = 9223372036854775808.0;  // 2^63, exact.
  if (!(seconds >= -kLimit && seconds < kLimit)) return std::nullopt;
  return absl::FromUnixSeconds(static_cast<int64_t>(seconds));
}

bool FromJson(absl::string_view json, google::protobuf::Message* m) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  return google::protobuf::util::JsonStringToMessage(
             google::protobuf::StringPiece(json.data(), json.size()), m,
             options)
      .ok();
}

// The aud claim: a string or an array of strings (RFC 7519 4.1.3); empty
// when absent or of neither shape.
std::vector<std::string> Audiences(absl::string_view claims_json) {
  std::vector<std::string> out;
  google::protobuf::Struct doc;
  if (!FromJson(claims_json, &doc)) return out;
  auto aud = doc.fields().find("aud");
  if (aud == doc.fields().end()) return out;
  if (aud->second.has_string_value()) {
    out.push_back(aud->second.string_value());
  } else if (aud->second.has_list_value()) {
    for (const google::protobuf::Value& v : aud->second.list_value().values()) {
      if (v.has_string_value()) out.push_back(v.string_value());
    }
  }
  return out;
}

}  // namespace

absl::Status TokenFailure(TokenError kind, absl::string_view message) {
  absl::Status status = absl::UnauthenticatedError(message);
  status.SetPayload(kTokenErrorUrl,
                    absl::Cord(absl::StrCat(static_cast<int>(kind))));
  return status;
}

absl::Status CheckHs256(absl::string_view secret,
                        absl::string_view signing_input,
                        absl::string_view signature) {
  const std::string expected = Hmac(secret, signing_input);
  if (signature.size() != expected.size() ||
      CRYPTO_memcmp(signature.data(), expected.data(), expected.size()) != 0) {
    return TokenFailure(TokenError::kBadSignature,
                        "token signature does not match");
  }
  return absl::OkStatus();
}

std::string MintToken(const TokenClaims& claims, absl::string_view secret,
                      absl::string_view kid) {
  v1::JwtHeader header;
  header.set_alg("HS256");
  header.set_typ("JWT");
  header.set_kid(std::string(kid));
  v1::TokenClaims body;
  body.set_sub(claims.subject);
  body.set_exp(static_cast<double>(absl::ToUnixSeconds(claims.expires_at)));
  if (claims.issued_at != absl::UnixEpoch()) {
    body.set_iat(static_cast<double>(absl::ToUnixSeconds(claims.issued_at)));
  }
  body.set_dev(claims.device);
  std::string signing_input =
      absl::StrCat(absl::WebSafeBase64Escape(ToJson(header)), ".",
                   absl::WebSafeBase64Escape(ToJson(body)));
  return absl::StrCat(signing_input, ".",
                      absl::WebSafeBase64Escape(Hmac(secret, signing_input)));
}

absl::StatusOr<TokenClaims> VerifyToken(absl::string_view token,
                                        absl::string_view secret,
                                        absl::Time now) {
  return VerifyTokenWith(
      token,
      [secret](const TokenHeader& header, absl::string_view signing_input,
               absl::string_view signature) {
        if (header.alg != "HS256") {
          return TokenFailure(TokenError::kBadSignature,
                              absl::StrCat("token algorithm \"", header.alg,
                                           "\" is not HS256"));
        }
        return CheckHs256(secret, signing_input, signature);
      },
      now);
}

absl::StatusOr<TokenClaims> VerifyTokenWith(absl::string_view token,
                                            const SignatureCheck& check,
                                            absl::Time now) {
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  if (parts.size() != 3) {
    return TokenFailure(TokenError::kMalformed,
                        "token is not a JWT (want header.claims.signature)");
  }
  std::string header_json, claims_json, signature;
  if (!absl::WebSafeBase64Unescape(parts[0], &header_json) ||
      !absl::WebSafeBase64Unescape(parts[1], &claims_json) ||
      !absl::WebSafeBase64Unescape(parts[2], &signature)) {
    return TokenFailure(TokenError::kMalformed, "token is not base64url");
  }
  v1::JwtHeader header;
  if (!FromJson(header_json, &header)) {
    return TokenFailure(TokenError::kMalformed, "token header is not JSON");
  }
  TokenHeader fields;
  fields.alg = header.alg();
  fields.kid = header.kid();
  if (absl::Status signed_ok = check(
          fields,
          absl::string_view(token.data(), parts[2].data() - token.data() - 1),
          signature);
      !signed_ok.ok()) {
    return signed_ok;
  }
  v1::TokenClaims body;
  if (!FromJson(claims_json, &body)) {
    return TokenFailure(TokenError::kMalformed, "token claims are not JSON");
  }
  if (body.sub().empty()) {
    return TokenFailure(TokenError::kMalformed, "token has no sub claim");
  }
  if (body.exp() == 0) {
    return TokenFailure(TokenError::kMalformed, "token has no exp claim");
  }
  const std::optional<absl::Time> expires_at = NumericDate(body.exp());
  const std::optional<absl::Time> issued_at = NumericDate(body.iat());
  if (!expires_at.has_value() || !issued_at.has_value()) {
    return TokenFailure(TokenError::kMalformed,
                        "token exp or iat claim is not a time in range");
  }
  TokenClaims claims;
  claims.subject = body.sub();
  claims.expires_at = *expires_at;
  claims.issued_at = *issued_at;
  claims.device = body.dev();
  claims.issuer = body.iss();
  claims.audiences = Audiences(claims_json);
  if (claims.expires_at <= now) {
    return TokenFailure(
        TokenError::kExpired,
        absl::StrCat("token expired at ",
                     absl::FormatTime(absl::RFC3339_sec, claims.expires_at,
                                      absl::UTCTimeZone())));
  }
  return claims;
}

TokenError ClassifyTokenError(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kTokenErrorUrl);
  if (!payload.has_value()) return TokenError::kNone;
  int kind = 0;
  if (!absl::SimpleAtoi(std::string(*payload), &kind)) return TokenError::kNone;
  return static_cast<TokenError>(kind);
}

}  // namespace parley
