#!/usr/bin/env bash
# The standard benchmark suite (issue 7): Parley side by side with the raw
# websocketpp relay (ws-relay, the transport's ceiling), nats-server's
# WebSocket listener and, as a durable peer, NATS JetStream's file store
# (issue 19), same load generator, same traffic shape, same machine, one run. Writes docs/benchmarks.md (tables, ratios, targets met or missed,
# machine facts, exact commands) from the JSON reports.
#
#   tests/bench/run.sh            # the full suite (~17 min on 2 cores)
#   tests/bench/run.sh --quick    # smaller counts, for a busy machine
#   options: --bin DIR (use built binaries, skip the -c opt build)
#            --baseline DIR (another build's bin dir, e.g. of the commit
#                            before a speed change: its Parley runs the 1:1,
#                            fan-out and cluster rows beside this one, in the
#                            same run)
#            --out FILE (default docs/benchmarks.md)  --profile (perf)
#            --only LIST (comma list of: pairs,half,handshake,idle,hold,fanout,
#                         cluster)
#
# Every process it starts is killed by PID at the end; ports are chosen at run
# time; the open-file limit is raised to the hard limit (`ulimit -Hn`) and the
# per-process connection counts are derived from it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
QUICK=""
BIN=""
BASELINE=""
OUT="$ROOT/docs/benchmarks.md"
PROFILE=""
ALL="pairs,half,handshake,idle,hold,fanout,cluster"
ONLY=$ALL
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) QUICK=1 ;;
    --bin) BIN=$2; shift ;;
    --baseline) BASELINE=$2; shift ;;
    --out) OUT=$2; shift ;;
    --profile) PROFILE=1 ;;
    --only) ONLY=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
want() { [[ ,$ONLY, == *,$1,* ]]; }

