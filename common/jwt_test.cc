#include "common/jwt.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1700000000);

TokenClaims Alice() {
  TokenClaims c;
  c.subject = "alice";
  c.expires_at = kNow + absl::Hours(1);
  c.issued_at = kNow;
  c.device = "laptop";
  return c;
}

// A token with this header and these claims (JSON), signed with OpenSSL
// directly with the secret "k", as another backend would.
std::string SignedWithK(absl::string_view header, absl::string_view claims) {
  const std::string signing_input = absl::WebSafeBase64Escape(header) + "." +
                                    absl::WebSafeBase64Escape(claims);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), "k", 1,
       reinterpret_cast<const unsigned char*>(signing_input.data()),
       signing_input.size(), mac, &len);
  return signing_input + "." +
         absl::WebSafeBase64Escape(
             absl::string_view(reinterpret_cast<char*>(mac), len));
}

TEST(JwtTest, MintedTokenVerifiesWithItsClaims) {
  std::string token = MintToken(Alice(), "s3cret");
  absl::StatusOr<TokenClaims> claims = VerifyToken(token, "s3cret", kNow);
  ASSERT_TRUE(claims.ok()) << claims.status();
  EXPECT_EQ(claims->subject, "alice");
  EXPECT_EQ(claims->device, "laptop");
  EXPECT_EQ(claims->expires_at, kNow + absl::Hours(1));
  EXPECT_EQ(claims->issued_at, kNow);
}

TEST(JwtTest, TokenIsAStandardJwt) {
  std::vector<std::string> parts = absl::StrSplit(MintToken(Alice(), "k"), '.');
  ASSERT_EQ(parts.size(), 3u);
  std::string header, claims;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(parts[0], &header));
  ASSERT_TRUE(absl::WebSafeBase64Unescape(parts[1], &claims));
  EXPECT_THAT(header, HasSubstr(R"("alg":"HS256")"));
  EXPECT_THAT(claims, HasSubstr(R"("sub":"alice")"));
  // NumericDate: a JSON number, not a string.
  EXPECT_THAT(claims, HasSubstr(R"("exp":1700003600)"));
  EXPECT_THAT(claims, HasSubstr(R"("iat":1700000000)"));
  EXPECT_EQ(parts[2].size(), 43u);  // 32 bytes, base64url, unpadded.
}

// A token minted by another backend, signed here with OpenSSL directly:
// exp is a JSON number (as most JWT libraries write it) and there are claims
// Parley does not read.
TEST(JwtTest, AcceptsTokensFromOtherMinters) {
  const std::string token =
      SignedWithK(R"({"typ":"JWT","alg":"HS256"})",
                  R"({"sub":"bob","exp":1700003600,"iss":"x"})");
  absl::StatusOr<TokenClaims> claims = VerifyToken(token, "k", kNow);
  ASSERT_TRUE(claims.ok()) << claims.status();
  EXPECT_EQ(claims->subject, "bob");
  EXPECT_EQ(claims->expires_at, absl::FromUnixSeconds(1700003600));
}

TEST(JwtTest, DistinguishesMalformedBadSignatureAndExpired) {
  std::string good = MintToken(Alice(), "k");

  absl::Status malformed = VerifyToken("not-a-jwt", "k", kNow).status();
  EXPECT_EQ(ClassifyTokenError(malformed), TokenError::kMalformed);

  absl::Status garbage = VerifyToken("a.b!.c", "k", kNow).status();
  EXPECT_EQ(ClassifyTokenError(garbage), TokenError::kMalformed);

  absl::Status bad_sig = VerifyToken(good, "other-secret", kNow).status();
  EXPECT_EQ(ClassifyTokenError(bad_sig), TokenError::kBadSignature);
  EXPECT_THAT(std::string(bad_sig.message()), HasSubstr("signature"));

  absl::Status expired = VerifyToken(good, "k", kNow + absl::Hours(2)).status();
  EXPECT_EQ(ClassifyTokenError(expired), TokenError::kExpired);
  EXPECT_THAT(std::string(expired.message()), HasSubstr("expired"));

  EXPECT_EQ(ClassifyTokenError(absl::OkStatus()), TokenError::kNone);
  EXPECT_EQ(ClassifyTokenError(absl::InternalError("x")), TokenError::kNone);
}

