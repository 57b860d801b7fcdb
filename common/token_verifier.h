// TokenVerifier: the keys parley-service accepts client tokens under, and
// the one it signs new tokens with.
//
//   * HS256 shared keys, by kid: the kid-less key (--token_secret) for tokens
//     without a kid, and named keys (a keys file, --token_keys_file) for
//     tokens whose header names one. Several keys at once is what makes
//     rotation possible: add the new key, sign with it (signing_kid), and
//     remove the old one once the tokens it signed have expired
//     (docs/operators.md gives the steps). A token signed with a key that is
//     no longer configured is refused as kUnknownKey, with a message saying
//     so.
//   * RS256 and ES256 (P-256) public keys from a JWKS file (RFC 7517), by kid:
//     the tokens an identity provider mints.
//   * Both files are read again by ReloadIfChanged() (a file's modification
//     time or size changed) and Reload(); a reload that fails (a file that no
//     longer parses, a signing kid it no longer holds) keeps every key read
//     last, and says why.
//   * issuer / audience: when set, a token's iss must equal the issuer and its
//     aud must contain the audience (kNotAccepted otherwise), whatever signed
//     it.
//
//   TokenVerifierOptions options;
//   options.hmac_keys = {{"", "legacy-secret"}, {"2026-12", "new-secret"}};
//   options.signing_kid = "2026-12";
//   ASSIGN_OR_RETURN(std::unique_ptr<TokenVerifier> verifier,
//                    TokenVerifier::Create(options));
//   absl::StatusOr<TokenClaims> claims = verifier->Verify(token, absl::Now());
//
// Threading: thread-safe. Verify() and Mint() never block on I/O; Reload()
// and ReloadIfChanged() read the JWKS file and swap the key set atomically.
#ifndef PARLEY_COMMON_TOKEN_VERIFIER_H_
#define PARLEY_COMMON_TOKEN_VERIFIER_H_

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/jwt.h"

namespace parley {

// One HS256 shared key; `kid` empty for the key of tokens without a kid.
struct HmacKey {
  std::string kid;
  std::string secret;
};

struct TokenVerifierOptions {
  // HS256 keys given directly (the kid-less --token_secret).
  std::vector<HmacKey> hmac_keys;
  // A file of more HS256 keys, "KID SECRET" per line (see ParseHmacKeys);
  // empty for none. Kids are unique across both; secrets not empty.
  std::string hmac_keys_path;
  // The kid of the key Mint() signs with; must name an HS256 key ("" = the
  // kid-less key) when there is any.
  std::string signing_kid;
  // A JWKS file of RS256/ES256 public keys; empty for none.
  std::string jwks_path;
  // Required iss and aud; empty = not checked.
  std::string issuer;
  std::string audience;
};

// Parses a named-keys file: one key per line, "KID SECRET" (whitespace
// between), blank lines and lines starting with '#' ignored. INVALID_ARGUMENT
// naming the line otherwise.
absl::StatusOr<std::vector<HmacKey>> ParseHmacKeys(absl::string_view text);

class TokenVerifier final {
 public:
  // INVALID_ARGUMENT naming the problem (no key at all, a duplicate kid, a
  // signing kid that names no key, a JWKS file that does not parse).
  static absl::StatusOr<std::unique_ptr<TokenVerifier>> Create(
      TokenVerifierOptions options);
  // The verifier of one kid-less HS256 key (`secret` not empty).
  static std::unique_ptr<TokenVerifier> WithSecret(std::string secret);
  ~TokenVerifier();

  TokenVerifier(const TokenVerifier&) = delete;
  TokenVerifier& operator=(const TokenVerifier&) = delete;

  // The token's claims when a configured key verifies it, it has not
  // expired at `now`, and its issuer and audience are the configured ones.
  absl::StatusOr<TokenClaims> Verify(absl::string_view token,
                                     absl::Time now) const;

  // An HS256 token signed with the signing key (its kid in the header).
  // Only when CanMint() (there is an HS256 key).
  std::string Mint(const TokenClaims& claims) const;
  bool CanMint() const;

  // Reads both files again. On error the keys read last stay in force.
  absl::Status Reload();
  // Reload() when a file's modification time or size changed since it was
  // last read; returns whether it reloaded. A file that failed is not read
  // again until it changes again.
  absl::StatusOr<bool> ReloadIfChanged();

  // Public keys in force (for logs and tests).
  size_t public_key_count() const;

  class PublicKeys;  // Parsed JWKS: EVP_PKEYs by kid.

 private:
  struct Keys;

  explicit TokenVerifier(TokenVerifierOptions options);

  // Reads and checks every key of the options and files.
  absl::StatusOr<std::shared_ptr<const Keys>> Load() const;
  std::shared_ptr<const Keys> Current() const;

  absl::Status CheckSignature(const TokenHeader& header,
                              absl::string_view signing_input,
                              absl::string_view signature) const;

  const TokenVerifierOptions options_;

  mutable absl::Mutex mu_;
  std::shared_ptr<const Keys> keys_ ABSL_GUARDED_BY(mu_);
  // The files as they were when they last failed to load ({-1, -1}: they
  // did not).
  std::pair<int64_t, int64_t> failed_keys_stamp_ ABSL_GUARDED_BY(mu_) = {-1,
                                                                         -1};
  std::pair<int64_t, int64_t> failed_jwks_stamp_ ABSL_GUARDED_BY(mu_) = {-1,
                                                                         -1};
};

}  // namespace parley

#endif  // PARLEY_COMMON_TOKEN_VERIFIER_H_
