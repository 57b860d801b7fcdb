#!/usr/bin/env bash
# The main job: builds Parley (optimized, as the images are), starts
# parley-service (embedded SQLite store under .parley/data) and
# parley-gateway on localhost, creates the demo users alice and bob and the
# group "team" (once: a re-run finds them), and prints the browser URLs.
# When parley-service dies, it is started again while the gateway keeps the
# browsers connected: the demo of Parley's headline. Ctrl-C (or SIGTERM,
# or a hangup) stops both processes cleanly. Logs are appended to, run
# after run.
#
#   PARLEY_STATE_DIR   the state directory (default .parley in the checkout)
#   PARLEY_BUILD_MODE  Bazel's compilation mode: opt (default), fastbuild, dbg
#
# Ports (override with the same environment variables the binaries read):
#   PARLEY_LISTEN_ADDRESS  gateway, WebSocket + browser client  127.0.0.1:8080
#   PARLEY_LINK_ADDRESS    service, gateway link (gRPC)          127.0.0.1:7400
#   PARLEY_ADMIN_ADDRESS   service, admin API (gRPC)             127.0.0.1:7401
#   PARLEY_METRICS_ADDRESS service, /metrics                     127.0.0.1:9401
#   PARLEY_GATEWAY_METRICS_ADDRESS  gateway, /metrics            127.0.0.1:9402
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=${PARLEY_STATE_DIR:-$ROOT/.parley}

# A Ctrl-C, SIGTERM or hangup before the processes start (during the build) ends
# run.sh once the command in progress returns: Bazel finishes or cancels
# its build and exits normally, and without a trap bash would go on.
trap 'echo "parley: interrupted" >&2; exit 130' INT TERM HUP

tools/deps.sh build

MODE=${PARLEY_BUILD_MODE:-opt}
case "$MODE" in
  opt|fastbuild|dbg) ;;
  *) echo "parley: PARLEY_BUILD_MODE must be opt, fastbuild or dbg, not '$MODE'" >&2; exit 2 ;;
esac

mkdir -p "$STATE"
echo "parley: building (-c $MODE, offline, Debian's Bazel)..."
bazel build -c "$MODE" --noshow_progress //service:parley-service \
  //gateway:parley-gateway //tools:parleyctl 2>"$STATE/build.log" || {
  if grep -qE "no such (package|target) '//(service|gateway)" "$STATE/build.log"; then
    echo "parley: parley-service or parley-gateway does not exist in this checkout yet;" >&2
    echo "        see the open issues. Build output: $STATE/build.log" >&2
  else
    tail -30 "$STATE/build.log" >&2
  fi
  exit 1
}
rm -f "$STATE/build.log"
BIN=$(bazel info -c "$MODE" bazel-bin 2>/dev/null)

mkdir -p "$STATE/data"
# Demo secrets, generated once and kept with the demo's data. Production
# deployments set their own (see deploy/ and docs/operators.md).
if [ ! -f "$STATE/secrets.env" ]; then
  umask 077
  {
    echo "PARLEY_TOKEN_SECRET=$(head -c 32 /dev/urandom | base64 | tr -d '=+/')"
    echo "PARLEY_ADMIN_KEY=$(head -c 24 /dev/urandom | base64 | tr -d '=+/')"
  } > "$STATE/secrets.env"
fi
set -a; . "$STATE/secrets.env"; set +a
export PARLEY_LINK_ADDRESS=${PARLEY_LINK_ADDRESS:-127.0.0.1:7400}
export PARLEY_ADMIN_ADDRESS=${PARLEY_ADMIN_ADDRESS:-127.0.0.1:7401}
export PARLEY_METRICS_ADDRESS=${PARLEY_METRICS_ADDRESS:-127.0.0.1:9401}
export PARLEY_LISTEN_ADDRESS=${PARLEY_LISTEN_ADDRESS:-127.0.0.1:8080}
# The gateway's own metrics listener (PARLEY_METRICS_ADDRESS is the
# service's; the flag given on the command line wins for the gateway).
PARLEY_GATEWAY_METRICS_ADDRESS=${PARLEY_GATEWAY_METRICS_ADDRESS:-127.0.0.1:9402}
export PARLEY_ADMIN_ADDR=$PARLEY_ADMIN_ADDRESS

pids=()
stopping=
stop() {
  stopping=1
  trap - INT TERM HUP EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "parley: stopped"
}
trap stop INT TERM HUP EXIT

