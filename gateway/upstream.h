// Upstream: how a client Session reaches parley-service.
//
// The Session (gateway/session.h) talks to the service only through this
// interface; the production implementation is UpstreamLink
// (gateway/upstream_link.h), a gRPC adapter over a few long-lived
// GatewayLink.Connect streams, and tests pass a fake.
//
// Generations: Open() returns a generation number larger than any the session
// held before, even when the open went to another stream or service replica
// than its last one; Frame() is refused unless it carries the generation of
// the session's last Open() and the stream that open went to has stayed up
// since. The link notifies a session with OnLinkDown(generation it holds) and
// OnLinkUp(a generation larger than any it holds) when it must re-announce.
// That way a frame can never overtake the re-announcement (SessionOpen with
// reannounce = true) after a reconnect or a move: the session re-announces
// first, and only then sends frames on the new generation.
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

  // Queues a SessionOpen on the session's stream (placing the session on a
  // live one when it has none or its own is down). Returns the session's new
  // generation, or nullopt when no stream is up (nothing is queued).
  virtual std::optional<uint64_t> Open(const parley::v1::SessionOpen& open) = 0;

  // Queues a client frame if `generation` is the one the session's last
  // Open() returned and that stream is still up; returns false (nothing
  // queued) otherwise.
  virtual bool Frame(uint64_t generation, parley::v1::SessionFrame frame) = 0;

  // Tells the service that a session ended. Best effort: dropped when the
  // stream is down, since the service forgets a broken stream's sessions.
  virtual void Close(parley::v1::SessionClose close) = 0;
};

}  // namespace parley::gateway

#endif  // PARLEY_GATEWAY_UPSTREAM_H_
