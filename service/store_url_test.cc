#include "service/store_url.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::service {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

std::string ErrorOf(absl::string_view url) {
  absl::StatusOr<StoreUrl> parsed = ParseStoreUrl(url);
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument) << url;
  return std::string(parsed.status().message());
}

TEST(StoreUrlTest, SqliteUrlsNameTheFileLiterally) {
  for (const auto& [url, path] :
       {std::pair<const char*, const char*>{"sqlite:///var/lib/parley/p.db",
                                            "/var/lib/parley/p.db"},
        {"sqlite:/var/lib/parley/p.db", "/var/lib/parley/p.db"},
        {"SQLite:///x.db", "/x.db"},
        {"sqlite:data/parley.db", "data/parley.db"},
        {"sqlite:./parley.db", "./parley.db"},
        {"sqlite:parley.db", "parley.db"},
        {"sqlite:////double/slash.db", "//double/slash.db"},
        {"sqlite:///with space/and:colon.db", "/with space/and:colon.db"}}) {
    absl::StatusOr<StoreUrl> parsed = ParseStoreUrl(url);
    ASSERT_TRUE(parsed.ok()) << url << ": " << parsed.status();
    EXPECT_EQ(parsed->scheme, StoreUrl::Scheme::kSqlite) << url;
    EXPECT_EQ(parsed->path, path) << url;
  }
}

TEST(StoreUrlTest, PostgresUrlsAreRecognised) {
  for (const char* url : {"postgres://parley@db:5432/parley",
                          "postgresql://db/parley", "POSTGRES://db/parley"}) {
    absl::StatusOr<StoreUrl> parsed = ParseStoreUrl(url);
    ASSERT_TRUE(parsed.ok()) << url << ": " << parsed.status();
    EXPECT_EQ(parsed->scheme, StoreUrl::Scheme::kPostgres) << url;
    EXPECT_EQ(parsed->postgres_url, url);  // Handed to libpq as given.
  }
  EXPECT_THAT(ErrorOf("postgres:parley"),
              HasSubstr("postgres://[user@]host[:port]/dbname"));
}

TEST(StoreUrlTest, UrlWithoutSchemeNamesTheAcceptedForms) {
  for (const char* url :
       {"", "/var/lib/parley.db", "data/parley.db", ":memory:", "./a:b.db"}) {
    EXPECT_THAT(ErrorOf(url),
                AllOf(HasSubstr("has no scheme"),
                      HasSubstr("sqlite:///absolute/path/parley.db"),
                      HasSubstr("sqlite:relative/path/parley.db"),
                      HasSubstr("postgres://")))
        << url;
  }
}

TEST(StoreUrlTest, UnknownSchemeIsNamedWithoutTheRestOfTheUrl) {
  const std::string error = ErrorOf("mysql://root:hunter2@db/parley");
  EXPECT_THAT(error, HasSubstr("scheme \"mysql\" is not supported"));
  EXPECT_THAT(error, HasSubstr("accepted: sqlite:///absolute/path/parley.db"));
  EXPECT_THAT(error, Not(HasSubstr("hunter2")));
  EXPECT_THAT(ErrorOf("file:///var/lib/parley.db"),
              HasSubstr("scheme \"file\" is not supported"));
}

TEST(StoreUrlTest, SqliteUrlWithAHostIsRefused) {
  EXPECT_THAT(ErrorOf("sqlite://localhost/var/lib/parley.db"),
              HasSubstr("names a host; an SQLite database is a local file"));
  EXPECT_THAT(ErrorOf("sqlite://parley.db"), HasSubstr("names a host"));
}

TEST(StoreUrlTest, SqliteUrlWithoutAFileIsRefused) {
  for (const char* url : {"sqlite:", "sqlite://"}) {
    EXPECT_THAT(ErrorOf(url), HasSubstr("names no database file")) << url;
  }
  for (const char* url : {"sqlite:///var/lib/parley/", "sqlite:data/"}) {
    EXPECT_THAT(ErrorOf(url), HasSubstr("names a directory")) << url;
  }
}

TEST(StoreUrlTest, ReservedCharactersAreRefusedNotInterpreted) {
  for (const char* url : {"sqlite:///p.db?mode=ro", "sqlite:///p.db#x",
                          "sqlite:///my%20data/p.db"}) {
    EXPECT_THAT(ErrorOf(url), HasSubstr("reserved")) << url;
  }
}

TEST(StoreUrlTest, DefaultIsParleyDbInTheDataDirectory) {
  const StoreUrl url = SqliteInDataDir("./data");
  EXPECT_EQ(url.scheme, StoreUrl::Scheme::kSqlite);
  EXPECT_EQ(url.path, "./data/parley.db");
}

}  // namespace
}  // namespace parley::service
