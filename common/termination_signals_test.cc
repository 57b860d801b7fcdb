#include "common/termination_signals.h"

#include <unistd.h>

#include <thread>

#include "gtest/gtest.h"

namespace parley {
namespace {

TEST(TerminationSignalsTest, SigtermIsTakenByWaitNotByTheDefaultAction) {
  TerminationSignals signals;
  // Sent from another thread, as a supervisor would: with the mask the
  // process is not killed and the signal waits for Wait().
  std::thread sender([] { kill(getpid(), SIGTERM); });
  EXPECT_EQ(signals.Wait(), SIGTERM);
  sender.join();
}

TEST(TerminationSignalsTest, SigintIsTakenToo) {
  TerminationSignals signals;
  kill(getpid(), SIGINT);
  EXPECT_EQ(signals.Wait(), SIGINT);
}

}  // namespace
}  // namespace parley
