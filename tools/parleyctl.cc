// parleyctl: the admin CLI for parley-service. See AdminCli::Usage() and
// docs/operators.md.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "grpcpp/grpcpp.h"
#include "tools/admin_cli.h"

ABSL_FLAG(std::string, admin_addr, "127.0.0.1:7401",
          "parley-service's admin API address, host:port (env "
          "PARLEY_ADMIN_ADDR).");
ABSL_FLAG(std::string, admin_key, "",
          "The admin key, sent as `authorization: Bearer <key>` (env "
          "PARLEY_ADMIN_KEY).");
ABSL_FLAG(bool, json, false, "Print JSON instead of tables.");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(10),
          "Deadline for each call (e.g. 10s).");

int main(int argc, char** argv) {
  // absl parses parleyctl's own flags, wherever they were given; AdminCli
  // parses the command's words.
  parley::CommandLine line =
      parley::SplitCommandLine(std::vector<std::string>(argv + 1, argv + argc));
  std::vector<char*> flags = {argv[0]};
  for (std::string& flag : line.flags) flags.push_back(flag.data());
  parley::ParseConfig(static_cast<int>(flags.size()), flags.data(),
                      parley::AdminCli::Usage());

  auto channel = grpc::CreateChannel(absl::GetFlag(FLAGS_admin_addr),
                                     grpc::InsecureChannelCredentials());
  auto admin = parley::v1::Admin::NewStub(channel);
  auto health = grpc::health::v1::Health::NewStub(channel);
  parley::AdminCliOptions options;
  options.admin_key = absl::GetFlag(FLAGS_admin_key);
  options.json = absl::GetFlag(FLAGS_json);
  options.timeout = absl::GetFlag(FLAGS_timeout);
  parley::AdminCli cli(admin.get(), health.get(), options);

  absl::StatusOr<std::string> out = cli.Run(line.command);
  if (!out.ok()) {
    std::string code = absl::StatusCodeToString(out.status().code());
    if (out.status().code() == absl::StatusCode::kUnavailable) {
      code = absl::StrCat(code, " (is parley-service running at ",
                          absl::GetFlag(FLAGS_admin_addr), "?)");
    }
    std::fprintf(stderr, "parleyctl: %s: %s\n", code.c_str(),
                 std::string(out.status().message()).c_str());
    return parley::ExitCodeFor(out.status());
  }
  std::fputs(out->c_str(), stdout);
  return 0;
}
