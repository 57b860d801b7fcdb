// HeldBudget: the gateway-wide cap on the bytes that sessions hold for
// parley-service (Sends not yet acknowledged, Syncs not yet answered, frames
// waiting while the link is down).
//
// Each Session has its own caps (--max_buffered_frames/--max_buffered_bytes);
// this one bounds their sum, so a gateway whose service is slow or away holds
// at most `limit` bytes of client frames however many connections it has
// (without it: --max_connections times the per-session cap). A session
// reserves before it holds a frame and releases what it lets go; a frame that
// does not fit gets a retryable BACKPRESSURE error, like a full session.
//
//   HeldBudget budget(256 << 20);
//   if (!budget.TryReserve(bytes)) { ... BACKPRESSURE ... }
//   ...
//   budget.Release(bytes);
//
// Threading: thread-safe and lock-free; sessions on every I/O thread share
// one.
#ifndef PARLEY_GATEWAY_HELD_BUDGET_H_
#define PARLEY_GATEWAY_HELD_BUDGET_H_

#include <atomic>
#include <cstddef>

namespace parley::gateway {

class HeldBudget final {
 public:
  explicit HeldBudget(size_t limit_bytes) : limit_(limit_bytes) {}
  HeldBudget(const HeldBudget&) = delete;
  HeldBudget& operator=(const HeldBudget&) = delete;

  // Adds `bytes` to what is held if the total stays within the limit.
  bool TryReserve(size_t bytes) {
    size_t used = used_.load(std::memory_order_relaxed);
    do {
      if (bytes > limit_ - used) return false;
    } while (!used_.compare_exchange_weak(used, used + bytes,
                                          std::memory_order_relaxed));
    return true;
  }
  // Returns `bytes` reserved earlier.
  void Release(size_t bytes) {
    used_.fetch_sub(bytes, std::memory_order_relaxed);
  }

  size_t used() const { return used_.load(std::memory_order_relaxed); }
  size_t limit() const { return limit_; }

 private:
  const size_t limit_;
  std::atomic<size_t> used_{0};
};

}  // namespace parley::gateway

#endif  // PARLEY_GATEWAY_HELD_BUDGET_H_
