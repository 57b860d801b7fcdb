// libFuzzer target: the client token verifier (common/token_verifier.h over
// common/jwt.h), which parley-service runs on every token a client presents
// (SessionOpen.token, from ?token= or a hello frame). Its key set holds the
// kid-less HS256 key and, from a JWKS file written at start, an RS256 and an
// ES256 public key, so RS256/ES256 headers with those kids reach OpenSSL's
// signature checks with whatever bytes the fuzzer makes.
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
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <memory>
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
#include "common/token_verifier.h"
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

// The public part of a fresh key of `type` as a JWK with `kid`.
std::string Jwk(const char* type, const char* kid) {
  EVP_PKEY* pkey = std::string(type) == "RSA"
                       ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA",
                                           static_cast<size_t>(2048))
                       : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  std::string jwk;
  if (std::string(type) == "RSA") {
    BIGNUM* n = nullptr;
    BIGNUM* e = nullptr;
    EVP_PKEY_get_bn_param(pkey, "n", &n);
    EVP_PKEY_get_bn_param(pkey, "e", &e);
    std::string nb(BN_num_bytes(n), '\0'), eb(BN_num_bytes(e), '\0');
    BN_bn2bin(n, reinterpret_cast<unsigned char*>(nb.data()));
    BN_bn2bin(e, reinterpret_cast<unsigned char*>(eb.data()));
    BN_free(n);
    BN_free(e);
    jwk = absl::StrCat(R"({"kty":"RSA","kid":")", kid, R"(","n":")",
                       absl::WebSafeBase64Escape(nb), R"(","e":")",
                       absl::WebSafeBase64Escape(eb), R"("})");
  } else {
    unsigned char point[65];
    size_t len = 0;
    EVP_PKEY_get_octet_string_param(pkey, "pub", point, sizeof(point), &len);
    const std::string raw(reinterpret_cast<char*>(point), len);
    jwk =
        absl::StrCat(R"({"kty":"EC","crv":"P-256","kid":")", kid, R"(","x":")",
                     absl::WebSafeBase64Escape(raw.substr(1, 32)), R"(","y":")",
                     absl::WebSafeBase64Escape(raw.substr(33, 32)), R"("})");
  }
  EVP_PKEY_free(pkey);
  return jwk;
}

const TokenVerifier& Verifier() {
  static const TokenVerifier* verifier = [] {
    char path[] = "/tmp/jwt_fuzzer_jwks.XXXXXX";
    const int fd = mkstemp(path);
    if (fd < 0) FuzzFail("cannot make the JWKS file");
    close(fd);
    std::ofstream(path) << R"({"keys":[)" << Jwk("RSA", "rsa") << ","
                        << Jwk("EC", "ec") << "]}";
    TokenVerifierOptions options;
    options.hmac_keys = {{"", std::string(kSecret)}};
    options.jwks_path = path;
    absl::StatusOr<std::unique_ptr<TokenVerifier>> v =
        TokenVerifier::Create(options);
    unlink(path);
    if (!v.ok() || (*v)->public_key_count() != 2) {
      FuzzFail(absl::StrCat("the fuzzer's key set: ", v.status().ToString()));
    }
    return v->release();
  }();
  return *verifier;
}

// Verifies `token`; returns the kind of refusal (kNone when accepted).
TokenError Check(absl::string_view token) {
  const absl::StatusOr<TokenClaims> claims = Verifier().Verify(token, Now());
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
  const std::string minted = Verifier().Mint(*claims);
  const absl::StatusOr<TokenClaims> again = Verifier().Verify(minted, Now());
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

// Whether `json` is a header naming HS256 and no kid (the fuzzer's one key),
// read the way the verifier reads it.
bool NamesHs256(absl::string_view json) {
  v1::JwtHeader header;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  return google::protobuf::util::JsonStringToMessage(
             google::protobuf::StringPiece(json.data(), json.size()), &header,
             options)
             .ok() &&
         header.alg() == "HS256" && header.kid().empty();
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
