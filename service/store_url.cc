#include "service/store_url.h"

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace parley::service {
namespace {

constexpr absl::string_view kAccepted =
    "accepted: sqlite:///absolute/path/parley.db, "
    "sqlite:relative/path/parley.db, postgres://...";

absl::StatusOr<StoreUrl> ParseSqlite(absl::string_view url,
                                     absl::string_view rest) {
  if (absl::StartsWith(rest, "//")) {
    rest.remove_prefix(2);
    if (!rest.empty() && rest.front() != '/') {
      return absl::InvalidArgumentError(absl::StrCat(
          "store URL \"", url,
          "\" names a host; an SQLite database is a local file: "
          "sqlite:///absolute/path/parley.db or sqlite:relative/path"));
    }
  }
  if (rest.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("store URL \"", url, "\" names no database file"));
  }
  if (rest.find_first_of("?#%") != absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "store URL \"", url,
        "\" contains '?', '#' or '%', which are reserved (no query "
        "parameters: tune SQLite with the --sqlite_* flags)"));
  }
  if (absl::EndsWith(rest, "/")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "store URL \"", url,
        "\" names a directory; name the database file in it, e.g. ", url,
        "parley.db"));
  }
  return StoreUrl{StoreUrl::Scheme::kSqlite, std::string(rest), ""};
}

}  // namespace

absl::StatusOr<StoreUrl> ParseStoreUrl(absl::string_view url) {
  const size_t colon = url.find(':');
  // A scheme is letters, digits, '+', '-' and '.' after a letter (RFC 3986);
  // a colon after a '/' is part of a path.
  if (url.empty() || colon == absl::string_view::npos || colon == 0 ||
      url.substr(0, colon).find('/') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("store URL \"", url, "\" has no scheme; ", kAccepted));
  }
  const std::string scheme = absl::AsciiStrToLower(url.substr(0, colon));
  const absl::string_view rest = url.substr(colon + 1);
  if (scheme == "sqlite") return ParseSqlite(url, rest);
  if (scheme == "postgres" || scheme == "postgresql") {
    if (!absl::StartsWith(rest, "//")) {
      return absl::InvalidArgumentError(
          "a PostgreSQL store URL is postgres://[user@]host[:port]/dbname");
    }
    return StoreUrl{StoreUrl::Scheme::kPostgres, "", std::string(url)};
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "store URL scheme \"", scheme, "\" is not supported; ", kAccepted));
}

StoreUrl SqliteInDataDir(const std::string& data_dir) {
  return StoreUrl{StoreUrl::Scheme::kSqlite, data_dir + "/parley.db", ""};
}

}  // namespace parley::service
