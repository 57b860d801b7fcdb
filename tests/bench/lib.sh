# Shared helpers for tests/bench/run.sh and tests/bench/smoke.sh: start the
# systems under test on loopback ports chosen at run time, remember every PID
# we started, and kill exactly those (never by name: other people run the same
# binaries on this machine).
#
# Callers set BENCH_WORK (a scratch directory) and BIN (a bazel-bin directory
# with service/parley-service, gateway/parley-gateway, tools/loadgen/*).

BENCH_PIDS=()
BENCH_DIRS=()
# PID -> the signal that stops it (default TERM; PostgreSQL's fast shutdown
# is INT).
declare -A BENCH_SIGNAL=()
BENCH_SECRET="bench-secret-$$"
BENCH_ADMIN_KEY="bench-admin-$$"

bench_cleanup() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do
    kill "-${BENCH_SIGNAL[$pid]:-TERM}" "$pid" 2>/dev/null || true
  done
  for pid in "${BENCH_PIDS[@]}"; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
  BENCH_PIDS=()
  for pid in "${BENCH_DIRS[@]}"; do rm -rf "$pid"; done
  BENCH_DIRS=()
}

# Stops one process we started and forgets it.
bench_stop() {
  local target=$1 pid kept=()
  kill "-${BENCH_SIGNAL[$target]:-TERM}" "$target" 2>/dev/null || true
  for _ in $(seq 50); do
    kill -0 "$target" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$target" 2>/dev/null || true
  for pid in "${BENCH_PIDS[@]}"; do
    [[ $pid == "$target" ]] || kept+=("$pid")
  done
  BENCH_PIDS=("${kept[@]}")
}

# wait_for_log FILE REGEX SECONDS: prints the first matching line.
wait_for_log() {
  local file=$1 regex=$2 seconds=$3 line
  for _ in $(seq $((seconds * 10))); do
    line=$(grep -E -m1 "$regex" "$file" 2>/dev/null || true)
    if [[ -n $line ]]; then
      echo "$line"
      return 0
    fi
    sleep 0.1
  done
  echo "timed out waiting for /$regex/ in $file:" >&2
  tail -5 "$file" >&2 || true
  return 1
}

# field LINE KEY: the value of key=value in a log line.
field() { grep -o "$2=[^ ]*" <<<"$1" | head -1 | cut -d= -f2-; }

# start_service NAME [extra flags...]: sets SERVICE_PID, SERVICE_LINK,
# SERVICE_ADMIN, SERVICE_METRICS.
start_service() {
  local name=$1
  shift
  local dir="$BENCH_WORK/$name"
  rm -rf "$dir" && mkdir -p "$dir/data"
  "$BIN/service/parley-service" --link_address=127.0.0.1:0 \
    --admin_address=127.0.0.1:0 --metrics_address=127.0.0.1:0 \
    --data_dir="$dir/data" --token_secret="$BENCH_SECRET" \
    --admin_key="$BENCH_ADMIN_KEY" "$@" 2>"$dir/stderr.log" &
  SERVICE_PID=$!
  BENCH_PIDS+=("$SERVICE_PID")
  local line
  line=$(wait_for_log "$dir/stderr.log" 'event=service.ready' 30) || return 1
  SERVICE_LINK=$(field "$line" link_address)
  SERVICE_ADMIN=$(field "$line" admin_address)
  SERVICE_METRICS=$(field "$line" metrics_address)
}

# scrape_metrics ADDRESS FILE: a process's Prometheus /metrics into FILE.
scrape_metrics() {
  /usr/bin/python3 -c 'import sys, urllib.request
sys.stdout.write(urllib.request.urlopen(
    "http://" + sys.argv[1] + "/metrics", timeout=10).read().decode())' \
    "$1" >"$2" || rm -f "$2"
}

# start_gateway NAME SERVICE_LINK [extra flags...]: sets GATEWAY_PID,
# GATEWAY_ADDR. Limits that would throttle a benchmark are lifted; the
# connection cap is what the fd limit allows.
start_gateway() {
  local name=$1 link=$2
  shift 2
  local dir="$BENCH_WORK/$name"
  mkdir -p "$dir"
  local cap=$(( $(ulimit -Hn) - 200 ))
  "$BIN/gateway/parley-gateway" --listen_address=127.0.0.1:0 \
    --service_address="$link" --max_connections="$cap" \
    --rate_limit_per_second=1000000000 --rate_limit_burst=1000000000 \
    --rate_limit_bytes_per_second=1e15 --rate_limit_bytes_burst=1e15 \
    --listen_backlog=4096 --metrics_address=127.0.0.1:0 "$@" \
    2>"$dir/stderr.log" &
  GATEWAY_PID=$!
  BENCH_PIDS+=("$GATEWAY_PID")
  local line
  line=$(wait_for_log "$dir/stderr.log" 'event=gateway.ready' 30) || return 1
  GATEWAY_ADDR=$(grep -o 'address=[0-9.]*:[0-9]*' <<<"$line" | head -1 | cut -d= -f2)
  # The upstream stream must be up before clients arrive.
  wait_for_log "$dir/stderr.log" 'event=gateway.upstream_up' 30 >/dev/null || return 1
}

