// parley-store-migrate: copies a parley-service store from SQLite to
// PostgreSQL (sqlite_to_pg.h), with no service running on either.
//
//   parley-store-migrate --from=sqlite:///var/lib/parley/parley.db
//       --to=postgres://parley@db:5432/parley   (one line)
//
// Prints what it copied and exits 0; exits 1 when refused or failed (the
// reason on stderr), 2 on bad usage.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "service/sqlite_to_pg.h"
#include "service/store_url.h"

ABSL_FLAG(std::string, from, "",
          "The SQLite store to copy: sqlite:///absolute/path/parley.db. "
          "Required.");
ABSL_FLAG(std::string, to, "",
          "The PostgreSQL database to copy into (empty: no users, groups or "
          "messages): postgres://[user[:password]@]host[:port]/dbname. "
          "Required.");

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "copies a parley-service store from SQLite to PostgreSQL: "
      "parley-store-migrate --from=sqlite:///path/parley.db "
      "--to=postgres://user@host/db");
  absl::ParseCommandLine(argc, argv);
  using parley::service::StoreUrl;
  absl::StatusOr<StoreUrl> from =
      parley::service::ParseStoreUrl(absl::GetFlag(FLAGS_from));
  absl::StatusOr<StoreUrl> to =
      parley::service::ParseStoreUrl(absl::GetFlag(FLAGS_to));
  if (!from.ok() || from->scheme != StoreUrl::Scheme::kSqlite || !to.ok() ||
      to->scheme != StoreUrl::Scheme::kPostgres) {
    std::fprintf(stderr,
                 "parley-store-migrate: --from=sqlite:///path/parley.db and "
                 "--to=postgres://... are required%s%s\n",
                 from.ok() ? "" : "; --from: ",
                 from.ok() ? "" : std::string(from.status().message()).c_str());
    return 2;
  }
  absl::StatusOr<parley::service::MigrationSummary> done =
      parley::service::CopySqliteToPostgres(from->path, to->postgres_url);
  if (!done.ok()) {
    std::fprintf(stderr, "parley-store-migrate: %s\n",
                 done.status().ToString().c_str());
    return 1;
  }
  std::printf(
      "migrated %s to PostgreSQL: %llu users, %llu groups, %llu messages, "
      "%llu inbox entries, generation %s\n",
      from->path.c_str(), static_cast<unsigned long long>(done->users),
      static_cast<unsigned long long>(done->groups),
      static_cast<unsigned long long>(done->messages),
      static_cast<unsigned long long>(done->inbox_entries),
      done->generation.c_str());
  return 0;
}
