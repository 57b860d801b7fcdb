#include "common/token_verifier.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <sys/stat.h>

#include <cassert>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace parley {

// The JWKS file's keys: RSA (RS256) and P-256 (ES256) public keys by kid.
class TokenVerifier::PublicKeys {
 public:
  struct Key {
    std::string alg;  // "RS256" or "ES256".
    EVP_PKEY* pkey = nullptr;
  };

  ~PublicKeys() {
    for (auto& [kid, key] : keys_) EVP_PKEY_free(key.pkey);
  }

  static absl::StatusOr<std::shared_ptr<const PublicKeys>> Parse(
      absl::string_view json, absl::string_view path);

  const Key* Find(absl::string_view kid) const {
    auto it = keys_.find(kid);
    return it == keys_.end() ? nullptr : &it->second;
  }
  size_t size() const { return keys_.size(); }

 private:
  std::map<std::string, Key, std::less<>> keys_;
};

namespace {

struct BnFree {
  void operator()(BIGNUM* bn) const { BN_free(bn); }
};
using Bignum = std::unique_ptr<BIGNUM, BnFree>;

using Jwk = google::protobuf::Struct;

std::string StringMember(const Jwk& jwk, const char* name) {
  auto it = jwk.fields().find(name);
  if (it == jwk.fields().end() || !it->second.has_string_value()) return "";
  return it->second.string_value();
}

// A member of a JWK as raw bytes (base64url in the file).
absl::StatusOr<std::string> Bytes(const Jwk& jwk, const char* name) {
  std::string out;
  if (!absl::WebSafeBase64Unescape(StringMember(jwk, name), &out) ||
      out.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", name, "\" is missing or not base64url"));
  }
  return out;
}

// Builds a public key of `type` ("RSA" or "EC") from OSSL parameters.
absl::StatusOr<EVP_PKEY*> FromParams(const char* type, OSSL_PARAM_BLD* bld) {
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr);
  EVP_PKEY* pkey = nullptr;
  const bool ok =
      params != nullptr && ctx != nullptr && EVP_PKEY_fromdata_init(ctx) == 1 &&
      EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) == 1;
  EVP_PKEY_CTX_free(ctx);
  OSSL_PARAM_free(params);
  if (!ok) {
    EVP_PKEY_free(pkey);
    return absl::InvalidArgumentError("OpenSSL refused the key's parameters");
  }
  return pkey;
}

absl::StatusOr<EVP_PKEY*> RsaKey(const Jwk& jwk) {
  absl::StatusOr<std::string> n = Bytes(jwk, "n");
  if (!n.ok()) return n.status();
  absl::StatusOr<std::string> e = Bytes(jwk, "e");
  if (!e.ok()) return e.status();
  if (n->size() < 256) {
    return absl::InvalidArgumentError(absl::StrCat(
        "an RSA key of ", n->size() * 8, " bits is too short (2048 at least)"));
  }
  Bignum bn_n(BN_bin2bn(reinterpret_cast<const unsigned char*>(n->data()),
                        static_cast<int>(n->size()), nullptr));
  Bignum bn_e(BN_bin2bn(reinterpret_cast<const unsigned char*>(e->data()),
                        static_cast<int>(e->size()), nullptr));
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  absl::StatusOr<EVP_PKEY*> key =
      absl::InvalidArgumentError("OpenSSL refused the key's parameters");
  if (bld != nullptr && bn_n != nullptr && bn_e != nullptr &&
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n.get()) == 1 &&
      OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e.get()) == 1) {
    key = FromParams("RSA", bld);
  }
  OSSL_PARAM_BLD_free(bld);
  return key;
}

absl::StatusOr<EVP_PKEY*> EcKey(const Jwk& jwk) {
  if (StringMember(jwk, "crv") != "P-256") {
    return absl::InvalidArgumentError("only EC keys on P-256 are supported");
  }
  absl::StatusOr<std::string> x = Bytes(jwk, "x");
  if (!x.ok()) return x.status();
  absl::StatusOr<std::string> y = Bytes(jwk, "y");
  if (!y.ok()) return y.status();
  if (x->size() != 32 || y->size() != 32) {
    return absl::InvalidArgumentError("a P-256 x or y is not 32 bytes");
  }
  std::string point = absl::StrCat("\x04", *x, *y);
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  absl::StatusOr<EVP_PKEY*> key =
      absl::InvalidArgumentError("OpenSSL refused the key's parameters");
  if (bld != nullptr &&
      OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME,
                                      "prime256v1", 0) == 1 &&
      OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY,
                                       point.data(), point.size()) == 1) {
    key = FromParams("EC", bld);
  }
  OSSL_PARAM_BLD_free(bld);
  return key;
}