# start_relay NAME: sets RELAY_PID, RELAY_ADDR.
start_relay() {
  local dir="$BENCH_WORK/$1"
  mkdir -p "$dir"
  "$BIN/tools/loadgen/ws-relay" --listen_address=127.0.0.1:0 \
    2>"$dir/stderr.log" &
  RELAY_PID=$!
  BENCH_PIDS+=("$RELAY_PID")
  local line
  line=$(wait_for_log "$dir/stderr.log" 'event=relay.ready' 30) || return 1
  RELAY_ADDR=$(field "$line" address)
}

# free_port: a loopback port that was free a moment ago.
free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_nats NAME [jetstream]: nats-server with a websocket listener, with
# JetStream's file store in NAME's directory when asked; sets NATS_PID,
# NATS_ADDR.
start_nats() {
  local dir="$BENCH_WORK/$1"
  mkdir -p "$dir"
  local port
  port=$(free_port)
  cat >"$dir/nats.conf" <<CONF
listen: "127.0.0.1:-1"
max_payload: 1048576
write_deadline: "10s"
websocket {
  listen: "127.0.0.1:$port"
  no_tls: true
}
CONF
  if [[ ${2:-} == jetstream ]]; then
    echo "jetstream { store_dir: \"$dir/js\" }" >>"$dir/nats.conf"
  fi
  nats-server -c "$dir/nats.conf" 2>"$dir/stderr.log" >&2 &
  NATS_PID=$!
  BENCH_PIDS+=("$NATS_PID")
  wait_for_log "$dir/stderr.log" 'Server is ready' 30 >/dev/null || return 1
  NATS_ADDR="127.0.0.1:$port"
}

# Flags that point parley-loadgen at the Parley stack started above.
parley_flags() {
  echo "--admin_address=$SERVICE_ADMIN --admin_key=$BENCH_ADMIN_KEY --token_secret=$BENCH_SECRET"
}

# PostgreSQL refuses to run as root, so when we are root its programs run as
# `nobody` (setpriv execs: the PID stays the program's).
UNPRIVILEGED=()
if [[ $(id -u) == 0 ]]; then
  UNPRIVILEGED=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
fi

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}

# start_postgres NAME: a fresh PostgreSQL 15 on a free loopback port with a
# database `parley` (fsync and synchronous_commit on, as in production; the
# rest is PostgreSQL's defaults). Its directory is under /tmp, where `nobody`
# may enter, and is removed at cleanup. Sets PG_PID (the postmaster), PG_URL.
start_postgres() {
  local name=$1 root port
  root=$(mktemp -d "/tmp/parley-bench-$name.XXXXXX")
  BENCH_DIRS+=("$root")
  [[ $(id -u) == 0 ]] && chown nobody:nogroup "$root"
  chmod 700 "$root"
  (cd "$root" && "${UNPRIVILEGED[@]}" "$PG_BIN/initdb" -D "$root/data" \
    -U parley --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
    >"$root/initdb.log" 2>&1) ||
    { tail -5 "$root/initdb.log" >&2; return 1; }
  port=$(free_port)
  (cd "$root" && exec "${UNPRIVILEGED[@]}" "$PG_BIN/postgres" \
    -D "$root/data" -p "$port" -k "$root" -c listen_addresses=127.0.0.1 \
    -c fsync=on -c synchronous_commit=on -c max_connections=200 \
    2>"$root/postgres.log") &
  PG_PID=$!
  BENCH_PIDS+=("$PG_PID")
  BENCH_SIGNAL[$PG_PID]=INT
  for _ in $(seq 300); do
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" -U parley -d postgres &&
      break
    kill -0 "$PG_PID" 2>/dev/null ||
      { tail -5 "$root/postgres.log" >&2; return 1; }
    sleep 0.1
  done
  psql -q -h 127.0.0.1 -p "$port" -U parley -d postgres \
    -c 'CREATE DATABASE parley' || return 1
  PG_URL="postgres://parley@127.0.0.1:$port/parley"
}

