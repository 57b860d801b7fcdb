#!/usr/bin/env bash
# Runs the browser client's tests: the unit tests of web/parley.js and the
# browser test (tests/browser/browser.test.mjs: Debian's headless Chromium,
# driven by playwright-core, against the real parley-service and
# parley-gateway). Installs what it needs first, quietly and only when
# missing: Debian's chromium, and the npm packages of package-lock.json.
#
#   PARLEY_BIN_DIR    the built binaries (default <repo>/bazel-bin)
#   PARLEY_ARTIFACTS  JUnit XML (browser.xml), screenshots, process logs
#                     (default <repo>/tests/artifacts)
#
# Exit status 0 only when every test passed.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ARTIFACTS=${PARLEY_ARTIFACTS:-$ROOT/tests/artifacts}
export PARLEY_ARTIFACTS=$ARTIFACTS
export PARLEY_BIN_DIR=${PARLEY_BIN_DIR:-$ROOT/bazel-bin}
mkdir -p "$ARTIFACTS"
rm -f "$ARTIFACTS"/browser-*.png "$ARTIFACTS"/browser-*.log "$ARTIFACTS/browser.xml"

# A JUnit file that says why nothing ran, so the failure shows in reports.
setup_failed() {
  local why=$1
  echo "browser tests: $why" >&2
  cat > "$ARTIFACTS/browser.xml" <<XML
<?xml version="1.0" encoding="utf-8"?>
<testsuites>
  <testsuite name="browser" tests="1" failures="1">
    <testcase name="browser test setup" classname="browser"><failure message="setup failed">$(printf '%s' "$why" | sed 's/&/\&amp;/g; s/</\&lt;/g; s/>/\&gt;/g')</failure></testcase>
  </testsuite>
</testsuites>
XML
  exit 1
}

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null 2>&1 \
    || setup_failed "node and npm are missing and could not be installed"
fi
# --test-reporter=junit needs Node 20.13 or later; playwright-core needs 20.
node_version=$(node -p 'process.versions.node')
node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=13)?0:1)' \
  || setup_failed "Node $node_version is too old: the browser tests need Node 20.13 or later"

if [ ! -x /usr/bin/chromium ]; then
  echo "browser tests: installing Debian's chromium" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -qq chromium >/dev/null 2>&1 || {
    $SUDO apt-get update -qq >/dev/null 2>&1 || true
    $SUDO apt-get install -y -qq chromium >/dev/null 2>&1
  } || setup_failed "apt-get install chromium failed"
fi

if [ ! -d "$HERE/node_modules/playwright-core" ]; then
  (cd "$HERE" && npm ci --silent --no-audit --no-fund >"$ARTIFACTS/browser-npm.log" 2>&1) \
    || setup_failed "npm ci failed in tests/browser (see $ARTIFACTS/browser-npm.log)"
fi

cd "$ROOT"
node --test \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=junit --test-reporter-destination="$ARTIFACTS/browser.xml" \
  web/parley.test.mjs tests/browser/browser.test.mjs
