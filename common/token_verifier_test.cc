#include "common/token_verifier.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley {
namespace {

using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1800000000);

TokenClaims Claims(const std::string& user = "alice") {
  TokenClaims c;
  c.subject = user;
  c.expires_at = kNow + absl::Hours(1);
  return c;
}

std::string B64(absl::string_view bytes) {
  return absl::WebSafeBase64Escape(bytes);
}

// A key pair made by OpenSSL, its public half as a JWK, and tokens it signs
// the way an identity provider would.
class IdpKey {
 public:
  static IdpKey Rsa(const std::string& kid, size_t bits = 2048) {
    return IdpKey(kid, "RS256",
                  EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", bits));
  }
  static IdpKey Ec(const std::string& kid) {
    return IdpKey(kid, "ES256",
                  EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  }

  std::string Jwk() const {
    if (alg_ == "RS256") {
      return absl::StrCat(R"({"kty":"RSA","use":"sig","alg":"RS256","kid":")",
                          kid_, R"(","n":")", B64(Param(OSSL_PKEY_PARAM_RSA_N)),
                          R"(","e":")", B64(Param(OSSL_PKEY_PARAM_RSA_E)),
                          R"("})");
    }
    unsigned char point[65];
    size_t len = 0;
    EXPECT_EQ(
        EVP_PKEY_get_octet_string_param(pkey_.get(), OSSL_PKEY_PARAM_PUB_KEY,
                                        point, sizeof(point), &len),
        1);
    EXPECT_EQ(len, 65u);
    std::string raw(reinterpret_cast<char*>(point), len);
    return absl::StrCat(R"({"kty":"EC","crv":"P-256","kid":")", kid_,
                        R"(","x":")", B64(raw.substr(1, 32)), R"(","y":")",
                        B64(raw.substr(33, 32)), R"("})");
  }

  // A token with these claims (JSON), signed by this key.
  std::string Sign(const std::string& claims_json,
                   const std::string& alg = "") const {
    std::string input = absl::StrCat(
        B64(absl::StrCat(R"({"alg":")", alg.empty() ? alg_ : alg,
                         R"(","typ":"JWT","kid":")", kid_, R"("})")),
        ".", B64(claims_json));
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    size_t len = 0;
    EXPECT_EQ(
        EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, pkey_.get()),
        1);
    EXPECT_EQ(
        EVP_DigestSign(ctx, nullptr, &len,
                       reinterpret_cast<const unsigned char*>(input.data()),
                       input.size()),
        1);
    std::string sig(len, '\0');
    EXPECT_EQ(
        EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                       reinterpret_cast<const unsigned char*>(input.data()),
                       input.size()),
        1);
    sig.resize(len);
    EVP_MD_CTX_free(ctx);
    if (alg_ == "ES256") sig = RawEcdsa(sig);
    return absl::StrCat(input, ".", B64(sig));
  }

 private:
  struct Free {
    void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  };

  IdpKey(std::string kid, std::string alg, EVP_PKEY* pkey)
      : kid_(std::move(kid)), alg_(std::move(alg)), pkey_(pkey, Free()) {
    EXPECT_NE(pkey, nullptr);
  }

  std::string Param(const char* name) const {
    BIGNUM* bn = nullptr;
    EXPECT_EQ(EVP_PKEY_get_bn_param(pkey_.get(), name, &bn), 1);
    std::string out(BN_num_bytes(bn), '\0');
    BN_bn2bin(bn, reinterpret_cast<unsigned char*>(out.data()));
    BN_free(bn);
    return out;
  }

  // JWS wants ECDSA signatures as r || s, not DER.
  static std::string RawEcdsa(const std::string& der) {
    const auto* p = reinterpret_cast<const unsigned char*>(der.data());
    ECDSA_SIG* sig = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size()));
    EXPECT_NE(sig, nullptr);
    unsigned char out[64];
    BN_bn2binpad(ECDSA_SIG_get0_r(sig), out, 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(sig), out + 32, 32);
    ECDSA_SIG_free(sig);
    return std::string(reinterpret_cast<char*>(out), 64);
  }

  std::string kid_;
  std::string alg_;
  std::shared_ptr<EVP_PKEY> pkey_;
};

std::string ClaimsJson(const std::string& extra = "") {
  return absl::StrCat(R"({"sub":"alice","exp":)",
                      absl::ToUnixSeconds(kNow + absl::Hours(1)), extra, "}");
}

