// StoreUrl: which Store parley-service runs on, parsed from the --store URL.
//
// Grammar (schemes are case-insensitive):
//
//   sqlite:///absolute/path/parley.db   an SQLite database file; the URL's
//   sqlite:/absolute/path/parley.db     host must be empty, so these two
//                                       name the same file
//   sqlite:relative/path/parley.db      relative to the working directory
//   postgres://... or postgresql://...  the PostgreSQL store (libpq's URL)
//
// An SQLite path is taken literally. '?', '#' and '%' are refused rather
// than read as a query, a fragment or an escape, so that a later version can
// give them a meaning without changing what an accepted URL names; SQLite is
// tuned with the --sqlite_* flags instead. A path ending in '/' names a
// directory and is refused. Error messages never repeat a URL that is not an
// SQLite one: a PostgreSQL URL may carry a password.
//
//   ASSIGN_OR_RETURN(StoreUrl url, ParseStoreUrl("sqlite:///var/lib/p.db"));
//   // url.scheme == StoreUrl::Scheme::kSqlite, url.path == "/var/lib/p.db"
//
// Threading: plain functions and values.
#ifndef PARLEY_SERVICE_STORE_URL_H_
#define PARLEY_SERVICE_STORE_URL_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace parley::service {

struct StoreUrl {
  enum class Scheme { kSqlite, kPostgres };

  Scheme scheme = Scheme::kSqlite;
  // kSqlite: the database file, absolute or relative to the working
  // directory. Empty for kPostgres.
  std::string path;
  // kPostgres: the URL as given, for libpq (it may carry a password: never
  // log it). Empty for kSqlite.
  std::string postgres_url;
};

// Parses a --store URL (see above); INVALID_ARGUMENT saying what is wrong
// and which forms are accepted.
absl::StatusOr<StoreUrl> ParseStoreUrl(absl::string_view url);

// The default store: the SQLite database `<data_dir>/parley.db`.
StoreUrl SqliteInDataDir(const std::string& data_dir);

}  // namespace parley::service

#endif  // PARLEY_SERVICE_STORE_URL_H_