# Waits until LOG has a line with event=EVENT after byte FROM, or the
# process PID exits.
wait_ready() {
  local log=$1 event=$2 pid=$3 from=$4
  for _ in $(seq 1 300); do
    tail -c +"$((from + 1))" "$log" | grep -q "event=$event" && return 0
    kill -0 "$pid" 2>/dev/null || { tail -20 "$log" >&2; return 1; }
    sleep 0.1
  done
  echo "parley: no $event in $log after 30s" >&2
  return 1
}

# Appends a line marking this run, returns the log's size before it.
log_start() {
  local log=$1
  touch "$log"
  stat -c %s "$log"
  echo "# parley: tools/run.sh started $(date -u +%FT%TZ)" >> "$log"
}

# Runs parley-service and starts it again whenever it exits, until run.sh
# stops (then it forwards the signal). A service that keeps dying within a
# second of starting is given up on.
supervise_service() {
  local child=0 quick=0 started code
  trap 'kill -TERM "$child" 2>/dev/null; wait "$child" 2>/dev/null; exit 0' TERM INT
  while :; do
    started=$SECONDS
    "$BIN/service/parley-service" --data_dir="$STATE/data" 2>>"$STATE/service.log" &
    child=$!
    echo "$child" > "$STATE/service.pid"
    code=0
    wait "$child" || code=$?
    if [ $((SECONDS - started)) -le 1 ]; then quick=$((quick + 1)); else quick=0; fi
    if [ "$quick" -ge 5 ]; then
      echo "parley: parley-service keeps exiting at start (code $code); see $STATE/service.log" >&2
      exit 1
    fi
    echo "parley: parley-service exited (code $code); starting it again (clients stay connected to the gateway)" >&2
  done
}

# The service and the gateway get process groups of their own (job control),
# so a Ctrl-C, which the terminal sends to run.sh's group, reaches run.sh
# alone and its `stop` ends them: were they to see it too, one could exit
# before run.sh runs its trap, and run.sh would report it as a crash.
set -m
from=$(log_start "$STATE/service.log")
supervise_service &
pids+=($!)
wait_ready "$STATE/service.log" service.ready "${pids[0]}" "$from"

from=$(log_start "$STATE/gateway.log")
"$BIN/gateway/parley-gateway" --service_address="$PARLEY_LINK_ADDRESS" \
  --metrics_address="$PARLEY_GATEWAY_METRICS_ADDRESS" \
  --web_root="$ROOT/web" 2>>"$STATE/gateway.log" &
pids+=($!)
set +m
wait_ready "$STATE/gateway.log" gateway.ready "${pids[1]}" "$from"

ctl() { "$BIN/tools/parleyctl" "$@"; }
# Idempotent seeding: on a re-run the demo users and group exist already
# (parleyctl's exit code 6, ALREADY_EXISTS), which is not worth a word.
seed() {
  local code=0 err
  err=$(ctl "$@" 2>&1 >/dev/null) || code=$?
  [ "$code" -eq 0 ] || [ "$code" -eq 6 ] || { echo "$err" >&2; return "$code"; }
}
seed users create alice --name Alice
seed users create bob --name Bob
seed groups create team alice bob --name Team

url="http://$PARLEY_LISTEN_ADDRESS"
cat <<MSG

Parley is running.
  gateway     ws://$PARLEY_LISTEN_ADDRESS   (browser client at $url/)
  admin API   $PARLEY_ADMIN_ADDRESS  (tools/parleyctl, key in $STATE/secrets.env)
  metrics     http://$PARLEY_METRICS_ADDRESS/metrics (service), http://$PARLEY_GATEWAY_METRICS_ADDRESS/metrics (gateway)
  logs        $STATE/service.log, $STATE/gateway.log (appended to, run after run)
  demo        users alice and bob, group "team" (both of them)

Open these two URLs in two browser windows and chat (tokens valid 24 h):
  alice: $url/?token=$(ctl token alice --ttl 24h --device browser)
  bob:   $url/?token=$(ctl token bob --ttl 24h --device browser)

Try the headline: kill the service while you chat,
  kill -9 \$(cat $STATE/service.pid)
run.sh starts it again; the browsers stay connected and nothing sent is lost.

Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}" || true
[ -n "$stopping" ] || echo "parley: a process exited; see $STATE/*.log" >&2