class JwksFile {
 public:
  JwksFile() {
    std::string pattern = ::testing::TempDir() + "/jwks.XXXXXX";
    int fd = mkstemp(pattern.data());
    EXPECT_GE(fd, 0);
    close(fd);
    path_ = pattern;
  }
  ~JwksFile() { unlink(path_.c_str()); }

  void WriteKeys(const std::vector<std::string>& jwks) {
    Write(absl::StrCat(R"({"keys":[)", absl::StrJoin(jwks, ","), "]}"));
  }
  void Write(const std::string& text) {
    // A new file (rename) as deploy tools write them, with a new inode and
    // modification time.
    const std::string tmp = path_ + ".new";
    std::ofstream(tmp) << text;
    ASSERT_EQ(rename(tmp.c_str(), path_.c_str()), 0);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::unique_ptr<TokenVerifier> MakeVerifier(TokenVerifierOptions options) {
  absl::StatusOr<std::unique_ptr<TokenVerifier>> v =
      TokenVerifier::Create(std::move(options));
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() ? *std::move(v) : nullptr;
}

TEST(TokenVerifierTest, RotationKeepsOldTokensUntilTheOldKeyIsRemoved) {
  TokenVerifierOptions before;
  before.hmac_keys = {{"2026-11", "old-secret"}};
  before.signing_kid = "2026-11";
  const std::string old_token = MakeVerifier(before)->Mint(Claims());

  // Step 1-2: the new key is added and signs from now on.
  TokenVerifierOptions during = before;
  during.hmac_keys.push_back({"2026-12", "new-secret"});
  during.signing_kid = "2026-12";
  std::unique_ptr<TokenVerifier> v = MakeVerifier(during);
  const std::string new_token = v->Mint(Claims("bob"));
  EXPECT_TRUE(v->Verify(old_token, kNow).ok());
  ASSERT_TRUE(v->Verify(new_token, kNow).ok());
  EXPECT_EQ(v->Verify(new_token, kNow)->subject, "bob");
  std::string header;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(
      std::string(absl::StrSplit(new_token, '.').begin()->data(),
                  new_token.find('.')),
      &header));
  EXPECT_THAT(header, HasSubstr(R"("kid":"2026-12")"));

  // Step 3: the old key is removed.
  TokenVerifierOptions after;
  after.hmac_keys = {{"2026-12", "new-secret"}};
  after.signing_kid = "2026-12";
  v = MakeVerifier(after);
  EXPECT_TRUE(v->Verify(new_token, kNow).ok());
  absl::StatusOr<TokenClaims> refused = v->Verify(old_token, kNow);
  EXPECT_EQ(ClassifyTokenError(refused.status()), TokenError::kUnknownKey);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("\"2026-11\" is not configured (rotated out?)"));
}

TEST(TokenVerifierTest, RotatingThroughTheKeysFileNeedsNoRestart) {
  JwksFile keys;  // Any file: here "KID SECRET" lines.
  keys.Write("# keys\n2026-11 old-secret\n");
  TokenVerifierOptions options;
  options.hmac_keys_path = keys.path();
  options.signing_kid = "2026-11";
  std::unique_ptr<TokenVerifier> v = MakeVerifier(options);
  const std::string old_token = v->Mint(Claims());
  EXPECT_TRUE(v->Verify(old_token, kNow).ok());

  // The new key joins; the signing kid stays until the operator switches.
  keys.Write("2026-11 old-secret\n2026-12 new-secret\n");
  ASSERT_TRUE(*v->ReloadIfChanged());
  EXPECT_TRUE(
      v->Verify(MintToken(Claims(), "new-secret", "2026-12"), kNow).ok());
  // A file that loses the signing key is refused; the old keys stay.
  keys.Write("2026-12 new-secret\n");
  absl::StatusOr<bool> refused = v->ReloadIfChanged();
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("\"2026-11\" names no configured key"));
  EXPECT_TRUE(v->Verify(old_token, kNow).ok());
  EXPECT_EQ(*v->ReloadIfChanged(), false);  // Not again until it changes.
  // A garbled file likewise.
  keys.Write("2026-11\n");
  EXPECT_THAT(std::string(v->ReloadIfChanged().status().message()),
              HasSubstr("line 1"));
  EXPECT_TRUE(v->Verify(old_token, kNow).ok());
}

