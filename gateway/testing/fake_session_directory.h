// FakeSessionDirectory: a SessionDirectory (gateway/service_batch_dispatch.h)
// over Sessions a test owns, for DispatchServiceBatch's test and the
// service_batch fuzz target. Test-only.
//
// Each session is added with the link stream it is on. What is posted to a
// session's handle waits, as it would for the session's executor, until
// RunPosted() runs everything posted so far in posting order (so each
// session's own calls keep their order).
//
// Threading: thread-compatible; a test drives it from one thread. The
// Sessions must outlive it.
#ifndef PARLEY_GATEWAY_TESTING_FAKE_SESSION_DIRECTORY_H_
#define PARLEY_GATEWAY_TESTING_FAKE_SESSION_DIRECTORY_H_

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gateway/service_batch_dispatch.h"
#include "gateway/session.h"
#include "google/protobuf/repeated_field.h"

namespace parley::gateway::testing {

class FakeSessionDirectory final : public SessionDirectory {
 public:
  // Attaches `session` (by its session_id) on link stream `stream`.
  void Add(Session* session, int stream) {
    entries_[session->session_id()] = {
        std::make_shared<QueuedHandle>(session, &posted_), stream};
  }

  // Runs what was posted, in order, including what those calls post.
  void RunPosted() {
    for (size_t i = 0; i < posted_.size(); ++i) {
      // Moved out first: the call may post more, growing posted_.
      std::function<void()> call = std::move(posted_[i]);
      call();
    }
    posted_.clear();
  }

  // Calls posted and not yet run.
  size_t pending() const { return posted_.size(); }

  // SessionDirectory.
  std::shared_ptr<SessionHandle> HandleFor(
      const std::string& session_id) const override {
    auto it = entries_.find(session_id);
    return it == entries_.end() ? nullptr : it->second.handle;
  }
  std::vector<std::shared_ptr<SessionHandle>> HandlesFor(
      const google::protobuf::RepeatedPtrField<std::string>& ids)
      const override {
    std::vector<std::shared_ptr<SessionHandle>> handles;
    for (const std::string& id : ids) handles.push_back(HandleFor(id));
    return handles;
  }
  std::vector<std::shared_ptr<SessionHandle>> HandlesOnStream(
      int stream) const override {
    std::vector<std::shared_ptr<SessionHandle>> handles;
    for (const auto& [id, entry] : entries_) {
      if (entry.stream == stream) handles.push_back(entry.handle);
    }
    return handles;
  }

 private:
  class QueuedHandle final : public SessionHandle {
   public:
    QueuedHandle(Session* session, std::vector<std::function<void()>>* posted)
        : session_(session), posted_(posted) {}
    void Post(std::function<void(Session&)> fn) override {
      posted_->push_back(
          [session = session_, fn = std::move(fn)] { fn(*session); });
    }

   private:
    Session* const session_;
    std::vector<std::function<void()>>* const posted_;
  };
  struct Entry {
    std::shared_ptr<SessionHandle> handle;
    int stream = 0;
  };

  std::map<std::string, Entry> entries_;
  std::vector<std::function<void()>> posted_;
};

}  // namespace parley::gateway::testing

#endif  // PARLEY_GATEWAY_TESTING_FAKE_SESSION_DIRECTORY_H_