BUILD_MODE=${BENCH_BUILD_NOTE:-"given with --bin (build mode as built there)"}
if [[ -z $BIN ]]; then
  BUILD_MODE="bazel -c opt, built by this script"
  echo "bench: building -c opt (output base /root/.cache/bazel-bench)"
  (cd "$ROOT" && bazel --output_base=/root/.cache/bazel-bench build -c opt \
    //service:parley-service //gateway:parley-gateway \
    //tools/loadgen:parley-loadgen //tools/loadgen:ws-relay)
  BIN="/root/.cache/bazel-bench/execroot/parley/bazel-out/k8-opt/bin"
fi
for f in service/parley-service gateway/parley-gateway \
  tools/loadgen/parley-loadgen tools/loadgen/ws-relay; do
  [[ -x $BIN/$f ]] || { echo "bench: $BIN/$f is missing" >&2; exit 1; }
done
if [[ -n $BASELINE ]]; then
  for f in service/parley-service gateway/parley-gateway; do
    [[ -x $BASELINE/$f ]] || { echo "bench: $BASELINE/$f is missing" >&2; exit 1; }
  done
fi
command -v nats-server >/dev/null ||
  { echo "bench: nats-server missing (apt-get install -y nats-server)" >&2; exit 1; }

ulimit -n "$(ulimit -Hn)"
HARD=$(ulimit -Hn)
BENCH_WORK=$(mktemp -d /tmp/parley-bench.XXXXXX)
# A partial run (--only) keeps the sections it does not rerun from the
# document it replaces (report.py marks them with their run's date).
PREVIOUS=""
if [[ $ONLY != "$ALL" && -f $OUT ]]; then
  PREVIOUS="$BENCH_WORK/previous.md"
  cp "$OUT" "$PREVIOUS"
fi
# shellcheck source=tests/bench/lib.sh
source "$ROOT/tests/bench/lib.sh"
trap bench_cleanup EXIT
LG="$BIN/tools/loadgen/parley-loadgen"
echo "bench: work directory $BENCH_WORK"

# Scale. A gateway (and a generator process) may hold HARD - 500 sockets.
PER_PROC=$(( HARD - 500 ))
IDLE_CONNS=$(( PER_PROC < 19000 ? PER_PROC : 19000 ))
if [[ -n $QUICK ]]; then
  PAIRS=100; DURATION=3s; HS_CONNS=1000; IDLE_CONNS=2000; HOLD_TOTAL=4000
  HOLD_GATEWAYS=2; FANOUT=100; CHURN=50; HOLD_TIME=${HOLD_TIME:-15s}
else
  PAIRS=200; DURATION=8s; HS_CONNS=10000; HOLD_TOTAL=100000
  HOLD_GATEWAYS=$(( (HOLD_TOTAL + PER_PROC - 1) / PER_PROC ))
  FANOUT=1000; CHURN=200
fi
INFLIGHT=10
HOLD_TIME=${HOLD_TIME:-45s}
COMMON=(--warmup=2s --duration="$DURATION" --drain=5s --connect_timeout=120s)

{
  echo "cores=$(nproc)"
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "memory_kib=$(grep MemTotal /proc/meminfo | awk '{print $2}')"
  echo "kernel=$(uname -r)"
  echo "os=$(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "nofile_hard=$HARD"
  echo "loadavg_start=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit=$(cd "$ROOT" && git rev-parse --short HEAD)"
  echo "nats=$(nats-server --version 2>&1 | head -1)"
  echo "postgres=$("$PG_BIN/postgres" --version 2>/dev/null || echo missing)"
  echo "quick=${QUICK:-0}"
  [[ $ONLY == "$ALL" ]] || echo "only=$ONLY"
  echo "bin=$BIN"
  [[ -z $BASELINE ]] ||
    echo "baseline=$BASELINE ($("$BASELINE/service/parley-service" --version 2>&1 | head -1))"
  echo "build=$BUILD_MODE"
} >"$BENCH_WORK/machine.txt"

# lg ID [flags...]: one generator run, its table on stdout, its JSON kept.
lg() {
  local id=$1
  shift
  printf '%s\tparley-loadgen %s\n' "$id" "$*" >>"$BENCH_WORK/commands.tsv"
  echo "bench: $id"
  if ! "$LG" "$@" --user_prefix="b$$-$id-" --json_out="$BENCH_WORK/$id.json" \
    2>>"$BENCH_WORK/loadgen.log" | tee "$BENCH_WORK/$id.txt" | sed 's/^/  /'; then
    echo "bench: $id FAILED (see $BENCH_WORK/loadgen.log)"
    echo "$id" >>"$BENCH_WORK/failed.txt"
  fi
}

# Fresh systems under test for each section, so one's state never skews
# another's numbers.
parley_up() {
  start_service parley-service
  start_gateway parley-gateway "$SERVICE_LINK"
  PARLEY=(--target=parley --address="$GATEWAY_ADDR" $(parley_flags))
  PARLEY_WATCH="--watch=gateway:$GATEWAY_PID,service:$SERVICE_PID"
}
parley_down() { bench_stop "$GATEWAY_PID"; bench_stop "$SERVICE_PID"; }
relay_up() { start_relay relay; RELAY=(--target=relay --address="$RELAY_ADDR"); }
nats_up() { start_nats nats; NATS=(--target=nats --address="$NATS_ADDR"); }
# JetStream, file storage: a durable peer (see tools/loadgen/protocol.h).
jetstream_up() {
  start_nats jetstream jetstream
  JETSTREAM=(--target=jetstream --address="$NATS_ADDR")
}
# Parley from the --baseline binaries.
parley_baseline_up() {
  local bin=$BIN
  BIN=$BASELINE
  parley_up
  BIN=$bin
}
# Parley with SQLite's synchronous=NORMAL (no fsync per commit): the row like
# JetStream, whose file store acks before any fsync.
parley_normal_up() {
  start_service parley-service --sqlite_synchronous=NORMAL
  start_gateway parley-gateway "$SERVICE_LINK"
  PARLEY_NORMAL=(--target=parley --address="$GATEWAY_ADDR" $(parley_flags))
  PARLEY_WATCH="--watch=gateway:$GATEWAY_PID,service:$SERVICE_PID"
}

# Rewrites the report from what has run so far, so an interrupted suite still
# leaves a (partial, and marked so) document.
write_report() {
  cp "$BENCH_WORK/machine.txt" "$BENCH_WORK/machine.now"
  echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$BENCH_WORK/machine.txt"
  /usr/bin/python3 "$ROOT/tests/bench/report.py" "$BENCH_WORK" \
    "$ROOT/tests/bench/analysis.md" $PREVIOUS >"$OUT.tmp" &&
    mv "$OUT.tmp" "$OUT"
  mv "$BENCH_WORK/machine.now" "$BENCH_WORK/machine.txt"
}

json_field() {
  /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

# profile PIDS OUT: called as a run starts; once it is past warm-up, samples
# PIDS (comma list) with perf for 5 s and writes the by-process/library and
# top-symbol summary to OUT. Beyond that list, PostgreSQL's backends of the
# moment are sampled when PG_PID names a running postmaster.
profile() {
  local pids=$1 out=$2
  sleep 4
  if [[ -n ${PG_PID:-} ]] && kill -0 "$PG_PID" 2>/dev/null; then
    pids="$pids,$PG_PID$(ps --ppid "$PG_PID" -o pid= | tr -d ' ' | sed 's/^/,/' | tr -d '\n')"
  fi
  perf record -F 499 -g -o "$out.data" -p "$pids" -- sleep 5 \
    >/dev/null 2>&1 || return 0
  {
    echo "By process and library (self time, % of samples):"
    perf report -i "$out.data" --stdio --no-children -g none \
      --sort comm,dso --percent-limit 1 2>/dev/null |
      grep -E '^ +[0-9]' | sed -E 's/[[:space:]]+$//; s/ {2,}/  /g' | head -25
    echo
    echo "Top symbols:"
    perf report -i "$out.data" --stdio --no-children -g none \
      --sort comm,symbol --percent-limit 0.7 2>/dev/null |
      grep -E '^ +[0-9]' | sed -E 's/[[:space:]]+$//; s/ {2,}/  /g' |
      cut -c1-150 | head -30
  } >"$out" || true
  rm -f "$out.data"
}

# 1. 1:1 pairs, open loop, INFLIGHT in flight per connection: the maximum.
if want pairs; then
  relay_up
  lg pairs_max_relay "${RELAY[@]}" --connections=$PAIRS --inflight=$INFLIGHT \
    --watch=relay:$RELAY_PID "${COMMON[@]}"
  bench_stop "$RELAY_PID"
  nats_up
  lg pairs_max_nats "${NATS[@]}" --connections=$PAIRS --inflight=$INFLIGHT \
    --watch=nats:$NATS_PID "${COMMON[@]}"
  bench_stop "$NATS_PID"
  jetstream_up
  lg pairs_max_jetstream "${JETSTREAM[@]}" --connections=$PAIRS \
    --inflight=$INFLIGHT --watch=jetstream:$NATS_PID "${COMMON[@]}"
  bench_stop "$NATS_PID"
  parley_up
  if [[ -n $PROFILE ]] && command -v perf >/dev/null; then
    lg pairs_max_parley "${PARLEY[@]}" --connections=$PAIRS \
      --inflight=$INFLIGHT $PARLEY_WATCH "${COMMON[@]}" &
    LGPID=$!
    profile "$GATEWAY_PID,$SERVICE_PID" "$BENCH_WORK/profile.txt"
    wait "$LGPID"
  else
    lg pairs_max_parley "${PARLEY[@]}" --connections=$PAIRS \
      --inflight=$INFLIGHT $PARLEY_WATCH "${COMMON[@]}"
  fi
  # The commit pipeline's batch sizes and commit times, for the cluster's
  # comparison (section 6).
  scrape_metrics "$SERVICE_METRICS" "$BENCH_WORK/pairs_max_parley.service0.metrics"
  parley_down
  # The same shape over the binary subprotocol: what JSON costs.
  parley_up
  lg pairs_max_parley-proto --target=parley-proto --address="$GATEWAY_ADDR" \
    $(parley_flags) --connections=$PAIRS --inflight=$INFLIGHT $PARLEY_WATCH \
    "${COMMON[@]}"
  parley_down
  parley_normal_up
  lg pairs_max_parley-normal "${PARLEY_NORMAL[@]}" --connections=$PAIRS \
    --inflight=$INFLIGHT $PARLEY_WATCH "${COMMON[@]}"
  parley_down
  if [[ -n $BASELINE ]]; then
    parley_baseline_up
    lg pairs_max_parley-baseline "${PARLEY[@]}" --connections=$PAIRS \
      --inflight=$INFLIGHT $PARLEY_WATCH "${COMMON[@]}"
    parley_down
  fi
fi

write_report

# 2. Latency at half of Parley's maximum, same offered rate for all three.
if want half && [[ -f $BENCH_WORK/pairs_max_parley.json ]]; then
  HALF=$(/usr/bin/python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["delivered_per_second"]/2))' "$BENCH_WORK/pairs_max_parley.json")
  if (( HALF > 0 )); then
    parley_up
    lg pairs_half_parley "${PARLEY[@]}" --connections=$PAIRS --rate=$HALF \
      --inflight=1000 $PARLEY_WATCH "${COMMON[@]}"
    parley_down
    relay_up
    lg pairs_half_relay "${RELAY[@]}" --connections=$PAIRS --rate=$HALF \
      --inflight=1000 --watch=relay:$RELAY_PID "${COMMON[@]}"
    bench_stop "$RELAY_PID"
    nats_up
    lg pairs_half_nats "${NATS[@]}" --connections=$PAIRS --rate=$HALF \
      --inflight=1000 --watch=nats:$NATS_PID "${COMMON[@]}"
    bench_stop "$NATS_PID"
    jetstream_up
    lg pairs_half_jetstream "${JETSTREAM[@]}" --connections=$PAIRS \
      --rate=$HALF --inflight=1000 --watch=jetstream:$NATS_PID "${COMMON[@]}"
    bench_stop "$NATS_PID"
    parley_normal_up
    lg pairs_half_parley-normal "${PARLEY_NORMAL[@]}" --connections=$PAIRS \
      --rate=$HALF --inflight=1000 $PARLEY_WATCH "${COMMON[@]}"
    parley_down
    if [[ -n $BASELINE ]]; then
      parley_baseline_up
      lg pairs_half_parley-baseline "${PARLEY[@]}" --connections=$PAIRS \
        --rate=$HALF --inflight=1000 $PARLEY_WATCH "${COMMON[@]}"
      parley_down
    fi
  fi
fi

write_report

# 3. Handshakes: HS_CONNS connections opened as fast as they are accepted,
# then connect/authenticate/close churn on CHURN connection slots.
if want handshake; then
  for target in relay nats parley; do
    "${target}_up"
    case $target in
      relay) T=("${RELAY[@]}"); W="--watch=relay:$RELAY_PID" ;;
      nats) T=("${NATS[@]}"); W="--watch=nats:$NATS_PID" ;;
      parley) T=("${PARLEY[@]}"); W=$PARLEY_WATCH ;;
    esac
    lg handshake_$target "${T[@]}" --workload=idle --connections=$HS_CONNS \
      --connect_concurrency=1024 --hold=1s $W "${COMMON[@]}"
    lg churn_$target "${T[@]}" --workload=churn --connections=$CHURN $W \
      --source_addresses=8 "${COMMON[@]}"
    case $target in
      relay) bench_stop "$RELAY_PID" ;;
      nats) bench_stop "$NATS_PID" ;;
      parley) parley_down ;;
    esac
  done
