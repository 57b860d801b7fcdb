// NatsServerProcess: a real nats-server (Debian's /usr/sbin/nats-server) for
// tests, on 127.0.0.1 and a port free at start. Start() returns once the
// server accepts connections; the destructor stops it by its PID. Kill()
// and Restart() (same port) let a test take the server away and bring it
// back.
//
// Threading: one test thread.
#ifndef PARLEY_SERVICE_NATS_SERVER_PROCESS_H_
#define PARLEY_SERVICE_NATS_SERVER_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace parley::service {

class NatsServerProcess final {
 public:
  static absl::StatusOr<std::unique_ptr<NatsServerProcess>> Start();
  ~NatsServerProcess();

  NatsServerProcess(const NatsServerProcess&) = delete;
  NatsServerProcess& operator=(const NatsServerProcess&) = delete;

  // SIGKILL, and waits for the process to exit.
  void Kill();
  // Starts it again on the same port.
  absl::Status Restart();

  int port() const { return port_; }
  // nats://127.0.0.1:<port>
  std::string url() const;

 private:
  explicit NatsServerProcess(int port) : port_(port) {}
  absl::Status Spawn();

  const int port_;
  pid_t pid_ = -1;
};

}  // namespace parley::service

#endif  // PARLEY_SERVICE_NATS_SERVER_PROCESS_H_
