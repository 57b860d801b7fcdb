// libFuzzer target: the link's batch decoder on the service side, and what
// parley-service does with the events a gateway sends.
//
// The input is one GatewayBatch in protobuf's binary form, as a gateway
// writes it on its GatewayLink.Connect stream. It is parsed and handed to
// GatewayBatchHandler, the code GatewayLinkService's reactor runs on each
// batch (the first event must be LinkHello, else the stream closes; then each
// event goes to Messaging), against a real Messaging on a FakeStore with four
// users and a group, while a second gateway's stream holds live sessions of bob
// and carol so that deliveries cross streams. Then both streams close, as when
// the gateways go away, and the presence grace period passes.
//
// The clock is fixed and the token secret is "fuzz-secret", so the seed
// corpus carries tokens that verify (see tests/fuzz/make_seeds.py). Checked:
//   * every Delivery's inbox_seqs is empty or one per session_ids entry;
//   * each session's inbox Messages come in increasing inbox_seq (router.h:
//     nothing repeated);
//   * nothing is sent to a stream after Messaging::StreamClosed returned
//     (the reactor behind it may be gone).
// Built and run by tests/fuzz/run.sh (--config=fuzz, clang).
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/fuzz/fuzz_check.h"
#include "common/jwt.h"
#include "common/log.h"
#include "common/metrics.h"
#include "google/protobuf/stubs/logging.h"
#include "parley/v1/gateway_link.pb.h"
#include "service/fake_store.h"
#include "service/gateway_batch_handler.h"
#include "service/local_router.h"
#include "service/messaging.h"
#include "service/service_metrics.h"

namespace parley::service {
namespace {

constexpr char kSecret[] = "fuzz-secret";

// 2026-01-01T00:00:00Z.
absl::Time Now() { return absl::FromUnixSeconds(1767225600); }

// A gateway's stream: checks every event as it is sent.
class CheckedStream final : public LinkStream {
 public:
  explicit CheckedStream(std::string name) : name_(std::move(name)) {}

  void Send(v1::ServiceEvent event) override {
    if (closed_) {
      FuzzFail(absl::StrCat("sent to ", name_,
                            " after it closed: ", event.ShortDebugString()));
    }
    if (event.has_accepted()) {
      last_inbox_seq_.erase(event.accepted().session_id());
    }
    if (!event.has_delivery()) return;
    const v1::Delivery& delivery = event.delivery();
    if (delivery.inbox_seqs_size() != 0 &&
        delivery.inbox_seqs_size() != delivery.session_ids_size()) {
      FuzzFail(absl::StrCat("a Delivery on ", name_, " with ",
                            delivery.session_ids_size(), " sessions and ",
                            delivery.inbox_seqs_size(), " inbox_seqs"));
    }
    if (!delivery.frame().has_message()) return;
    for (int i = 0; i < delivery.session_ids_size(); ++i) {
      const uint64_t inbox_seq = i < delivery.inbox_seqs_size()
                                     ? delivery.inbox_seqs(i)
                                     : delivery.frame().message().inbox_seq();
      uint64_t& last = last_inbox_seq_[delivery.session_ids(i)];
      if (inbox_seq <= last) {
        FuzzFail(absl::StrCat("session ", delivery.session_ids(i), " on ",
                              name_, " got inbox_seq ", inbox_seq, " after ",
                              last));
      }
      last = inbox_seq;
    }
  }

  void MarkClosed() { closed_ = true; }

 private:
  const std::string name_;
  bool closed_ = false;
  // The last inbox Message's inbox_seq per session, since it was accepted.
  std::map<std::string, uint64_t> last_inbox_seq_;
};

void OpenSession(Messaging& messaging, LinkStream* stream,
                 const std::string& session_id, const std::string& user) {
  v1::SessionOpen open;
  open.set_session_id(session_id);
  open.set_token(
      MintToken({user, Now() + absl::Hours(1), Now(), "phone"}, kSecret));
  messaging.OpenSession(stream, open);
}

void HandleBatch(const v1::GatewayBatch& batch) {
  static Registry* const registry = new Registry();
  static ServiceMetrics* const metrics = new ServiceMetrics(*registry);
  FakeStore store;
  for (const char* user : {"alice", "bob", "carol", "dave"}) {
    (void)store.CreateUser({user, "", Now()});
  }
  (void)store.CreateGroup({"team", "", {"alice", "bob", "carol"}, Now()}, 100);
  LocalRouter router(/*max_sessions_per_user=*/4);
  MessagingOptions options;
  options.tokens = TokenVerifier::WithSecret(kSecret);
  std::vector<std::function<void()>> after_grace;
  Messaging messaging(
      &store, &router, metrics, options, [] { return Now(); },
      [&after_grace](absl::Duration, std::function<void()> task) {
        after_grace.push_back(std::move(task));
      });

  CheckedStream other("gw-2");
  v1::LinkHello other_hello;
  other_hello.set_gateway_id("gw-2");
  messaging.StreamOpened(&other, other_hello);
  OpenSession(messaging, &other, "gw-2/bob", "bob");
  OpenSession(messaging, &other, "gw-2/carol", "carol");

  // As GatewayLinkService's reactor does: the batch, then the stream ends.
  CheckedStream stream("gw-1");
  GatewayBatchHandler handler(&messaging, &stream, "fuzz");
  (void)handler.Handle(batch);
  handler.Close("the gateway went away");
  stream.MarkClosed();
  for (std::function<void()>& task : after_grace) task();
  messaging.StreamClosed(&other);
  other.MarkClosed();
}

}  // namespace
}  // namespace parley::service

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  parley::SetLogLevel(parley::LogLevel::kError);
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  parley::v1::GatewayBatch batch;
  if (!batch.ParseFromArray(data, static_cast<int>(size))) return 0;
  parley::service::HandleBatch(batch);
  return 0;
}
