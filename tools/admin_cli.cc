#include "tools/admin_cli.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"

namespace parley {
namespace {

using google::protobuf::Message;

// The least a backup call may take (see "backup" below).
constexpr absl::Duration kBackupTimeout = absl::Hours(1);

// A command's words after the command name: positionals and --options.
struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::string> options;
  std::set<std::string> switches;

  std::string Option(const std::string& name,
                     const std::string& fallback = "") const {
    auto it = options.find(name);
    return it == options.end() ? fallback : it->second;
  }
  bool Switch(const std::string& name) const { return switches.count(name); }
};

absl::StatusOr<Args> ParseArgs(const std::vector<std::string>& words,
                               size_t start,
                               const std::set<std::string>& value_options,
                               const std::set<std::string>& switch_options) {
  Args args;
  bool options_done = false;
  for (size_t i = start; i < words.size(); ++i) {
    const std::string& w = words[i];
    if (options_done || w.size() < 3 || w.rfind("--", 0) != 0) {
      args.positional.push_back(w);
      continue;
    }
    if (w == "--") {
      options_done = true;
      continue;
    }
    std::string name = w.substr(2);
    std::string value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    if (switch_options.count(name)) {
      if (has_value) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, " takes no value"));
      }
      args.switches.insert(name);
    } else if (value_options.count(name)) {
      if (!has_value) {
        if (i + 1 >= words.size()) {
          return absl::InvalidArgumentError(
              absl::StrCat("--", name, " needs a value"));
        }
        value = words[++i];
      }
      args.options[name] = value;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown option --", name, " for this command"));
    }
  }
  return args;
}

absl::Status WantPositional(const Args& args, size_t min, size_t max,
                            absl::string_view usage) {
  if (args.positional.size() < min || args.positional.size() > max) {
    return absl::InvalidArgumentError(absl::StrCat("usage: parleyctl ", usage));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> ParseCount(const std::string& text,
                                    absl::string_view what) {
  uint32_t n = 0;
  if (!absl::SimpleAtoi(text, &n)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " must be a whole number, got \"", text, "\""));
  }
  return n;
}

std::string Time(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S",
                          absl::FromUnixSeconds(t.seconds()),
                          absl::UTCTimeZone());
}

// Aligned columns; the first row is the header.
std::string Table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()));
    for (size_t c = 0; c < row.size(); ++c) {
      width[c] = std::max(width[c], row[c].size());
    }
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      line += row[c];
      if (c + 1 < row.size()) line.append(width[c] - row[c].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

std::string Json(const Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.always_print_primitive_fields = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, options);
  return out;
}

std::string UserRows(
    const google::protobuf::RepeatedPtrField<v1::User>& users) {
  std::vector<std::vector<std::string>> rows = {{"ID", "NAME", "CREATED"}};
  for (const v1::User& u : users) {
    rows.push_back({u.id(), u.display_name(), Time(u.created_at())});
  }
  return Table(rows);
}

std::string GroupRows(
    const google::protobuf::RepeatedPtrField<v1::Group>& groups) {
  std::vector<std::vector<std::string>> rows = {
      {"ID", "NAME", "MEMBERS", "CREATED"}};
  for (const v1::Group& g : groups) {
    rows.push_back({g.id(), g.display_name(), absl::StrJoin(g.members(), ","),
                    Time(g.created_at())});
  }
  return Table(rows);
}

}  // namespace

AdminCli::AdminCli(v1::Admin::StubInterface* admin,
                   grpc::health::v1::Health::StubInterface* health,
                   AdminCliOptions options)
    : admin_(admin), health_(health), options_(std::move(options)) {}

std::string AdminCli::Usage() {
  return R"(usage: parleyctl [--admin_addr=HOST:PORT] [--admin_key=KEY] [--json] COMMAND

commands:
  users create ID [--name NAME]         create a user
  users get ID                          show one user
  users list                            list every user
  users delete ID                       delete a user (closes their sessions)
  token USER [--ttl 1h] [--device D]    mint a client token
  groups create ID [USER...] [--name N] create a group
  groups add ID USER...                 add members
  groups remove ID USER...              remove members
  groups get ID                         show one group
  groups list                           list every group
  sessions [USER]                       live sessions (all or one user's)
  kick USER [--reason R] [--no-reconnect] [--session ID]
                                        disconnect a user's sessions (or one)
  send --from USER (--to USER | --group GROUP) [--id CLIENT_MSG_ID] TEXT
                                        send a message as a user
  broadcast TEXT                        announce to every live session
  history CONVERSATION [--limit N] [--before SEQ]
                                        stored messages (d:a:b or g:group)
  stats                                 service counters
  backup PATH                           write a checked copy of the store to
                                        PATH: absolute, on the service's
                                        filesystem, not existing yet
  health                                the service's gRPC health status

The admin address and key also come from PARLEY_ADMIN_ADDR and
PARLEY_ADMIN_KEY. Exit codes: 0 ok, 1 other error, 2 invalid argument,
3 unreachable, 4 unauthenticated, 5 not found, 6 already exists.
)";
}

