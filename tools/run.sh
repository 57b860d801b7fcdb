#!/usr/bin/env bash
# The main job: builds Parley, starts parley-service (embedded SQLite store
# under .parley/data) and parley-gateway on localhost, creates the demo users
# alice and bob and the group "team", and prints the browser URLs.
# Ctrl-C (or SIGTERM) stops both processes cleanly. PARLEY_STATE_DIR moves
# the state directory (default .parley in the checkout).
#
# Ports (override with the same environment variables the binaries read):
#   PARLEY_LISTEN_ADDRESS  gateway, WebSocket + browser client  127.0.0.1:8080
#   PARLEY_LINK_ADDRESS    service, gateway link (gRPC)          127.0.0.1:7400
#   PARLEY_ADMIN_ADDRESS   service, admin API (gRPC)             127.0.0.1:7401
#   PARLEY_METRICS_ADDRESS service, /metrics                     127.0.0.1:9401
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=${PARLEY_STATE_DIR:-$ROOT/.parley}

tools/deps.sh build

mkdir -p "$STATE"
echo "parley: building (offline, Debian's Bazel)..."
bazel build --noshow_progress //service:parley-service //gateway:parley-gateway \
  //tools:parleyctl 2>"$STATE/build.log" || {
  if grep -qE "no such (package|target) '//(service|gateway)" "$STATE/build.log"; then
    echo "parley: parley-service or parley-gateway does not exist in this checkout yet;" >&2
    echo "        see the open issues. Build output: $STATE/build.log" >&2
  else
    tail -30 "$STATE/build.log" >&2
  fi
  exit 1
}
rm -f "$STATE/build.log"
BIN=$(bazel info bazel-bin 2>/dev/null)

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
export PARLEY_ADMIN_ADDR=$PARLEY_ADMIN_ADDRESS

pids=()
stopping=
stop() {
  stopping=1
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "parley: stopped"
}
trap stop INT TERM EXIT

# Waits until LOG has a line with event=EVENT, or the process PID exits.
wait_ready() {
  local log=$1 event=$2 pid=$3
  for _ in $(seq 1 300); do
    grep -q "event=$event" "$log" && return 0
    kill -0 "$pid" 2>/dev/null || { tail -20 "$log" >&2; return 1; }
    sleep 0.1
  done
  echo "parley: no $event in $log after 30s" >&2
  return 1
}

"$BIN/service/parley-service" --data_dir="$STATE/data" 2>"$STATE/service.log" &
pids+=($!)
wait_ready "$STATE/service.log" service.ready "${pids[0]}"

"$BIN/gateway/parley-gateway" --service_address="$PARLEY_LINK_ADDRESS" \
  --web_root="$ROOT/web" 2>"$STATE/gateway.log" &
pids+=($!)
wait_ready "$STATE/gateway.log" gateway.ready "${pids[1]}"

ctl() { "$BIN/tools/parleyctl" "$@"; }
# Idempotent seeding: "already exists" (exit 6) is fine on a second run.
seed() { ctl "$@" >/dev/null || [ $? -eq 6 ]; }
seed users create alice --name Alice
seed users create bob --name Bob
seed groups create team alice bob --name Team

url="http://$PARLEY_LISTEN_ADDRESS"
cat <<MSG

Parley is running.
  gateway     ws://$PARLEY_LISTEN_ADDRESS   (browser client at $url/)
  admin API   $PARLEY_ADMIN_ADDRESS  (tools/parleyctl, key in $STATE/secrets.env)
  metrics     http://$PARLEY_METRICS_ADDRESS/metrics, $url/metrics
  logs        $STATE/service.log, $STATE/gateway.log

Open these two URLs in two browser windows and chat (tokens valid 24 h):
  alice: $url/?token=$(ctl token alice --ttl 24h --device browser)
  bob:   $url/?token=$(ctl token bob --ttl 24h --device browser)

Press Ctrl-C to stop.
MSG
wait -n "${pids[@]}" || true
[ -n "$stopping" ] || echo "parley: a process exited; see $STATE/*.log" >&2