# start_bus NAME: nats-server for the replicas (core NATS, no WebSocket);
# sets BUS_PID, BUS_URL.
start_bus() {
  local dir="$BENCH_WORK/$1" port
  mkdir -p "$dir"
  port=$(free_port)
  nats-server -a 127.0.0.1 -p "$port" 2>"$dir/stderr.log" >&2 &
  BUS_PID=$!
  BENCH_PIDS+=("$BUS_PID")
  wait_for_log "$dir/stderr.log" 'Server is ready' 30 >/dev/null || return 1
  BUS_URL="nats://127.0.0.1:$port"
}

# start_cluster REPLICAS GATEWAYS: the scaled-out shape: PostgreSQL,
# nats-server, REPLICAS parley-service replicas on them and GATEWAYS
# gateways, each given every replica and ready once it has a stream up to
# each. Sets CLUSTER_PIDS (all but PostgreSQL's), CLUSTER_GATEWAYS (comma
# list of addresses), CLUSTER_WATCH and CLUSTER_WATCH_TREE (loadgen --watch
# and --watch_tree values: gateway0.., replica0.., nats, postgres),
# CLUSTER_METRICS (the replicas' /metrics addresses, in order) and
# SERVICE_ADMIN (replica 0's admin API: users and groups are every
# replica's).
start_cluster() {
  local replicas=$1 gateways=$2 i links=() admin0="" addrs=() watch=()
  CLUSTER_PIDS=()
  CLUSTER_METRICS=()
  start_postgres postgres || return 1
  start_bus bus || return 1
  CLUSTER_PIDS+=("$BUS_PID")
  watch+=("nats:$BUS_PID")
  for (( i = 0; i < replicas; i++ )); do
    start_service "replica$i" --store="$PG_URL" --nats="$BUS_URL" \
      --replica_id="replica$i" || return 1
    links+=("$SERVICE_LINK")
    [[ -n $admin0 ]] || admin0=$SERVICE_ADMIN
    CLUSTER_PIDS+=("$SERVICE_PID")
    CLUSTER_METRICS+=("$SERVICE_METRICS")
    watch+=("replica$i:$SERVICE_PID")
  done
  local list
  list=$(IFS=,; echo "${links[*]}")
  for (( i = 0; i < gateways; i++ )); do
    start_gateway "gateway$i" "$list" || return 1
    # start_gateway waited for the first replica's stream; wait for all.
    local log="$BENCH_WORK/gateway$i/stderr.log" n=0
    for _ in $(seq 300); do
      n=$(grep -c 'event=gateway.upstream_up' "$log" || true)
      (( n >= replicas )) && break
      sleep 0.1
    done
    (( n >= replicas )) ||
      { echo "gateway$i: $n of $replicas upstreams up" >&2; return 1; }
    addrs+=("$GATEWAY_ADDR")
    CLUSTER_PIDS+=("$GATEWAY_PID")
    watch+=("gateway$i:$GATEWAY_PID")
  done
  SERVICE_ADMIN=$admin0
  CLUSTER_GATEWAYS=$(IFS=,; echo "${addrs[*]}")
  CLUSTER_WATCH=$(IFS=,; echo "${watch[*]}")
  CLUSTER_WATCH_TREE="postgres:$PG_PID"
}

# sample_pg_waits URL DELAY_S SECONDS OUT: after DELAY_S, every 0.1 s for
# SECONDS, what each busy PostgreSQL backend of the database is doing (state
# and wait event: Lock waits, WAL fsync, or waiting for its client, the
# replica), one line per backend and sample, from one psql session.
sample_pg_waits() {
  local url=$1 delay=$2 seconds=$3 out=$4 i
  sleep "$delay"
  for (( i = 0; i < seconds * 10; i++ )); do
    echo "SELECT state || ' ' || coalesce(wait_event_type || ':' || wait_event, 'CPU')
          FROM pg_stat_activity WHERE datname = 'parley'
          AND pid <> pg_backend_pid() AND state <> 'idle';"
    echo "SELECT pg_sleep(0.1);"
  done | psql -q -A -t "$url" >"$out" 2>/dev/null || true
}

# stop_cluster: everything start_cluster started, PostgreSQL last.
stop_cluster() {
  local pid
  for pid in "${CLUSTER_PIDS[@]}"; do bench_stop "$pid"; done
  bench_stop "$PG_PID"
  CLUSTER_PIDS=()
}