fi

write_report

# idle_run ID WATCHNAME PID COUNT PROCS [target flags...]: COUNT idle
# connections on one server from PROCS generator processes; the server's RSS
# is sampled by this script before and by the generators at the end of the hold.
idle_run() {
  local id=$1 name=$2 pid=$3 count=$4 procs=$5
  shift 5
  local per=$(( (count + procs - 1) / procs )) i pids=()
  grep VmRSS "/proc/$pid/status" | awk '{print $2}' >"$BENCH_WORK/$id.baseline"
  for (( i = 0; i < procs; i++ )); do
    lg "$id.p$i" "$@" --workload=idle --connections=$per \
      --index_offset=$(( i * per )) --connect_concurrency=512 --hold=15s \
      --source_addresses=4 --watch=$name:$pid "${COMMON[@]}" >/dev/null &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i"; done
}

# 4. Memory per idle authenticated connection, IDLE_CONNS on one server.
if want idle; then
  relay_up
  idle_run idle_relay relay "$RELAY_PID" $IDLE_CONNS 2 "${RELAY[@]}"
  bench_stop "$RELAY_PID"
  nats_up
  idle_run idle_nats nats "$NATS_PID" $IDLE_CONNS 2 "${NATS[@]}"
  bench_stop "$NATS_PID"
  parley_up
  idle_run idle_parley gateway "$GATEWAY_PID" $IDLE_CONNS 2 "${PARLEY[@]}"
  parley_down