TEST(JwtTest, TamperedClaimsFailTheSignature) {
  std::vector<std::string> parts = absl::StrSplit(MintToken(Alice(), "k"), '.');
  TokenClaims mallory = Alice();
  mallory.subject = "mallory";
  std::vector<std::string> forged =
      absl::StrSplit(MintToken(mallory, "guess"), '.');
  std::string token = parts[0] + "." + forged[1] + "." + parts[2];
  EXPECT_EQ(ClassifyTokenError(VerifyToken(token, "k", kNow).status()),
            TokenError::kBadSignature);
}

TEST(JwtTest, AlgNoneIsRefused) {
  std::string header = absl::WebSafeBase64Escape(R"({"alg":"none"})");
  std::string body =
      absl::WebSafeBase64Escape(R"({"sub":"a","exp":1800000000})");
  absl::Status s = VerifyToken(header + "." + body + ".", "k", kNow).status();
  EXPECT_EQ(ClassifyTokenError(s), TokenError::kBadSignature);
  EXPECT_THAT(std::string(s.message()), HasSubstr("none"));
}

TEST(JwtTest, MissingClaimsAreMalformed) {
  TokenClaims nobody = Alice();
  nobody.subject = "";
  EXPECT_EQ(ClassifyTokenError(
                VerifyToken(MintToken(nobody, "k"), "k", kNow).status()),
            TokenError::kMalformed);
}

// A validly signed token whose dates are not int64 seconds (found by
// common/fuzz/jwt_fuzzer) is malformed, not undefined behaviour.
TEST(JwtTest, DatesOutOfRangeAreMalformed) {
  for (const char* claims : {
           R"({"sub":"a","exp":4.8e93})",
           R"({"sub":"a","exp":-1e19})",
           R"({"sub":"a","exp":"NaN"})",
           R"({"sub":"a","exp":"Infinity"})",
           R"({"sub":"a","exp":1800000000,"iat":1e300})",
       }) {
    absl::Status s =
        VerifyToken(SignedWithK(R"({"alg":"HS256"})", claims), "k", kNow)
            .status();
    EXPECT_EQ(ClassifyTokenError(s), TokenError::kMalformed) << claims;
    EXPECT_THAT(std::string(s.message()), HasSubstr("not a time")) << claims;
  }
}

TEST(JwtTest, ReadsIssuerAndAudienceOfEitherShape) {
  absl::StatusOr<TokenClaims> one = VerifyToken(
      SignedWithK(R"({"alg":"HS256"})",
                  R"({"sub":"a","exp":1800000000,"iss":"idp","aud":"x"})"),
      "k", kNow);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->issuer, "idp");
  EXPECT_THAT(one->audiences, ElementsAre("x"));
  absl::StatusOr<TokenClaims> many = VerifyToken(
      SignedWithK(R"({"alg":"HS256"})",
                  R"({"sub":"a","exp":1800000000,"aud":["x",7,"y"]})"),
      "k", kNow);
  ASSERT_TRUE(many.ok()) << many.status();
  EXPECT_THAT(many->audiences, ElementsAre("x", "y"));
}

TEST(JwtTest, TheSignatureCheckSeesAlgKidAndTheSignedPart) {
  const std::string token = MintToken(Alice(), "k", "key-7");
  TokenHeader seen;
  std::string input;
  absl::StatusOr<TokenClaims> claims = VerifyTokenWith(
      token,
      [&](const TokenHeader& header, absl::string_view signing_input,
          absl::string_view signature) {
        seen = header;
        input = std::string(signing_input);
        return CheckHs256("k", signing_input, signature);
      },
      kNow);
  ASSERT_TRUE(claims.ok()) << claims.status();
  EXPECT_EQ(seen.alg, "HS256");
  EXPECT_EQ(seen.kid, "key-7");
  EXPECT_EQ(input, token.substr(0, token.rfind('.')));
  // What the check refuses is what the caller gets.
  EXPECT_EQ(
      ClassifyTokenError(
          VerifyTokenWith(
              token,
              [](const TokenHeader&, absl::string_view, absl::string_view) {
                return TokenFailure(TokenError::kUnknownKey, "no key");
              },
              kNow)
              .status()),
      TokenError::kUnknownKey);
}

}  // namespace
}  // namespace parley