absl::StatusOr<std::string> AdminCli::Run(
    const std::vector<std::string>& words) {
  if (words.empty()) return absl::InvalidArgumentError(Usage());

  // Calls one admin method with the key and a deadline.
  auto call_within = [this](absl::Duration timeout, auto method,
                            const auto& request, auto* response) {
    grpc::ClientContext context;
    context.AddMetadata("authorization",
                        absl::StrCat("Bearer ", options_.admin_key));
    context.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoMilliseconds(timeout));
    return FromGrpcStatus((admin_->*method)(&context, request, response));
  };
  auto call = [&](auto method, const auto& request, auto* response) {
    return call_within(options_.timeout, method, request, response);
  };
  using Stub = v1::Admin::StubInterface;
  const std::string& cmd = words[0];
  const std::string sub = words.size() > 1 ? words[1] : "";

  if (cmd == "users" && sub == "create") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, 2, {"name"}, {}));
    RETURN_IF_ERROR(WantPositional(a, 1, 1, "users create ID [--name NAME]"));
    v1::CreateUserRequest req;
    req.set_id(a.positional[0]);
    req.set_display_name(a.Option("name"));
    v1::User user;
    RETURN_IF_ERROR(call(&Stub::CreateUser, req, &user));
    return options_.json ? Json(user)
                         : absl::StrCat("created user ", user.id(), "\n");
  }
  if (cmd == "users" && sub == "get") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, 2, {}, {}));
    RETURN_IF_ERROR(WantPositional(a, 1, 1, "users get ID"));
    v1::GetUserRequest req;
    req.set_id(a.positional[0]);
    v1::User user;
    RETURN_IF_ERROR(call(&Stub::GetUser, req, &user));
    if (options_.json) return Json(user);
    google::protobuf::RepeatedPtrField<v1::User> one;
    *one.Add() = user;
    return UserRows(one);
  }
  if (cmd == "users" && sub == "list") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, 2, {}, {}));
    RETURN_IF_ERROR(WantPositional(a, 0, 0, "users list"));
    v1::ListUsersResponse all;
    v1::ListUsersRequest req;
    do {
      v1::ListUsersResponse page;
      RETURN_IF_ERROR(call(&Stub::ListUsers, req, &page));
      all.mutable_users()->MergeFrom(page.users());
      req.set_page_token(page.next_page_token());
    } while (!req.page_token().empty());
    return options_.json ? Json(all) : UserRows(all.users());
  }
  if (cmd == "users" && sub == "delete") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, 2, {}, {}));
    RETURN_IF_ERROR(WantPositional(a, 1, 1, "users delete ID"));
    v1::DeleteUserRequest req;
    req.set_id(a.positional[0]);
    v1::DeleteUserResponse resp;
    RETURN_IF_ERROR(call(&Stub::DeleteUser, req, &resp));
    return options_.json
               ? Json(resp)
               : absl::StrCat("deleted user ", req.id(), " (",
                              resp.sessions_closed(), " sessions closed)\n");
  }
  if (cmd == "token") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, 1, {"ttl", "device"}, {}));
    RETURN_IF_ERROR(
        WantPositional(a, 1, 1, "token USER [--ttl 1h] [--device NAME]"));
    v1::IssueTokenRequest req;
    req.set_user_id(a.positional[0]);
    req.set_device(a.Option("device"));
    if (!a.Option("ttl").empty()) {
      absl::Duration ttl;
      if (!absl::ParseDuration(a.Option("ttl"), &ttl) ||
          ttl < absl::Seconds(1)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--ttl must be a positive duration like 90s, 30m or 24h, got \"",
            a.Option("ttl"), "\""));
      }
      req.set_ttl_seconds(static_cast<uint32_t>(absl::ToInt64Seconds(ttl)));
    }
    v1::IssueTokenResponse resp;
    RETURN_IF_ERROR(call(&Stub::IssueToken, req, &resp));
    return options_.json ? Json(resp) : resp.token() + "\n";
  }
  if (cmd == "groups" && (sub == "create" || sub == "add" || sub == "remove")) {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, 2, {"name"}, {}));
    RETURN_IF_ERROR(
        WantPositional(a, sub == "create" ? 1 : 2, 100000,
                       absl::StrCat("groups ", sub, " ID USER...")));
    std::vector<std::string> users(a.positional.begin() + 1,
                                   a.positional.end());
    v1::Group group;
    if (sub == "create") {
      v1::CreateGroupRequest req;
      req.set_id(a.positional[0]);
      req.set_display_name(a.Option("name"));
      for (const auto& u : users) req.add_members(u);
      RETURN_IF_ERROR(call(&Stub::CreateGroup, req, &group));
    } else if (sub == "add") {
      v1::AddMembersRequest req;
      req.set_group_id(a.positional[0]);
      for (const auto& u : users) req.add_user_ids(u);
      RETURN_IF_ERROR(call(&Stub::AddMembers, req, &group));
    } else {
      v1::RemoveMembersRequest req;
      req.set_group_id(a.positional[0]);
      for (const auto& u : users) req.add_user_ids(u);
      RETURN_IF_ERROR(call(&Stub::RemoveMembers, req, &group));
    }
    if (options_.json) return Json(group);
    return absl::StrCat("group ", group.id(), ": ",
                        absl::StrJoin(group.members(), ", "), "\n");
  }
  if (cmd == "groups" && sub == "get") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, 2, {}, {}));
    RETURN_IF_ERROR(WantPositional(a, 1, 1, "groups get ID"));
    v1::GetGroupRequest req;
    req.set_id(a.positional[0]);
    v1::Group group;
    RETURN_IF_ERROR(call(&Stub::GetGroup, req, &group));
    if (options_.json) return Json(group);
    google::protobuf::RepeatedPtrField<v1::Group> one;
    *one.Add() = group;
    return GroupRows(one);
  }
  if (cmd == "groups" && sub == "list") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, 2, {}, {}));
    RETURN_IF_ERROR(WantPositional(a, 0, 0, "groups list"));
    v1::ListGroupsResponse all;
    v1::ListGroupsRequest req;
    do {
      v1::ListGroupsResponse page;
      RETURN_IF_ERROR(call(&Stub::ListGroups, req, &page));
      all.mutable_groups()->MergeFrom(page.groups());
      req.set_page_token(page.next_page_token());
    } while (!req.page_token().empty());
    return options_.json ? Json(all) : GroupRows(all.groups());
  }
  if (cmd == "sessions") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, 1, {}, {}));
    RETURN_IF_ERROR(WantPositional(a, 0, 1, "sessions [USER]"));
    v1::ListSessionsRequest req;
    if (!a.positional.empty()) req.set_user_id(a.positional[0]);
    v1::ListSessionsResponse resp;
    RETURN_IF_ERROR(call(&Stub::ListSessions, req, &resp));
    if (options_.json) return Json(resp);
    std::vector<std::vector<std::string>> rows = {
        {"SESSION", "USER", "DEVICE", "GATEWAY", "PEER", "CONNECTED"}};
    for (const v1::SessionInfo& s : resp.sessions()) {
      rows.push_back({s.session_id(), s.user_id(), s.device(), s.gateway_id(),
                      s.peer_address(), Time(s.connected_at())});
    }
    return Table(rows);
  }
  if (cmd == "kick") {
    ASSIGN_OR_RETURN(
        Args a, ParseArgs(words, 1, {"reason", "session"}, {"no-reconnect"}));
    RETURN_IF_ERROR(WantPositional(
        a, a.Option("session").empty() ? 1 : 0, 1,
        "kick USER [--reason R] [--no-reconnect] | kick --session ID"));
    v1::DisconnectRequest req;
    if (!a.positional.empty()) req.set_user_id(a.positional[0]);
    req.set_session_id(a.Option("session"));
    req.set_reason(a.Option("reason", "disconnected by an operator"));
    req.set_reconnect(!a.Switch("no-reconnect"));
    v1::DisconnectResponse resp;
    RETURN_IF_ERROR(call(&Stub::Disconnect, req, &resp));
    return options_.json
               ? Json(resp)
               : absl::StrCat(resp.sessions_closed(), " sessions closed\n");
  }
  if (cmd == "send") {
    ASSIGN_OR_RETURN(Args a,
                     ParseArgs(words, 1, {"from", "to", "group", "id"}, {}));
    const bool to_user = !a.Option("to").empty();
    const bool to_group = !a.Option("group").empty();
    if (a.Option("from").empty() || to_user == to_group ||
        a.positional.size() != 1) {
      return absl::InvalidArgumentError(
          "usage: parleyctl send --from USER (--to USER | --group GROUP) "
          "TEXT");
    }
    v1::SendMessageRequest req;
    req.set_from(a.Option("from"));
    if (to_user) req.mutable_to()->set_user(a.Option("to"));
    if (to_group) req.mutable_to()->set_group(a.Option("group"));
    req.set_text(a.positional[0]);
    req.set_client_msg_id(a.Option("id"));
    v1::Ack ack;
    RETURN_IF_ERROR(call(&Stub::SendMessage, req, &ack));
    return options_.json
               ? Json(ack)
               : absl::StrCat("stored ", ack.conversation(), " seq ", ack.seq(),
                              " (message ", ack.message_id(), ")\n");
  }
  if (cmd == "broadcast") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, 1, {}, {}));
    RETURN_IF_ERROR(WantPositional(a, 1, 1, "broadcast TEXT"));
    v1::BroadcastRequest req;
    req.set_text(a.positional[0]);
    v1::BroadcastResponse resp;
    RETURN_IF_ERROR(call(&Stub::Broadcast, req, &resp));
    return options_.json
               ? Json(resp)
               : absl::StrCat("sent to ", resp.sessions(), " sessions on ",
                              resp.gateways(), " gateways\n");
  }
  if (cmd == "history") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, 1, {"limit", "before"}, {}));
    RETURN_IF_ERROR(WantPositional(
        a, 1, 1, "history CONVERSATION [--limit N] [--before SEQ]"));
    v1::GetHistoryRequest req;
    req.set_conversation(a.positional[0]);
    if (!a.Option("limit").empty()) {
      ASSIGN_OR_RETURN(uint32_t limit,
                       ParseCount(a.Option("limit"), "--limit"));
      req.set_limit(limit);
    }
    if (!a.Option("before").empty()) {
      ASSIGN_OR_RETURN(uint32_t before,
                       ParseCount(a.Option("before"), "--before"));
      req.set_before_seq(before);
    }
    v1::GetHistoryResponse resp;
    RETURN_IF_ERROR(call(&Stub::GetHistory, req, &resp));
    if (options_.json) return Json(resp);
    std::vector<std::vector<std::string>> rows = {
        {"SEQ", "FROM", "SENT", "TEXT"}};
    for (const v1::Message& m : resp.messages()) {
      rows.push_back(
          {absl::StrCat(m.seq()), m.from(), Time(m.sent_at()), m.text()});
    }
    return Table(rows);
  }
  if (cmd == "stats") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, 1, {}, {}));
    RETURN_IF_ERROR(WantPositional(a, 0, 0, "stats"));
    v1::Stats stats;
    RETURN_IF_ERROR(call(&Stub::GetStats, v1::GetStatsRequest(), &stats));
    if (options_.json) return Json(stats);
    return Table({{"gateways", absl::StrCat(stats.gateways())},
                  {"live sessions", absl::StrCat(stats.live_sessions())},
                  {"users", absl::StrCat(stats.users())},
                  {"stored messages", absl::StrCat(stats.stored_messages())},
                  {"messages/s", absl::StrCat(stats.messages_per_second())},
                  {"uptime s", absl::StrCat(stats.uptime_seconds())},
                  {"store generation", stats.store_generation()}});
  }
  if (cmd == "backup") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, 1, {}, {}));
    RETURN_IF_ERROR(WantPositional(a, 1, 1, "backup PATH"));
    v1::BackupRequest req;
    req.set_path(a.positional[0]);
    v1::BackupResponse resp;
    // The service copies, then reads the whole copy back: minutes for a big
    // store. A caller that gave up sooner would report a failed backup that
    // the service completes.
    RETURN_IF_ERROR(call_within(std::max(options_.timeout, kBackupTimeout),
                                &Stub::Backup, req, &resp));
    if (options_.json) return Json(resp);
    return absl::StrCat(
        "wrote ", resp.path(), ": integrity ok\n",
        Table({{"users", absl::StrCat(resp.users())},
               {"groups", absl::StrCat(resp.groups())},
               {"messages", absl::StrCat(resp.messages())},
               {"last message id", resp.last_message_id()},
               {"size", absl::StrCat(resp.size_bytes(), " bytes")},
               {"generation", resp.generation()}}));
  }
  if (cmd == "health") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, 1, {}, {}));
    RETURN_IF_ERROR(WantPositional(a, 0, 0, "health"));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoMilliseconds(options_.timeout));
    grpc::health::v1::HealthCheckResponse resp;
    RETURN_IF_ERROR(FromGrpcStatus(health_->Check(
        &context, grpc::health::v1::HealthCheckRequest(), &resp)));
    if (options_.json) return Json(resp);
    const std::string name =
        grpc::health::v1::HealthCheckResponse::ServingStatus_Name(
            resp.status());
    if (resp.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
      return absl::UnavailableError(absl::StrCat("service is ", name));
    }
    return name + "\n";
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown command \"", absl::StrJoin(words, " "), "\"\n\n", Usage()));
}

int ExitCodeFor(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 0;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return 2;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
      return 3;
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      return 4;
    case absl::StatusCode::kNotFound:
      return 5;
    case absl::StatusCode::kAlreadyExists:
      return 6;
    default:
      return 1;
  }
}

}  // namespace parley