fi

write_report

# 5. Group fan-out: FANOUT members, one sender, INFLIGHT messages in flight.
if want fanout; then
  parley_up
  lg fanout_parley "${PARLEY[@]}" --workload=fanout --connections=$FANOUT \
    --inflight=$INFLIGHT $PARLEY_WATCH "${COMMON[@]}"
  parley_down
  if [[ -n $BASELINE ]]; then
    parley_baseline_up
    lg fanout_parley-baseline "${PARLEY[@]}" --workload=fanout \
      --connections=$FANOUT --inflight=$INFLIGHT $PARLEY_WATCH "${COMMON[@]}"
    parley_down
  fi
  nats_up
  lg fanout_nats "${NATS[@]}" --workload=fanout --connections=$FANOUT \
    --inflight=$INFLIGHT --watch=nats:$NATS_PID "${COMMON[@]}"
  bench_stop "$NATS_PID"
fi

write_report

# 6. The scaled-out shape: 2 gateways x 2 replicas on PostgreSQL and
# nats-server, the 1:1 maximum and the fan-out of sections 1 and 5 with the
# same flags. The generator spreads its connections over both gateways
# (connection i on gateway i mod 2), so every pair spans the two gateways and
# the replicas' rendezvous placement puts about half of them on two
# replicas. CPU is watched for every server process, PostgreSQL's as the
# postmaster's whole process tree (a backend per connection).
if want cluster; then
  if [[ ! -x $PG_BIN/postgres ]]; then
    echo "bench: $PG_BIN/postgres missing (apt-get install -y postgresql-15)" >&2
    echo cluster >>"$BENCH_WORK/failed.txt"
  else
    # pairs_max_cluster1: the same 1:1 run on one replica behind the two
    # gateways, to tell the second replica's cost from PostgreSQL's.
    # pairs_max_cluster-baseline: the 2 x 2 run on the --baseline binaries.
    runs=(pairs_max_cluster)
    [[ -z $BASELINE ]] || runs+=(pairs_max_cluster-baseline)
    runs+=(fanout_cluster pairs_max_cluster1)
    for run in "${runs[@]}"; do
      bin=$BIN
      [[ $run != *-baseline ]] || BIN=$BASELINE
      if [[ $run == pairs_max_cluster1 ]]; then start_cluster 1 2
      else start_cluster 2 2; fi
      BIN=$bin
      CLUSTER=(--target=parley --address="$CLUSTER_GATEWAYS" $(parley_flags)
        --watch="$CLUSTER_WATCH" --watch_tree="$CLUSTER_WATCH_TREE")
      case $run in
        pairs_max_cluster | pairs_max_cluster-baseline)
          lg "$run" "${CLUSTER[@]}" --connections=$PAIRS --inflight=$INFLIGHT \
            "${COMMON[@]}" &
          LGPID=$!
          # Past user setup and warm-up (~3 s), for most of the window.
          sample_pg_waits "$PG_URL" 4 6 "$BENCH_WORK/$run.pgwaits" &
          SAMPLER=$!
          if [[ -n $PROFILE && $run == pairs_max_cluster ]] &&
            command -v perf >/dev/null; then
            profile "$(IFS=,; echo "${CLUSTER_PIDS[*]}")" \
              "$BENCH_WORK/profile_cluster.txt"
          fi
          wait "$LGPID"
          wait "$SAMPLER" ;;
        pairs_max_cluster1)
          lg "$run" "${CLUSTER[@]}" --connections=$PAIRS --inflight=$INFLIGHT \
            "${COMMON[@]}" ;;
        fanout_cluster)
          lg "$run" "${CLUSTER[@]}" --workload=fanout --connections=$FANOUT \
            --inflight=$INFLIGHT "${COMMON[@]}" ;;
      esac
      for i in "${!CLUSTER_METRICS[@]}"; do
        scrape_metrics "${CLUSTER_METRICS[$i]}" "$BENCH_WORK/$run.replica$i.metrics"
      done
      stop_cluster
    done
  fi
