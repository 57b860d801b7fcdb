// parleyctl's commands: argument parsing, admin API calls and output
// formatting, with no channel or process of its own.
//
// The binary (tools/parleyctl.cc) builds the gRPC stubs and hands them in;
// tests hand in the generated gmock stubs. Each Run() is one command:
//
//   AdminCli cli(&admin_stub, &health_stub, {.admin_key = "k"});
//   absl::StatusOr<std::string> out = cli.Run({"users", "create", "alice",
//                                              "--name", "Alice"});
//
// Errors are absl::Status with the server's code and message (or
// INVALID_ARGUMENT for bad usage); ExitCodeFor() turns them into distinct
// exit codes. Thread-compatible: one command at a time.
#ifndef PARLEY_TOOLS_ADMIN_CLI_H_
#define PARLEY_TOOLS_ADMIN_CLI_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "parley/v1/admin.grpc.pb.h"

namespace parley {

struct AdminCliOptions {
  // Sent as `authorization: Bearer <admin_key>` on every admin call.
  std::string admin_key;
  // Print responses as JSON (protobuf's JSON mapping) instead of tables.
  bool json = false;
  // Deadline for each call.
  absl::Duration timeout = absl::Seconds(10);
};

class AdminCli final {
 public:
  AdminCli(v1::Admin::StubInterface* admin,
           grpc::health::v1::Health::StubInterface* health,
           AdminCliOptions options);

  // Runs one command (args exclude the program name); returns what to print.
  absl::StatusOr<std::string> Run(const std::vector<std::string>& args);

  // The usage text listing every command. Run() answers "help", "--help"
  // and "-h" with it, and "COMMAND --help" with that command's help.
  static std::string Usage();

 private:
  v1::Admin::StubInterface* admin_;
  grpc::health::v1::Health::StubInterface* health_;
  AdminCliOptions options_;
};

// parleyctl's command line (without the program name) split in two: its own
// flags (--admin_addr, --admin_key, --json, --timeout), for absl to parse,
// whether they come before the command or after it (`users list --json`);
// and the command with its words, for AdminCli::Run(). Words before the
// command that start with '-' are flags, except "--help" and "-h", which go
// to the command so that Run() answers them. After a "--", every word is the
// command's.
struct CommandLine {
  std::vector<std::string> flags;
  std::vector<std::string> command;
};
CommandLine SplitCommandLine(const std::vector<std::string>& args);

// Exit codes: 0 ok, 1 other failure, 2 invalid argument or usage,
// 3 unreachable (UNAVAILABLE, DEADLINE_EXCEEDED), 4 unauthenticated or
// permission denied, 5 not found, 6 already exists.
int ExitCodeFor(const absl::Status& status);

}  // namespace parley

#endif  // PARLEY_TOOLS_ADMIN_CLI_H_
