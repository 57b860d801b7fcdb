#include "tools/admin_cli.h"

#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/build_info.h"
#include "common/grpc_status.h"
#include "common/status_macros.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"

namespace parley {
namespace {

using google::protobuf::Message;

// The least a backup call may take (see "backup" below).
constexpr absl::Duration kBackupTimeout = absl::Hours(1);

// The user `send --system` sends as.
constexpr absl::string_view kSystemUser = "system";

// parleyctl's own flags (defined in parleyctl.cc), which may also follow the
// command; the bool is whether the flag takes a value.
constexpr std::pair<absl::string_view, bool> kGlobalFlags[] = {
    {"admin_addr", true},
    {"admin_key", true},
    {"timeout", true},
    {"json", false},
    {"nojson", false}};

// One command: its name (one or two words), its arguments, a summary for the
// command list (lines after the first continue it) and more for its own
// --help (may be empty).
struct Command {
  absl::string_view name;
  absl::string_view args;
  absl::string_view summary;
  absl::string_view details;
};

// Every command, in the order the usage lists them. Run() dispatches on the
// name; help, usage errors and suggestions come from here.
constexpr Command kCommands[] = {
    {"users create", "ID [--name NAME]", "create a user", ""},
    {"users get", "ID", "show one user", ""},
    {"users list", "", "list every user", ""},
    {"users delete", "ID", "delete a user (closes their sessions)", ""},
    {"token", "USER [--ttl 1h] [--device D]", "mint a client token",
     "--ttl     lifetime (90s, 30m, 24h); default: the service's\n"
     "--device  the device name the token carries (its dev claim)"},
    {"groups create", "ID [USER...] [--name N]", "create a group", ""},
    {"groups add", "ID USER...", "add members", ""},
    {"groups remove", "ID USER...", "remove members", ""},
    {"groups get", "ID", "show one group", ""},
    {"groups list", "", "list every group", ""},
    {"sessions", "[USER]", "live sessions (all or one user's)", ""},
    {"kick",
     "(USER | --session ID) [--reason R] [--no-reconnect] [--revoke-tokens]",
     "disconnect a user's sessions (or one)",
     "--reason         shown to the client\n"
     "--no-reconnect   tell the client not to reconnect\n"
     "--revoke-tokens  also refuse every token of USER issued before now\n"
     "                 (a password change, a stolen device)\n"
     "--session        close only this session (see parleyctl sessions)"},
    {"send",
     "(--from USER | --system) (--to USER | --group GROUP) [--id ID] TEXT",
     "send a message as a user or the system",
     "--from    the sending user (must exist; a member for --group)\n"
     "--system  send as the user \"system\", created on first use and, for\n"
     "          --group, added to the group: the service stores messages\n"
     "          only from users\n"
     "--id      idempotency key (client_msg_id); default: generated"},
    {"delete-message", "CONVERSATION SEQ [--reason R]",
     "delete any message (moderation)",
     "No edit window applies. Members see a delete event from \"\" (the\n"
     "operator) and a tombstone in history; the text is gone.\n"
     "--reason  why, for the service's log (admin.message_deleted)"},
    {"broadcast", "TEXT", "announce to every live session", ""},
    {"history", "CONVERSATION [--limit N] [--before SEQ]",
     "stored messages (d:a:b or g:group)",
     "The newest page; --before SEQ pages back. Times are UTC (RFC 3339);\n"
     "control characters in the text are escaped (\\n, \\x1b) and a\n"
     "backslash is doubled."},
    {"conversations", "USER [--limit N]",
     "a user's conversations, newest first,\nwith unread counts",
     "Every page (at most N conversations with --limit), as the user's\n"
     "clients list them: UNREAD counts messages after the user's read\n"
     "position sent by others; PEER READ is the other user's read position\n"
     "in a direct conversation. Times are UTC (RFC 3339)."},
    {"blocks", "USER", "the users USER has blocked", ""},
    {"stats", "", "service counters", ""},
    {"backup", "PATH",
     "write a checked copy of the store to\nPATH: absolute, on the service's\n"
     "filesystem, not existing yet",
     ""},
    {"health", "", "the service's gRPC health status", ""},
    {"help", "[COMMAND]", "this list, or one command's help", ""},
    {"version", "",
     "parleyctl's version, commit and build mode (also --version)", ""},
};

// Where the summaries start in the command list.
constexpr size_t kSummaryColumn = 40;

std::string Synopsis(const Command& c) {
  return c.args.empty() ? std::string(c.name)
                        : absl::StrCat(c.name, " ", c.args);
}

// How many leading words of `words` name `c`, or 0.
size_t Matches(const Command& c, const std::vector<std::string>& words) {
  const std::vector<absl::string_view> name = absl::StrSplit(c.name, ' ');
  if (words.size() < name.size()) return 0;
  for (size_t i = 0; i < name.size(); ++i) {
    if (words[i] != name[i]) return 0;
  }
  return name.size();
}

const Command* FindCommand(const std::vector<std::string>& words) {
  for (const Command& c : kCommands) {
    if (Matches(c, words)) return &c;
  }
  return nullptr;
}

// One command's line(s) in the command list.
std::string ListEntry(const Command& c) {
  std::string line = absl::StrCat("  ", Synopsis(c));
  const std::string indent(kSummaryColumn, ' ');
  if (line.size() < kSummaryColumn) {
    line.append(kSummaryColumn - line.size(), ' ');
  } else {
    absl::StrAppend(&line, "\n", indent);
  }
  absl::StrAppend(&line,
                  absl::StrJoin(absl::StrSplit(c.summary, '\n'),
                                absl::StrCat("\n", indent)),
                  "\n");
  return line;
}

std::string CommandHelp(const Command& c) {
  std::string out =
      absl::StrCat("usage: parleyctl ", Synopsis(c), "\n\n",
                   absl::StrJoin(absl::StrSplit(c.summary, '\n'), " "), "\n");
  if (!c.details.empty()) absl::StrAppend(&out, "\n", c.details, "\n");
  return out;
}

// The Levenshtein distance between a and b.
size_t EditDistance(absl::string_view a, absl::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1,
                         diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The usage error for words that name no command, suggesting the nearest
// command when one is close (a typo rather than a different word).
absl::Status UnknownCommand(const std::vector<std::string>& words) {
  const Command* nearest = nullptr;
  size_t best = 4;  // Suggest only what is at most 3 edits away.
  for (const Command& c : kCommands) {
    const size_t n = std::count(c.name.begin(), c.name.end(), ' ') + 1;
    const std::string typed = absl::StrJoin(
        words.begin(), words.begin() + std::min(n, words.size()), " ");
    const size_t d = EditDistance(typed, c.name);
    if (d < best && d < typed.size()) {
      best = d;
      nearest = &c;
    }
  }
  const std::string what =
      absl::StrCat("unknown command \"", absl::StrJoin(words, " "), "\"");
  if (nearest == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, "\n\n", AdminCli::Usage()));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(what, "; did you mean \"", nearest->name,
                   "\"? (parleyctl help lists every command)"));
}

// What `help [WORDS]` prints: the usage, one command's help, or the commands
// that start with a word (`parleyctl users --help`).
absl::StatusOr<std::string> Help(const std::vector<std::string>& topic) {
  if (topic.empty()) return AdminCli::Usage();
  if (const Command* c = FindCommand(topic)) return CommandHelp(*c);
  std::string group;
  for (const Command& c : kCommands) {
    if (absl::StartsWith(c.name, absl::StrCat(topic[0], " "))) {
      group += ListEntry(c);
    }
  }
  if (group.empty()) return UnknownCommand(topic);
  return absl::StrCat("commands:\n", group);
}

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

absl::Status UsageError(const Command& c) {
  return absl::InvalidArgumentError(
      absl::StrCat("usage: parleyctl ", Synopsis(c)));
}

absl::Status WantPositional(const Args& args, size_t min, size_t max,
                            const Command& c) {
  if (args.positional.size() < min || args.positional.size() > max) {
    return UsageError(c);
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
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                          absl::FromUnixSeconds(t.seconds()),
                          absl::UTCTimeZone());
}

// The TEXT column of `history`: the text, marked when edited, deleted, or an
// edit or delete event.
std::string HistoryText(const v1::Message& m) {
  switch (m.kind()) {
    case v1::MESSAGE_KIND_EDIT:
      return absl::StrCat("[edit of ", m.target_seq(), "] ", m.text());
    case v1::MESSAGE_KIND_DELETE:
      return absl::StrCat("[delete of ", m.target_seq(), "]");
    default:
      break;
  }
  if (m.deleted()) return "[deleted]";
  if (m.has_edited_at()) {
    return absl::StrCat(m.text(), " [edited ", Time(m.edited_at()), "]");
  }
  return m.text();
}

// `text` with control characters escaped: a newline in a message would start
// what looks like another row, and ESC drives the terminal. The backslash is
// doubled so that an escape cannot be mistaken for text that looks like one.
std::string Printable(absl::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    const unsigned char c = text[i];
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f) {
      absl::StrAppendFormat(&out, "\\x%02x", static_cast<unsigned>(c));
    } else if (c == 0xc2 && i + 1 < text.size() &&
               static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(text[i + 1]) <= 0x9f) {
      // A C1 control (U+0080 to U+009F) in UTF-8.
      absl::StrAppendFormat(
          &out, "\\u%04x",
          static_cast<unsigned>(static_cast<unsigned char>(text[++i])));
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// Aligned columns of printable cells; the first row is the header.
std::string Table(std::vector<std::vector<std::string>> rows) {
  for (auto& row : rows) {
    for (std::string& cell : row) cell = Printable(cell);
  }
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
  std::string out =
      "usage: parleyctl [--admin_addr=HOST:PORT] [--admin_key=KEY] [--json] "
      "COMMAND\n\ncommands:\n";
  for (const Command& c : kCommands) out += ListEntry(c);
  return absl::StrCat(out, R"(
The flags may also follow the command (parleyctl users list --json); the
admin address and key also come from PARLEY_ADMIN_ADDR and PARLEY_ADMIN_KEY.
parleyctl COMMAND --help describes one command. Exit codes: 0 ok, 1 other
error, 2 invalid argument, 3 unreachable, 4 unauthenticated, 5 not found,
6 already exists.
)");
}

absl::StatusOr<std::string> AdminCli::Run(
    const std::vector<std::string>& words) {
  if (words.empty()) return absl::InvalidArgumentError(Usage());
  std::vector<std::string> topic;
  bool help = words[0] == "help";
  for (size_t i = help ? 1 : 0; i < words.size() && words[i] != "--"; ++i) {
    if (words[i] == "--help" || words[i] == "-h") {
      help = true;
    } else {
      topic.push_back(words[i]);
    }
  }
  if (help) return Help(topic);
  if (words[0] == "version" || words[0] == "--version") {
    return VersionLine("parleyctl") + "\n";
  }
  const Command* command = FindCommand(words);
  if (command == nullptr) return UnknownCommand(words);
  const Command& c = *command;
  const size_t first = Matches(c, words);

  // Calls one admin method with the key and a deadline.
  auto call_within = [this](absl::Duration timeout, auto method,
                            const auto& request, auto* response) {
    if (options_.admin_key.empty()) {
      // The service would only say that the key is wrong.
      return absl::UnauthenticatedError(
          "no admin key: pass --admin_key=KEY or set PARLEY_ADMIN_KEY");
    }
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

  if (c.name == "users create") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, first, {"name"}, {}));
    RETURN_IF_ERROR(WantPositional(a, 1, 1, c));
    v1::CreateUserRequest req;
    req.set_id(a.positional[0]);
    req.set_display_name(a.Option("name"));
    v1::User user;
    RETURN_IF_ERROR(call(&Stub::CreateUser, req, &user));
    return options_.json ? Json(user)
                         : absl::StrCat("created user ", user.id(), "\n");
  }
  if (c.name == "users get") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, first, {}, {}));
    RETURN_IF_ERROR(WantPositional(a, 1, 1, c));
    v1::GetUserRequest req;
    req.set_id(a.positional[0]);
    v1::User user;
    RETURN_IF_ERROR(call(&Stub::GetUser, req, &user));
    if (options_.json) return Json(user);
    google::protobuf::RepeatedPtrField<v1::User> one;
    *one.Add() = user;
    return UserRows(one);
  }
  if (c.name == "users list") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, first, {}, {}));
    RETURN_IF_ERROR(WantPositional(a, 0, 0, c));
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
  if (c.name == "users delete") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, first, {}, {}));
    RETURN_IF_ERROR(WantPositional(a, 1, 1, c));
    v1::DeleteUserRequest req;
    req.set_id(a.positional[0]);
    v1::DeleteUserResponse resp;
    RETURN_IF_ERROR(call(&Stub::DeleteUser, req, &resp));
    return options_.json
               ? Json(resp)
               : absl::StrCat("deleted user ", req.id(), " (",
                              resp.sessions_closed(), " sessions closed)\n");
  }
  if (c.name == "token") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, first, {"ttl", "device"}, {}));
    RETURN_IF_ERROR(WantPositional(a, 1, 1, c));
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
  if (c.name == "groups create" || c.name == "groups add" ||
      c.name == "groups remove") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, first, {"name"}, {}));
    const bool create = c.name == "groups create";
    RETURN_IF_ERROR(WantPositional(a, create ? 1 : 2, 100000, c));
    std::vector<std::string> users(a.positional.begin() + 1,
                                   a.positional.end());
    v1::Group group;
    if (create) {
      v1::CreateGroupRequest req;
      req.set_id(a.positional[0]);
      req.set_display_name(a.Option("name"));
      for (const auto& u : users) req.add_members(u);
      RETURN_IF_ERROR(call(&Stub::CreateGroup, req, &group));
    } else if (c.name == "groups add") {
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
  if (c.name == "groups get") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, first, {}, {}));
    RETURN_IF_ERROR(WantPositional(a, 1, 1, c));
    v1::GetGroupRequest req;
    req.set_id(a.positional[0]);
    v1::Group group;
    RETURN_IF_ERROR(call(&Stub::GetGroup, req, &group));
    if (options_.json) return Json(group);
    google::protobuf::RepeatedPtrField<v1::Group> one;
    *one.Add() = group;
    return GroupRows(one);
  }
  if (c.name == "groups list") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, first, {}, {}));
    RETURN_IF_ERROR(WantPositional(a, 0, 0, c));
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
  if (c.name == "sessions") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, first, {}, {}));
    RETURN_IF_ERROR(WantPositional(a, 0, 1, c));
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
  if (c.name == "kick") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, first, {"reason", "session"},
                                       {"no-reconnect", "revoke-tokens"}));
    RETURN_IF_ERROR(
        WantPositional(a, a.Option("session").empty() ? 1 : 0, 1, c));
    v1::DisconnectRequest req;
    if (!a.positional.empty()) req.set_user_id(a.positional[0]);
    req.set_session_id(a.Option("session"));
    req.set_reason(a.Option("reason", "disconnected by an operator"));
    req.set_reconnect(!a.Switch("no-reconnect"));
    req.set_revoke_tokens(a.Switch("revoke-tokens"));
    v1::DisconnectResponse resp;
    RETURN_IF_ERROR(call(&Stub::Disconnect, req, &resp));
    return options_.json
               ? Json(resp)
               : absl::StrCat(
                     resp.sessions_closed(), " sessions closed",
                     req.revoke_tokens() ? "; earlier tokens revoked" : "",
                     "\n");
  }
  if (c.name == "send") {
    ASSIGN_OR_RETURN(
        Args a,
        ParseArgs(words, first, {"from", "to", "group", "id"}, {"system"}));
    const bool system = a.Switch("system");
    const bool to_user = !a.Option("to").empty();
    const bool to_group = !a.Option("group").empty();
    if (a.Option("from").empty() == !system || to_user == to_group ||
        a.positional.size() != 1) {
      return UsageError(c);
    }
    v1::SendMessageRequest req;
    req.set_from(system ? std::string(kSystemUser) : a.Option("from"));
    if (to_user) req.mutable_to()->set_user(a.Option("to"));
    if (to_group) req.mutable_to()->set_group(a.Option("group"));
    if (system) {
      // The service stores messages only from users, and group messages only
      // from members: make "system" both, leaving it as it is when it is.
      v1::CreateUserRequest create;
      create.set_id(req.from());
      create.set_display_name("System");
      v1::User user;
      absl::Status created = call(&Stub::CreateUser, create, &user);
      if (!created.ok() && !absl::IsAlreadyExists(created)) return created;
      if (to_group) {
        v1::AddMembersRequest join;
        join.set_group_id(req.to().group());
        join.add_user_ids(req.from());
        v1::Group group;
        RETURN_IF_ERROR(call(&Stub::AddMembers, join, &group));
      }
    }
    req.set_text(a.positional[0]);
    req.set_client_msg_id(a.Option("id"));
    v1::Ack ack;
    RETURN_IF_ERROR(call(&Stub::SendMessage, req, &ack));
    return options_.json
               ? Json(ack)
               : absl::StrCat("stored ", ack.conversation(), " seq ", ack.seq(),
                              " (message ", ack.message_id(), ")\n");
  }
  if (c.name == "delete-message") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, first, {"reason"}, {}));
    RETURN_IF_ERROR(WantPositional(a, 2, 2, c));
    v1::DeleteMessageRequest req;
    req.set_conversation(a.positional[0]);
    uint64_t seq = 0;
    if (!absl::SimpleAtoi(a.positional[1], &seq) || seq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("SEQ must be a positive whole number, got \"",
                       a.positional[1], "\""));
    }
    req.set_seq(seq);
    req.set_reason(a.Option("reason"));
    v1::Ack ack;
    RETURN_IF_ERROR(call(&Stub::DeleteMessage, req, &ack));
    return options_.json ? Json(ack)
                         : absl::StrCat("deleted ", req.conversation(), " seq ",
                                        seq, " (event seq ", ack.seq(), ")\n");
  }
  if (c.name == "broadcast") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, first, {}, {}));
    RETURN_IF_ERROR(WantPositional(a, 1, 1, c));
    v1::BroadcastRequest req;
    req.set_text(a.positional[0]);
    v1::BroadcastResponse resp;
    RETURN_IF_ERROR(call(&Stub::Broadcast, req, &resp));
    return options_.json
               ? Json(resp)
               : absl::StrCat("sent to ", resp.sessions(), " sessions on ",
                              resp.gateways(), " gateways\n");
  }
  if (c.name == "history") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, first, {"limit", "before"}, {}));
    RETURN_IF_ERROR(WantPositional(a, 1, 1, c));
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
      rows.push_back({absl::StrCat(m.seq()),
                      m.from().empty() ? "(operator)" : m.from(),
                      Time(m.sent_at()), HistoryText(m)});
    }
    return Table(rows);
  }
  if (c.name == "conversations") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, first, {"limit"}, {}));
    RETURN_IF_ERROR(WantPositional(a, 1, 1, c));
    uint32_t limit = 0;
    if (!a.Option("limit").empty()) {
      ASSIGN_OR_RETURN(limit, ParseCount(a.Option("limit"), "--limit"));
    }
    v1::ListConversationsRequest req;
    req.set_user_id(a.positional[0]);
    v1::ListConversationsResponse all;
    do {
      if (limit != 0) {
        req.set_page_size(limit -
                          static_cast<uint32_t>(all.conversations_size()));
      }
      v1::ListConversationsResponse page;
      RETURN_IF_ERROR(call(&Stub::ListConversations, req, &page));
      all.mutable_conversations()->MergeFrom(page.conversations());
      req.set_page_token(page.next_page_token());
    } while (!req.page_token().empty() &&
             (limit == 0 ||
              static_cast<uint32_t>(all.conversations_size()) < limit));
    if (options_.json) return Json(all);
    std::vector<std::vector<std::string>> rows = {
        {"CONVERSATION", "TITLE", "UNREAD", "READ", "HEAD", "PEER READ",
         "LAST ACTIVITY", "LAST MESSAGE"}};
    for (const v1::ConversationSummary& s : all.conversations()) {
      const bool direct = s.kind() == v1::CONVERSATION_KIND_DIRECT;
      rows.push_back({s.id(), s.title(), absl::StrCat(s.unread()),
                      absl::StrCat(s.read_seq()), absl::StrCat(s.head_seq()),
                      direct ? absl::StrCat(s.peer_read_seq()) : "-",
                      Time(s.last_activity()),
                      s.has_last_message()
                          ? absl::StrCat(s.last_message().from(), ": ",
                                         s.last_message().text())
                          : "-"});
    }
    return Table(rows);
  }
  if (c.name == "blocks") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, first, {}, {}));
    RETURN_IF_ERROR(WantPositional(a, 1, 1, c));
    v1::ListBlocksRequest req;
    req.set_id(a.positional[0]);
    v1::ListBlocksResponse resp;
    RETURN_IF_ERROR(call(&Stub::ListBlocks, req, &resp));
    if (options_.json) return Json(resp);
    std::vector<std::vector<std::string>> rows = {{"BLOCKED"}};
    for (const std::string& u : resp.users()) rows.push_back({u});
    return Table(rows);
  }
  if (c.name == "stats") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, first, {}, {}));
    RETURN_IF_ERROR(WantPositional(a, 0, 0, c));
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
  if (c.name == "backup") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, first, {}, {}));
    RETURN_IF_ERROR(WantPositional(a, 1, 1, c));
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
  if (c.name == "health") {
    ASSIGN_OR_RETURN(Args a, ParseArgs(words, first, {}, {}));
    RETURN_IF_ERROR(WantPositional(a, 0, 0, c));
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
  // Only a command added to kCommands without a branch above gets here
  // ("help" is answered before).
  return absl::InternalError(absl::StrCat("no branch for \"", c.name, "\""));
}

CommandLine SplitCommandLine(const std::vector<std::string>& args) {
  CommandLine line;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& w = args[i];
    if (w == "--") {
      // Before the command, "--" only ends the flags.
      const size_t rest = line.command.empty() ? i + 1 : i;
      line.command.insert(line.command.end(), args.begin() + rest, args.end());
      break;
    }
    if (w == "--help" || w == "-h" || w == "--version") {
      line.command.push_back(w);
      continue;
    }
    const bool before_command = std::all_of(
        line.command.begin(), line.command.end(),
        [](const std::string& s) { return s == "--help" || s == "-h"; });
    bool global = before_command && !w.empty() && w[0] == '-';
    bool takes_value = false;
    for (const auto& [name, value] : kGlobalFlags) {
      const std::string flag = absl::StrCat("--", name);
      if (w == flag || absl::StartsWith(w, absl::StrCat(flag, "="))) {
        global = true;
        takes_value = value && w == flag;
      }
    }
    if (!global) {
      line.command.push_back(w);
      continue;
    }
    line.flags.push_back(w);
    if (takes_value && i + 1 < args.size()) line.flags.push_back(args[++i]);
  }
  return line;
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
