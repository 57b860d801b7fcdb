# Shared helpers for tests/bench/run.sh and tests/bench/smoke.sh: start the
# systems under test on loopback ports chosen at run time, remember every PID
# we started, and kill exactly those (never by name: other people run the same
# binaries on this machine).
#
# Callers set BENCH_WORK (a scratch directory) and BIN (a bazel-bin directory
# with service/parley-service, gateway/parley-gateway, tools/loadgen/*).

BENCH_PIDS=()
BENCH_SECRET="bench-secret-$$"
BENCH_ADMIN_KEY="bench-admin-$$"

bench_cleanup() {
  local pid
  for pid in "${BENCH_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "${BENCH_PIDS[@]}"; do
    for _ in $(seq 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  done
  BENCH_PIDS=()
}

# Stops one process we started and forgets it.
bench_stop() {
  local target=$1 pid kept=()
  kill -TERM "$target" 2>/dev/null || true
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
# SERVICE_ADMIN.
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

# start_nats NAME: nats-server with a websocket listener; sets NATS_PID,
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