// Verifies `signature` over `data` with SHA-256 under `pkey`, in the form
// OpenSSL takes (DER for ECDSA).
bool DigestVerify(EVP_PKEY* pkey, absl::string_view data,
                  absl::string_view signature) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  const bool ok =
      ctx != nullptr &&
      EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, pkey) == 1 &&
      EVP_DigestVerify(
          ctx, reinterpret_cast<const unsigned char*>(signature.data()),
          signature.size(), reinterpret_cast<const unsigned char*>(data.data()),
          data.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

// A JWS ES256 signature (r || s, 32 bytes each) as DER; empty if malformed.
std::string EcdsaDer(absl::string_view raw) {
  if (raw.size() != 64) return "";
  const auto* bytes = reinterpret_cast<const unsigned char*>(raw.data());
  ECDSA_SIG* sig = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(bytes, 32, nullptr);
  BIGNUM* s = BN_bin2bn(bytes + 32, 32, nullptr);
  std::string der;
  if (sig != nullptr && r != nullptr && s != nullptr &&
      ECDSA_SIG_set0(sig, r, s) == 1) {
    r = s = nullptr;  // Owned by sig now.
    unsigned char* out = nullptr;
    const int len = i2d_ECDSA_SIG(sig, &out);
    if (len > 0) der.assign(reinterpret_cast<char*>(out), len);
    OPENSSL_free(out);
  }
  BN_free(r);
  BN_free(s);
  ECDSA_SIG_free(sig);
  return der;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read ", path));
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

// (modification time in ns, size) of `path`; (-1, -1) if it cannot be read.
std::pair<int64_t, int64_t> Stamp(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return {-1, -1};
  return {
      static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
      static_cast<int64_t>(st.st_size)};
}

}  // namespace

absl::StatusOr<std::shared_ptr<const TokenVerifier::PublicKeys>>
TokenVerifier::PublicKeys::Parse(absl::string_view json,
                                 absl::string_view path) {
  google::protobuf::Struct doc;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  const google::protobuf::ListValue* keys = nullptr;
  if (google::protobuf::util::JsonStringToMessage(
          google::protobuf::StringPiece(json.data(), json.size()), &doc,
          options)
          .ok()) {
    auto it = doc.fields().find("keys");
    if (it != doc.fields().end() && it->second.has_list_value()) {
      keys = &it->second.list_value();
    }
  }
  if (keys == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the JWKS file ", path, " is not a JSON object with a \"keys\" array"));
  }
  auto out = std::make_shared<PublicKeys>();
  int index = 0;
  for (const google::protobuf::Value& value : keys->values()) {
    ++index;
    if (!value.has_struct_value()) continue;
    const Jwk& jwk = value.struct_value();
    const std::string kty = StringMember(jwk, "kty");
    const std::string use = StringMember(jwk, "use");
    if ((kty != "RSA" && kty != "EC") || (!use.empty() && use != "sig")) {
      continue;  // Other kinds of keys (encryption keys, oct) are not ours.
    }
    const std::string kid = StringMember(jwk, "kid");
    const std::string alg = kty == "RSA" ? "RS256" : "ES256";
    const std::string declared = StringMember(jwk, "alg");
    absl::StatusOr<EVP_PKEY*> pkey =
        kid.empty() ? absl::InvalidArgumentError("it has no \"kid\"")
        : !declared.empty() && declared != alg
            ? absl::InvalidArgumentError(
                  absl::StrCat("its alg \"", declared, "\" is not ", alg))
        : kty == "RSA" ? RsaKey(jwk)
                       : EcKey(jwk);
    if (!pkey.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the JWKS file ", path, ": key ", index,
                       kid.empty() ? "" : absl::StrCat(" (kid \"", kid, "\")"),
                       ": ", pkey.status().message()));
    }
    Key& key = out->keys_[kid];
    if (key.pkey != nullptr) {
      EVP_PKEY_free(*pkey);
      return absl::InvalidArgumentError(absl::StrCat(
          "the JWKS file ", path, " has two keys with kid \"", kid, "\""));
    }
    key.alg = alg;
    key.pkey = *pkey;
  }
  return std::shared_ptr<const PublicKeys>(std::move(out));
}

