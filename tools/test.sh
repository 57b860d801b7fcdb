#!/usr/bin/env bash
# Runs every Parley test: installs what it needs (Debian packages, quietly
# when present), builds everything offline with Bazel, runs the gtest suites,
# the cross-process pytest suites against the real binaries (tests/fault, the
# randomized fault checker, among them), the browser tests, the benchmark
# smoke, the fuzz targets for a bounded time, and the gtest suites again under
# ASan and UBSan; ends with the line `N passed, N failed`. Exit status 0 only
# when nothing failed.
#
# Artifacts (logs, JUnit XML, screenshots) go to tests/artifacts/ or to
# $PARLEY_ARTIFACTS.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

tools/deps.sh test || { echo "0 passed, 1 failed"; exit 1; }
# The deploy test (tests/deploy) builds the images and runs the compose stack
# on Debian's Docker; PARLEY_SKIP_DOCKER=1 skips it for quick local runs.
if [ "${PARLEY_SKIP_DOCKER:-0}" != 1 ]; then
  tools/deps.sh docker || { echo "0 passed, 1 failed"; exit 1; }
fi

ARTIFACTS=${PARLEY_ARTIFACTS:-$ROOT/tests/artifacts}
rm -rf "$ARTIFACTS" && mkdir -p "$ARTIFACTS"

BAZEL_FLAGS=(--noshow_progress --show_result=0)
echo "== bazel build //..."
bazel build "${BAZEL_FLAGS[@]}" //... > "$ARTIFACTS/bazel-build.log" 2>&1
if [ $? -ne 0 ]; then
  grep -E '^ERROR' "$ARTIFACTS/bazel-build.log" | head -20
  tail -30 "$ARTIFACTS/bazel-build.log"
  echo "0 passed, 1 failed"
  exit 1
fi

echo "== bazel test //..."
bazel test "${BAZEL_FLAGS[@]}" --test_summary=short //... > "$ARTIFACTS/bazel-test.log" 2>&1
grep -E '^//' "$ARTIFACTS/bazel-test.log" || true
TESTLOGS=$(bazel info bazel-testlogs 2>/dev/null)
BIN_DIR=$(bazel info bazel-bin 2>/dev/null)

echo "== pytest tests/"
PARLEY_BIN_DIR=$BIN_DIR PARLEY_ARTIFACTS=$ARTIFACTS \
  /usr/bin/python3 -m pytest tests -q -p no:cacheprovider --import-mode=importlib \
  --junitxml="$ARTIFACTS/pytest.xml" 2>&1 | tee "$ARTIFACTS/pytest.log" | tail -25

reports=("$ARTIFACTS/pytest.xml")
if [ -x tests/browser/run.sh ]; then
  echo "== browser (web unit tests, Chromium end to end)"
  PARLEY_BIN_DIR=$BIN_DIR PARLEY_ARTIFACTS=$ARTIFACTS tests/browser/run.sh \
    > "$ARTIFACTS/browser.log" 2>&1
  tail -15 "$ARTIFACTS/browser.log"
  reports+=("$ARTIFACTS/browser.xml")
fi

if [ -x tests/bench/smoke.sh ]; then
  echo "== benchmark smoke (the tools work and the numbers are sane)"
  PARLEY_BIN_DIR=$BIN_DIR PARLEY_ARTIFACTS=$ARTIFACTS tests/bench/smoke.sh \
    > "$ARTIFACTS/bench-smoke.log" 2>&1
  tail -10 "$ARTIFACTS/bench-smoke.log"
  reports+=("$ARTIFACTS/bench-smoke.xml")
fi

if [ -x tests/fuzz/run.sh ]; then
  echo "== fuzz (libFuzzer targets for everything that parses peer input)"
  PARLEY_ARTIFACTS=$ARTIFACTS tests/fuzz/run.sh > "$ARTIFACTS/fuzz.log" 2>&1
  tail -10 "$ARTIFACTS/fuzz.log"
  reports+=("$ARTIFACTS/fuzz.xml")
fi

# The unit suites again under AddressSanitizer and UndefinedBehaviorSanitizer
# (their configs in .bazelrc build into output directories of their own, so
# the plain binaries above stay as they are).
bazel_runs=("$ARTIFACTS/bazel-test.log" "$TESTLOGS")
for san in asan ubsan; do
  echo "== bazel test --config=$san //..."
  bazel test "${BAZEL_FLAGS[@]}" --config=$san --test_summary=short //... \
    > "$ARTIFACTS/bazel-test-$san.log" 2>&1
  grep -E '^//' "$ARTIFACTS/bazel-test-$san.log" | grep -v ' PASSED' || true
  echo "$(grep -cE '^//.* PASSED' "$ARTIFACTS/bazel-test-$san.log") targets passed under $san"
  bazel_runs+=("$ARTIFACTS/bazel-test-$san.log"
               "$(bazel info --config=$san bazel-testlogs 2>/dev/null)")
done

summary=$(/usr/bin/python3 tools/summarize_tests.py "${bazel_runs[@]}" \
  "${reports[@]}")
echo "$summary"
case "$summary" in
  *" 0 failed"*) exit 0 ;;
  *) exit 1 ;;
esac
