// Upstream: how a client Session reaches parley-service.
//
// The Session (gateway/session.h) talks to the service only through this
// interface; the production implementation is UpstreamLink
// (gateway/upstream_link.h), a gRPC adapter over a few long-lived
// GatewayLink.Connect streams, and tests pass a fake.
//
// Generations: every time the stream that carries a session comes up it gets
// a new, larger generation number. Open() returns the generation the event was
// queued on; Frame() is refused unless the stream is still at the generation
// the session last opened on. That way a frame can never overtake the
// re-announcement (SessionOpen with reannounce = true) after a reconnect: the
// session re-announces first, and only then sends frames on the new
// generation.
//
// Threading: every method is thread-safe and non-blocking; they are called
// from the connections' executors.
#ifndef PARLEY_GATEWAY_UPSTREAM_H_
#define PARLEY_GATEWAY_UPSTREAM_H_

#include <cstdint>
#include <optional>

#include "parley/v1/gateway_link.pb.h"

namespace parley::gateway {

class Upstream {
 public:
  virtual ~Upstream() = default;

  // Queues a SessionOpen on the session's stream. Returns the stream's
  // generation, or nullopt when that stream is down (nothing is queued).
  virtual std::optional<uint64_t> Open(const parley::v1::SessionOpen& open) = 0;

  // Queues a client frame if the session's stream is up and still at
  // `generation`; returns false (nothing queued) otherwise.
  virtual bool Frame(uint64_t generation, parley::v1::SessionFrame frame) = 0;

  // Tells the service that a session ended. Best effort: dropped when the
  // stream is down, since the service forgets a broken stream's sessions.
  virtual void Close(parley::v1::SessionClose close) = 0;
};

}  // namespace parley::gateway

#endif  // PARLEY_GATEWAY_UPSTREAM_H_