TEST(TokenVerifierTest, TokensWithoutKidUseTheKidlessKeyOnly) {
  const std::string legacy = MintToken(Claims(), "legacy");
  TokenVerifierOptions options;
  options.hmac_keys = {{"", "legacy"}, {"k2", "other"}};
  EXPECT_TRUE(MakeVerifier(options)->Verify(legacy, kNow).ok());
  // A kid-less token signed with a named key does not verify.
  EXPECT_EQ(ClassifyTokenError(MakeVerifier(options)
                                   ->Verify(MintToken(Claims(), "other"), kNow)
                                   .status()),
            TokenError::kBadSignature);
  options.hmac_keys = {{"k2", "other"}};
  options.signing_kid = "k2";
  EXPECT_EQ(
      ClassifyTokenError(MakeVerifier(options)->Verify(legacy, kNow).status()),
      TokenError::kUnknownKey);
}

TEST(TokenVerifierTest, VerifiesRs256AndEs256FromAJwksFile) {
  IdpKey rsa = IdpKey::Rsa("rsa-1");
  IdpKey ec = IdpKey::Ec("ec-1");
  JwksFile jwks;
  jwks.WriteKeys({rsa.Jwk(), ec.Jwk()});
  TokenVerifierOptions options;
  options.jwks_path = jwks.path();
  std::unique_ptr<TokenVerifier> v = MakeVerifier(options);
  ASSERT_NE(v, nullptr);
  EXPECT_EQ(v->public_key_count(), 2u);

  for (const IdpKey* key : {&rsa, &ec}) {
    const std::string token = key->Sign(ClaimsJson());
    absl::StatusOr<TokenClaims> claims = v->Verify(token, kNow);
    ASSERT_TRUE(claims.ok()) << claims.status();
    EXPECT_EQ(claims->subject, "alice");
    std::string tampered = token;
    tampered[tampered.size() - 5] =
        tampered[tampered.size() - 5] == 'A' ? 'B' : 'A';
    EXPECT_EQ(ClassifyTokenError(v->Verify(tampered, kNow).status()),
              TokenError::kBadSignature);
  }
  // Expiry is checked after the signature, as for HS256.
  EXPECT_EQ(
      ClassifyTokenError(
          v->Verify(rsa.Sign(ClaimsJson()), kNow + absl::Hours(2)).status()),
      TokenError::kExpired);
  // A kid the file does not hold, and an algorithm its key is not for.
  EXPECT_EQ(
      ClassifyTokenError(
          v->Verify(IdpKey::Rsa("rsa-2").Sign(ClaimsJson()), kNow).status()),
      TokenError::kUnknownKey);
  EXPECT_EQ(ClassifyTokenError(
                v->Verify(ec.Sign(ClaimsJson(), "RS256"), kNow).status()),
            TokenError::kBadSignature);
  // No HS256 key is configured: an HS256 token is not accepted at all.
  EXPECT_EQ(ClassifyTokenError(
                v->Verify(MintToken(Claims(), "guess"), kNow).status()),
            TokenError::kUnknownKey);
}

