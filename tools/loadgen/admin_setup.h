// Creating the load generator's users and groups through Parley's admin API
// (parley.v1.Admin, `authorization: Bearer <admin key>`), before any
// measurement starts. Users that already exist are fine (reruns).
//
// Takes the stub interface so tests can pass the generated mock. Thread-safe:
// CreateUsers() runs `concurrency` threads of blocking calls on the one stub,
// so the service's group commit can batch the inserts.
#ifndef PARLEY_TOOLS_LOADGEN_ADMIN_SETUP_H_
#define PARLEY_TOOLS_LOADGEN_ADMIN_SETUP_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "parley/v1/admin.grpc.pb.h"

namespace parley::loadgen {

absl::Status CreateUsers(v1::Admin::StubInterface* stub,
                         const std::string& admin_key,
                         const std::vector<std::string>& user_ids,
                         int concurrency);

// Creates `group_id` with `members` (added in batches); an existing group
// gets the members added.
absl::Status CreateGroup(v1::Admin::StubInterface* stub,
                         const std::string& admin_key,
                         const std::string& group_id,
                         const std::vector<std::string>& members);

}  // namespace parley::loadgen

#endif  // PARLEY_TOOLS_LOADGEN_ADMIN_SETUP_H_