absl::StatusOr<std::vector<HmacKey>> ParseHmacKeys(absl::string_view text) {
  std::vector<HmacKey> keys;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    if (fields.size() != 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("line ", line_no, ": want \"KID SECRET\", got ",
                       fields.size(), " fields"));
    }
    keys.push_back({std::string(fields[0]), std::string(fields[1])});
  }
  return keys;
}

// Every key in force at one time; replaced whole by a reload.
struct TokenVerifier::Keys {
  std::map<std::string, std::string, std::less<>> hmac;  // kid -> secret.
  std::string signing_secret;
  std::shared_ptr<const PublicKeys> jwks;
  // What the files looked like when read.
  std::pair<int64_t, int64_t> keys_stamp = {-1, -1};
  std::pair<int64_t, int64_t> jwks_stamp = {-1, -1};
};

TokenVerifier::TokenVerifier(TokenVerifierOptions options)
    : options_(std::move(options)) {}

TokenVerifier::~TokenVerifier() = default;

absl::StatusOr<std::shared_ptr<const TokenVerifier::Keys>> TokenVerifier::Load()
    const {
  auto keys = std::make_shared<Keys>();
  std::vector<HmacKey> hmac = options_.hmac_keys;
  if (!options_.hmac_keys_path.empty()) {
    keys->keys_stamp = Stamp(options_.hmac_keys_path);
    absl::StatusOr<std::string> text = ReadFile(options_.hmac_keys_path);
    if (!text.ok()) return text.status();
    absl::StatusOr<std::vector<HmacKey>> named = ParseHmacKeys(*text);
    if (!named.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the token keys file ", options_.hmac_keys_path, ": ",
                       named.status().message()));
    }
    hmac.insert(hmac.end(), named->begin(), named->end());
  }
  for (const HmacKey& key : hmac) {
    if (key.secret.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("the token key \"", key.kid, "\" is empty"));
    }
    if (!keys->hmac.emplace(key.kid, key.secret).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("two token keys have the kid \"", key.kid, "\""));
    }
  }
  if (!keys->hmac.empty()) {
    auto signing = keys->hmac.find(options_.signing_kid);
    if (signing == keys->hmac.end()) {
      return absl::InvalidArgumentError(
          options_.signing_kid.empty()
              ? "--token_signing_kid must name one of the keys of "
                "--token_keys_file when --token_secret is not set"
              : absl::StrCat("--token_signing_kid \"", options_.signing_kid,
                             "\" names no configured key"));
    }
    keys->signing_secret = signing->second;
  }
  if (!options_.jwks_path.empty()) {
    keys->jwks_stamp = Stamp(options_.jwks_path);
    absl::StatusOr<std::string> json = ReadFile(options_.jwks_path);
    if (!json.ok()) return json.status();
    absl::StatusOr<std::shared_ptr<const PublicKeys>> jwks =
        PublicKeys::Parse(*json, options_.jwks_path);
    if (!jwks.ok()) return jwks.status();
    keys->jwks = *std::move(jwks);
  }
  if (keys->hmac.empty() && keys->jwks == nullptr) {
    return absl::InvalidArgumentError(
        "no token key: set --token_secret, --token_keys_file or "
        "--token_jwks_file");
  }
  return std::shared_ptr<const Keys>(std::move(keys));
}

std::shared_ptr<const TokenVerifier::Keys> TokenVerifier::Current() const {
  absl::MutexLock lock(&mu_);
  return keys_;
}

absl::StatusOr<std::unique_ptr<TokenVerifier>> TokenVerifier::Create(
    TokenVerifierOptions options) {
  std::unique_ptr<TokenVerifier> v(new TokenVerifier(std::move(options)));
  absl::StatusOr<std::shared_ptr<const Keys>> keys = v->Load();
  if (!keys.ok()) return keys.status();
  {
    absl::MutexLock lock(&v->mu_);
    v->keys_ = *std::move(keys);
  }
  return v;
}

std::unique_ptr<TokenVerifier> TokenVerifier::WithSecret(std::string secret) {
  assert(!secret.empty());
  TokenVerifierOptions options;
  options.hmac_keys = {{"", std::move(secret)}};
  return *Create(std::move(options));
}

std::string TokenVerifier::Mint(const TokenClaims& claims) const {
  return MintToken(claims, Current()->signing_secret, options_.signing_kid);
}

bool TokenVerifier::CanMint() const {
  return !Current()->signing_secret.empty();
}

