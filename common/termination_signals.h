// SIGTERM and SIGINT, taken synchronously by main() instead of by a handler.
//
//   int main() {
//     parley::TerminationSignals signals;  // Before any thread starts.
//     ... start servers and threads ...
//     int signal_number = signals.Wait();   // Blocks until SIGTERM/SIGINT.
//     ... drain ...
//   }
//
// The constructor blocks both signals in the calling thread, and every thread
// started afterwards inherits the mask, so the signal stays pending until
// Wait() takes it: no handler ever runs in signal context.
//
// Threading: construct in main() before starting threads; Wait() from one
// thread.
#ifndef PARLEY_COMMON_TERMINATION_SIGNALS_H_
#define PARLEY_COMMON_TERMINATION_SIGNALS_H_

#include <signal.h>

namespace parley {

class TerminationSignals final {
 public:
  TerminationSignals();
  TerminationSignals(const TerminationSignals&) = delete;
  TerminationSignals& operator=(const TerminationSignals&) = delete;

  // Blocks until SIGTERM or SIGINT arrives; returns which.
  int Wait() const;

 private:
  sigset_t set_;
};

}  // namespace parley

#endif  // PARLEY_COMMON_TERMINATION_SIGNALS_H_