TEST(TokenVerifierTest, IssuerAndAudienceAreCheckedWhenConfigured) {
  IdpKey ec = IdpKey::Ec("ec-1");
  JwksFile jwks;
  jwks.WriteKeys({ec.Jwk()});
  TokenVerifierOptions options;
  options.jwks_path = jwks.path();
  options.issuer = "https://idp.example/realms/chat";
  options.audience = "parley";
  std::unique_ptr<TokenVerifier> v = MakeVerifier(options);
  const std::string iss = R"(,"iss":"https://idp.example/realms/chat")";

  EXPECT_TRUE(
      v->Verify(ec.Sign(ClaimsJson(iss + R"(,"aud":"parley")")), kNow).ok());
  EXPECT_TRUE(
      v->Verify(ec.Sign(ClaimsJson(iss + R"(,"aud":["web","parley"])")), kNow)
          .ok());
  absl::StatusOr<TokenClaims> other_aud =
      v->Verify(ec.Sign(ClaimsJson(iss + R"(,"aud":"billing")")), kNow);
  EXPECT_EQ(ClassifyTokenError(other_aud.status()), TokenError::kNotAccepted);
  EXPECT_THAT(std::string(other_aud.status().message()), HasSubstr("parley"));
  absl::StatusOr<TokenClaims> other_iss = v->Verify(
      ec.Sign(ClaimsJson(R"(,"iss":"https://evil.example","aud":"parley")")),
      kNow);
  EXPECT_EQ(ClassifyTokenError(other_iss.status()), TokenError::kNotAccepted);
  EXPECT_THAT(std::string(other_iss.status().message()),
              HasSubstr("https://evil.example"));
  EXPECT_EQ(ClassifyTokenError(v->Verify(ec.Sign(ClaimsJson()), kNow).status()),
            TokenError::kNotAccepted);
}

TEST(TokenVerifierTest, ReloadPicksUpANewKeyAndKeepsTheOldOnesOnABadFile) {
  IdpKey first = IdpKey::Rsa("first");
  IdpKey second = IdpKey::Ec("second");
  JwksFile jwks;
  jwks.WriteKeys({first.Jwk()});
  TokenVerifierOptions options;
  options.jwks_path = jwks.path();
  std::unique_ptr<TokenVerifier> v = MakeVerifier(options);
  EXPECT_EQ(*v->ReloadIfChanged(), false);
  EXPECT_EQ(
      ClassifyTokenError(v->Verify(second.Sign(ClaimsJson()), kNow).status()),
      TokenError::kUnknownKey);

  jwks.WriteKeys({first.Jwk(), second.Jwk()});
  absl::StatusOr<bool> reloaded = v->ReloadIfChanged();
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_TRUE(*reloaded);
  EXPECT_TRUE(v->Verify(second.Sign(ClaimsJson()), kNow).ok());

  jwks.Write(std::string(R"({"keys":[{"kty":"RSA","kid":"x","n":"AQ")"));
  EXPECT_FALSE(v->ReloadIfChanged().ok());
  EXPECT_TRUE(v->Verify(first.Sign(ClaimsJson()), kNow).ok());
  EXPECT_TRUE(v->Verify(second.Sign(ClaimsJson()), kNow).ok());
  // The bad file is not read again until it changes.
  EXPECT_EQ(*v->ReloadIfChanged(), false);
}

TEST(TokenVerifierTest, RefusesConfigurationsThatCannotWork) {
  auto error = [](TokenVerifierOptions o) {
    absl::StatusOr<std::unique_ptr<TokenVerifier>> v =
        TokenVerifier::Create(std::move(o));
    EXPECT_FALSE(v.ok());
    return std::string(v.status().message());
  };
  EXPECT_THAT(error({}), HasSubstr("no token key"));
  TokenVerifierOptions dup;
  dup.hmac_keys = {{"a", "x"}, {"a", "y"}};
  dup.signing_kid = "a";
  EXPECT_THAT(error(dup), HasSubstr("two token keys have the kid \"a\""));
  TokenVerifierOptions signing;
  signing.hmac_keys = {{"a", "x"}};
  signing.signing_kid = "b";
  EXPECT_THAT(error(signing), HasSubstr("\"b\" names no configured key"));

  JwksFile jwks;
  TokenVerifierOptions short_rsa;
  short_rsa.jwks_path = jwks.path();
  jwks.WriteKeys({IdpKey::Rsa("weak", 1024).Jwk()});
  EXPECT_THAT(error(short_rsa), HasSubstr("too short"));
  jwks.Write("[]");
  EXPECT_THAT(error(short_rsa), HasSubstr("\"keys\" array"));
  jwks.WriteKeys(
      {R"({"kty":"EC","crv":"P-384","kid":"p384","x":"AA","y":"AA"})"});
  EXPECT_THAT(error(short_rsa), HasSubstr("(kid \"p384\"): only EC keys on"));
  // Keys that are not signing keys of ours are skipped.
  jwks.WriteKeys(
      {R"({"kty":"oct","kid":"h","k":"AA"})",
       absl::StrCat(R"({"use":"enc",)", IdpKey::Ec("e").Jwk().substr(1))});
  TokenVerifierOptions skipped;
  skipped.jwks_path = jwks.path();
  EXPECT_EQ(MakeVerifier(skipped)->public_key_count(), 0u);
}

TEST(TokenVerifierTest, ParsesANamedKeysFile) {
  absl::StatusOr<std::vector<HmacKey>> keys =
      ParseHmacKeys("# rotated 2026-12-01\n2026-11 s1\n\n  2026-12\ts2  \n");
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[1].kid, "2026-12");
  EXPECT_EQ((*keys)[1].secret, "s2");
  EXPECT_THAT(std::string(ParseHmacKeys("a b\nonly-one\n").status().message()),
              HasSubstr("line 2"));
}

}  // namespace
}  // namespace parley
