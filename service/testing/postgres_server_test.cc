#include "service/testing/postgres_server.h"

#include <postgresql/libpq-fe.h>
#include <signal.h>
#include <sys/stat.h>

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace parley::service::testing {
namespace {

// The value of a one-row, one-column query, or the error.
std::string QueryOne(const std::string& url, const char* sql) {
  PGconn* conn = PQconnectdb(url.c_str());
  std::string out;
  if (PQstatus(conn) != CONNECTION_OK) {
    out = std::string("error: ") + PQerrorMessage(conn);
  } else {
    PGresult* r = PQexec(conn, sql);
    out = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
              ? PQgetvalue(r, 0, 0)
              : std::string("error: ") + PQerrorMessage(conn);
    PQclear(r);
  }
  PQfinish(conn);
  return out;
}

TEST(PostgresServerTest, ServesADatabaseWithFsyncOnAndStopsByPid) {
  auto server = PostgresServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  auto url = (*server)->CreateDatabase("demo");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(QueryOne(*url, "SHOW fsync"), "on");
  EXPECT_EQ(QueryOne(*url, "SELECT current_database()"), "demo");
  const pid_t pid = (*server)->pid();
  ASSERT_TRUE((*server)->Stop().ok());
  EXPECT_NE(kill(pid, 0), 0);  // Gone, and reaped.
  EXPECT_THAT(QueryOne(*url, "SELECT 1"), ::testing::StartsWith("error:"));
}

TEST(PostgresServerTest, RestartKeepsDataAndPort) {
  auto server = PostgresServer::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  auto url = (*server)->CreateDatabase("kept");
  ASSERT_TRUE(url.ok()) << url.status();
  EXPECT_EQ(QueryOne(*url, "CREATE TABLE t AS SELECT 42 AS v; SELECT v FROM t"),
            "42");
  ASSERT_TRUE((*server)->Stop().ok());
  ASSERT_TRUE((*server)->Restart().ok());
  EXPECT_EQ(QueryOne(*url, "SELECT v FROM t"), "42");
}

TEST(PostgresServerTest, DestructorRemovesTheDirectory) {
  std::string url;
  {
    auto server = PostgresServer::Start();
    ASSERT_TRUE(server.ok()) << server.status();
    url = (*server)->Url("postgres");
    EXPECT_EQ(QueryOne(url, "SELECT 1"), "1");
  }
  EXPECT_THAT(QueryOne(url, "SELECT 1"), ::testing::StartsWith("error:"));
}

}  // namespace
}  // namespace parley::service::testing
