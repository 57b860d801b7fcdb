#include "service/testing/postgres_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <postgresql/libpq-fe.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace parley::service::testing {
namespace {

constexpr const char* kBin = "/usr/lib/postgresql/15/bin";
// The unprivileged user the server runs as when the test runs as root.
constexpr uid_t kNobody = 65534;
constexpr gid_t kNogroup = 65534;
constexpr absl::Duration kReadyTimeout = absl::Seconds(60);

// A TCP port on 127.0.0.1 that nothing listens on right now.
absl::StatusOr<int> FreePort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError(std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string why = std::strerror(errno);
    close(fd);
    return absl::InternalError(absl::StrCat("finding a free port: ", why));
  }
  close(fd);
  return ntohs(addr.sin_port);
}

// Forks and execs `argv` with stdout and stderr appended to `log`, as
// `nobody` when running as root. Returns the child's PID.
absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv,
                            const std::string& log) {
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const int log_fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (log_fd < 0) {
    return absl::InternalError(
        absl::StrCat("opening ", log, ": ", std::strerror(errno)));
  }
  const bool as_root = geteuid() == 0;
  const pid_t pid = fork();
  if (pid < 0) {
    close(log_fd);
    return absl::InternalError(absl::StrCat("fork: ", std::strerror(errno)));
  }
  if (pid == 0) {
    // Only async-signal-safe calls from here: the parent may have threads.
    if (as_root && (setgroups(0, nullptr) != 0 || setgid(kNogroup) != 0 ||
                    setuid(kNobody) != 0)) {
      _exit(126);
    }
    // After the credentials change, which clears it: the server goes when
    // the test that started it dies.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    execv(args[0], args.data());
    _exit(127);
  }
  close(log_fd);
  return pid;
}

// The last lines of a log file, to say why a server did not start.
std::string Tail(const std::string& path) {
  std::ifstream in(path);
  std::stringstream all;
  all << in.rdbuf();
  std::string text = all.str();
  constexpr size_t kMax = 2000;
  return text.size() > kMax ? text.substr(text.size() - kMax) : text;
}

std::string ExitDescription(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit code ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("signal ", WTERMSIG(status));
  return absl::StrCat("status ", status);
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresServer>> PostgresServer::Start() {
  const std::string postgres = absl::StrCat(kBin, "/postgres");
  if (access(postgres.c_str(), X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("PostgreSQL 15 is not installed (", postgres,
                     " is missing); the PostgreSQL store's tests need it: run "
                     "`tools/deps.sh test` (apt-get install postgresql-15)"));
  }
  std::string pattern = "/tmp/parley_pg.XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(
        absl::StrCat("mkdtemp /tmp: ", std::strerror(errno)));
  }
  auto port = FreePort();
  if (!port.ok()) {
    std::filesystem::remove_all(pattern);
    return port.status();
  }
  // From here the destructor removes the directory.
  auto server =
      std::unique_ptr<PostgresServer>(new PostgresServer(pattern, *port));
  if (geteuid() == 0 && chown(pattern.c_str(), kNobody, kNogroup) != 0) {
    return absl::InternalError(
        absl::StrCat("chown ", pattern, ": ", std::strerror(errno)));
  }
  const std::string log = server->dir_ + "/initdb.log";
  auto initdb =
      Spawn({absl::StrCat(kBin, "/initdb"), "-D", server->dir_ + "/data", "-A",
             "trust", "-U", "parley", "-E", "UTF8", "--locale=C", "--no-sync"},
            log);
  if (!initdb.ok()) return initdb.status();
  int status = 0;
  waitpid(*initdb, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat(
        "initdb failed (", ExitDescription(status), "):\n", Tail(log)));
  }
  if (absl::Status launched = server->Launch(); !launched.ok()) {
    return launched;
  }
  return server;
}

absl::Status PostgresServer::Launch() {
  const std::string log = dir_ + "/postgres.log";
  auto pid = Spawn({absl::StrCat(kBin, "/postgres"), "-D", dir_ + "/data", "-p",
                    absl::StrCat(port_), "-c", "listen_addresses=127.0.0.1",
                    "-c", "unix_socket_directories=", "-c", "fsync=on", "-c",
                    "synchronous_commit=on", "-c", "max_connections=200"},
                   log);
  if (!pid.ok()) return pid.status();
  pid_ = *pid;
  const std::string ping = absl::StrCat("host=127.0.0.1 port=", port_,
                                        " dbname=postgres user=parley "
                                        "connect_timeout=5");
  const absl::Time deadline = absl::Now() + kReadyTimeout;
  for (;;) {
    if (PQping(ping.c_str()) == PQPING_OK) return absl::OkStatus();
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(absl::StrCat(
          "postgres exited (", ExitDescription(status), "):\n", Tail(log)));
    }
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("postgres was not ready after ",
                       absl::FormatDuration(kReadyTimeout), ":\n", Tail(log)));
    }
    // The server accepts connections only once recovery is done; nothing
    // tells a client before, so ask again shortly.
    absl::SleepFor(absl::Milliseconds(10));
  }
}

absl::Status PostgresServer::Stop() { return Signal(SIGINT); }

absl::Status PostgresServer::Crash() { return Signal(SIGQUIT); }

absl::Status PostgresServer::Signal(int signal) {
  if (pid_ <= 0) return absl::OkStatus();
  if (kill(pid_, signal) != 0) {
    return absl::InternalError(
        absl::StrCat("kill ", pid_, ": ", std::strerror(errno)));
  }
  int status = 0;
  while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  return absl::OkStatus();
}

absl::Status PostgresServer::Restart() {
  if (pid_ > 0) return absl::FailedPreconditionError("postgres is running");
  return Launch();
}

std::string PostgresServer::Url(absl::string_view name) const {
  return absl::StrCat("postgres://parley@127.0.0.1:", port_, "/", name);
}

absl::StatusOr<std::string> PostgresServer::CreateDatabase(
    absl::string_view name) {
  PGconn* conn = PQconnectdb(Url("postgres").c_str());
  absl::Status status;
  if (PQstatus(conn) != CONNECTION_OK) {
    status = absl::UnavailableError(PQerrorMessage(conn));
  } else {
    PGresult* r =
        PQexec(conn, absl::StrCat("CREATE DATABASE \"", name, "\"").c_str());
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
      status = absl::InternalError(
          absl::StrCat("CREATE DATABASE ", name, ": ", PQerrorMessage(conn)));
    }
    PQclear(r);
  }
  PQfinish(conn);
  if (!status.ok()) return status;
  return Url(name);
}

PostgresServer::~PostgresServer() {
  (void)Stop();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

}  // namespace parley::service::testing
