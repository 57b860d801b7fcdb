#include "tools/loadgen/admin_setup.h"

#include <algorithm>
#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"

namespace parley::loadgen {
namespace {

void Authorize(grpc::ClientContext* context, const std::string& admin_key) {
  context->AddMetadata("authorization", absl::StrCat("Bearer ", admin_key));
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(30));
}

absl::Status FromGrpc(const grpc::Status& s, absl::string_view what) {
  if (s.ok() || s.error_code() == grpc::StatusCode::ALREADY_EXISTS) {
    return absl::OkStatus();
  }
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

}  // namespace

absl::Status CreateUsers(v1::Admin::StubInterface* stub,
                         const std::string& admin_key,
                         const std::vector<std::string>& user_ids,
                         int concurrency) {
  std::atomic<size_t> next{0};
  absl::Mutex mu;
  absl::Status first_error;
  auto work = [&] {
    for (size_t i = next++; i < user_ids.size(); i = next++) {
      grpc::ClientContext context;
      Authorize(&context, admin_key);
      v1::CreateUserRequest request;
      request.set_id(user_ids[i]);
      v1::User user;
      absl::Status s = FromGrpc(stub->CreateUser(&context, request, &user),
                                absl::StrCat("CreateUser ", user_ids[i]));
      if (!s.ok()) {
        absl::MutexLock lock(&mu);
        if (first_error.ok()) first_error = s;
        next = user_ids.size();
        return;
      }
    }
  };
  std::vector<std::thread> threads;
  const int n = std::max(1, std::min<int>(concurrency, user_ids.size()));
  for (int i = 0; i < n; ++i) threads.emplace_back(work);
  for (std::thread& t : threads) t.join();
  return first_error;
}

absl::Status CreateGroup(v1::Admin::StubInterface* stub,
                         const std::string& admin_key,
                         const std::string& group_id,
                         const std::vector<std::string>& members) {
  constexpr size_t kBatch = 100;
  {
    grpc::ClientContext context;
    Authorize(&context, admin_key);
    v1::CreateGroupRequest request;
    request.set_id(group_id);
    for (size_t i = 0; i < std::min(kBatch, members.size()); ++i) {
      request.add_members(members[i]);
    }
    v1::Group group;
    absl::Status s = FromGrpc(stub->CreateGroup(&context, request, &group),
                              absl::StrCat("CreateGroup ", group_id));
    if (!s.ok()) return s;
  }
  for (size_t start = kBatch; start < members.size(); start += kBatch) {
    grpc::ClientContext context;
    Authorize(&context, admin_key);
    v1::AddMembersRequest request;
    request.set_group_id(group_id);
    for (size_t i = start; i < std::min(start + kBatch, members.size()); ++i) {
      request.add_user_ids(members[i]);
    }
    v1::Group group;
    absl::Status s = FromGrpc(stub->AddMembers(&context, request, &group),
                              absl::StrCat("AddMembers ", group_id));
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace parley::loadgen