fi

write_report

# 7. HOLD_TOTAL concurrent connections over HOLD_GATEWAYS gateways, one
# parley-service, one generator process per gateway.
if want hold; then
  start_service parley-service
  per=$(( (HOLD_TOTAL + HOLD_GATEWAYS - 1) / HOLD_GATEWAYS ))
  gws=() pids=()
  for (( g = 0; g < HOLD_GATEWAYS; g++ )); do
    start_gateway "parley-gateway-$g" "$SERVICE_LINK"
    gws+=("$GATEWAY_PID")
    lg "hold_parley.g$g" --target=parley --address="$GATEWAY_ADDR" \
      $(parley_flags) --workload=idle --connections=$per \
      --index_offset=$(( g * per )) --connect_concurrency=256 --hold=$HOLD_TIME \
      --source_addresses=4 --watch=gateway:$GATEWAY_PID,service:$SERVICE_PID \
      "${COMMON[@]}" >/dev/null &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  for p in "${gws[@]}"; do bench_stop "$p"; done
  bench_stop "$SERVICE_PID"
fi

write_report

echo "complete=1" >>"$BENCH_WORK/machine.txt"
write_report
# Keep the final load average with the raw reports, for report.py reruns.
echo "loadavg_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$BENCH_WORK/machine.txt"
echo "bench: wrote $OUT (raw reports in $BENCH_WORK)"