absl::Status TokenVerifier::CheckSignature(const TokenHeader& header,
                                           absl::string_view signing_input,
                                           absl::string_view signature) const {
  const std::shared_ptr<const Keys> keys = Current();
  if (header.alg == "HS256") {
    auto key = keys->hmac.find(header.kid);
    if (key == keys->hmac.end()) {
      return TokenFailure(
          TokenError::kUnknownKey,
          header.kid.empty()
              ? "token has no kid and no key without one is configured"
              : absl::StrCat("token key \"", header.kid,
                             "\" is not configured (rotated out?)"));
    }
    return CheckHs256(key->second, signing_input, signature);
  }
  if (header.alg != "RS256" && header.alg != "ES256") {
    return TokenFailure(TokenError::kBadSignature,
                        absl::StrCat("token algorithm \"", header.alg,
                                     "\" is not HS256, RS256 or ES256"));
  }
  const PublicKeys::Key* key =
      keys->jwks == nullptr ? nullptr : keys->jwks->Find(header.kid);
  if (key == nullptr) {
    return TokenFailure(
        TokenError::kUnknownKey,
        absl::StrCat("token key \"", header.kid, "\" is not in the JWKS file"));
  }
  if (key->alg != header.alg) {
    return TokenFailure(
        TokenError::kBadSignature,
        absl::StrCat("token algorithm ", header.alg, " does not match key \"",
                     header.kid, "\" (", key->alg, ")"));
  }
  const bool ok =
      header.alg == "RS256"
          ? DigestVerify(key->pkey, signing_input, signature)
          : DigestVerify(key->pkey, signing_input, EcdsaDer(signature));
  if (!ok) {
    return TokenFailure(TokenError::kBadSignature,
                        "token signature does not match");
  }
  return absl::OkStatus();
}

absl::StatusOr<TokenClaims> TokenVerifier::Verify(absl::string_view token,
                                                  absl::Time now) const {
  absl::StatusOr<TokenClaims> claims = VerifyTokenWith(
      token,
      [this](const TokenHeader& header, absl::string_view signing_input,
             absl::string_view signature) {
        return CheckSignature(header, signing_input, signature);
      },
      now);
  if (!claims.ok()) return claims;
  if (!options_.issuer.empty() && claims->issuer != options_.issuer) {
    return TokenFailure(TokenError::kNotAccepted,
                        absl::StrCat("token issuer \"", claims->issuer,
                                     "\" is not \"", options_.issuer, "\""));
  }
  if (!options_.audience.empty() &&
      std::find(claims->audiences.begin(), claims->audiences.end(),
                options_.audience) == claims->audiences.end()) {
    return TokenFailure(TokenError::kNotAccepted,
                        absl::StrCat("token audience does not include \"",
                                     options_.audience, "\""));
  }
  return claims;
}

absl::Status TokenVerifier::Reload() {
  absl::StatusOr<std::shared_ptr<const Keys>> keys = Load();
  if (!keys.ok()) return keys.status();
  absl::MutexLock lock(&mu_);
  keys_ = *std::move(keys);
  return absl::OkStatus();
}

absl::StatusOr<bool> TokenVerifier::ReloadIfChanged() {
  std::pair<int64_t, int64_t> keys_stamp, jwks_stamp;
  {
    absl::MutexLock lock(&mu_);
    // A file that failed to load is not read again until it changes.
    keys_stamp =
        failed_keys_stamp_.first >= 0 ? failed_keys_stamp_ : keys_->keys_stamp;
    jwks_stamp =
        failed_jwks_stamp_.first >= 0 ? failed_jwks_stamp_ : keys_->jwks_stamp;
  }
  const bool changed =
      (!options_.hmac_keys_path.empty() &&
       Stamp(options_.hmac_keys_path) != keys_stamp) ||
      (!options_.jwks_path.empty() && Stamp(options_.jwks_path) != jwks_stamp);
  if (!changed) return false;
  absl::Status loaded = Reload();
  absl::MutexLock lock(&mu_);
  if (!loaded.ok()) {
    failed_keys_stamp_ = options_.hmac_keys_path.empty()
                             ? failed_keys_stamp_
                             : Stamp(options_.hmac_keys_path);
    failed_jwks_stamp_ = options_.jwks_path.empty() ? failed_jwks_stamp_
                                                    : Stamp(options_.jwks_path);
    return loaded;
  }
  failed_keys_stamp_ = failed_jwks_stamp_ = {-1, -1};
  return true;
}

size_t TokenVerifier::public_key_count() const {
  const std::shared_ptr<const Keys> keys = Current();
  return keys->jwks == nullptr ? 0 : keys->jwks->size();
}

}  // namespace parley
