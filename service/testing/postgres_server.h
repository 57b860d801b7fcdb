// PostgresServer: a real PostgreSQL 15 for one test binary, started in a
// fresh temporary directory and stopped by PID. No mocks: the PostgreSQL
// store's tests run against the server Debian ships.
//
// Start() runs initdb and postgres from /usr/lib/postgresql/15/bin with the
// data directory under a new mkdtemp directory in /tmp (not under the test's
// TEST_TMPDIR, which lies below a home directory the server may not enter).
// PostgreSQL refuses to run as root, so when the test runs as root both run
// as `nobody` (forked, setgid/setuid, then exec) in a directory chowned to
// it. The server listens on 127.0.0.1 at a port found free at start, with
// unix sockets off and fsync on (the durability the store promises is
// PostgreSQL's own), and is ready when a libpq PQping says so. Stop() sends
// SIGINT (fast shutdown) and waits for the PID, Crash() SIGQUIT; Restart()
// reuses the data directory and the port, so a test can restart the server
// under an open store. The destructor stops the server and removes the
// directory.
//
// If PostgreSQL is not installed Start() fails, saying how to install it:
// the tests that need it fail rather than skip.
//
//   ASSERT_OK_AND_ASSIGN(auto pg, PostgresServer::Start());
//   ASSERT_OK_AND_ASSIGN(std::string url, pg->CreateDatabase("t1"));
//   // url == "postgres://parley@127.0.0.1:PORT/t1"
//
// Threading: thread-compatible; call Start/Stop/Restart from the thread that
// created the server (the server is killed if that thread exits).
#ifndef PARLEY_SERVICE_TESTING_POSTGRES_SERVER_H_
#define PARLEY_SERVICE_TESTING_POSTGRES_SERVER_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace parley::service::testing {

class PostgresServer {
 public:
  // Creates a cluster in a new temporary directory and starts it.
  static absl::StatusOr<std::unique_ptr<PostgresServer>> Start();
  ~PostgresServer();

  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  // Fast shutdown (SIGINT) and waits for the server to exit.
  absl::Status Stop();
  // Immediate shutdown (SIGQUIT): as a crash, without a checkpoint, so the
  // next start recovers from the WAL. Waits for the server to exit.
  absl::Status Crash();
  // Starts the stopped server again on the same data directory and port.
  absl::Status Restart();

  // Creates the database `name` and returns its URL (user `parley`, no
  // password).
  absl::StatusOr<std::string> CreateDatabase(absl::string_view name);
  // The URL of the database `name` (which need not exist yet).
  std::string Url(absl::string_view name) const;

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }

 private:
  PostgresServer(std::string dir, int port)
      : dir_(std::move(dir)), port_(port) {}

  // Sends `signal` to postgres and waits for it to exit.
  absl::Status Signal(int signal);
  // Starts postgres on the existing data directory and waits until ready.
  absl::Status Launch();

  const std::string dir_;  // The mkdtemp directory; data/ inside it.
  const int port_;
  pid_t pid_ = -1;
};

}  // namespace parley::service::testing

#endif  // PARLEY_SERVICE_TESTING_POSTGRES_SERVER_H_
