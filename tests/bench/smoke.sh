#!/usr/bin/env bash
# The benchmark tools' smoke test: a few seconds, a few connections, every
# target and workload once. Asserts that parley-loadgen, ws-relay and the
# targets work and that the numbers are sane (check_report.py), never that
# they are fast. Called from tools/test.sh.
#
#   PARLEY_BIN_DIR=bazel-bin PARLEY_ARTIFACTS=out tests/bench/smoke.sh
#
# PARLEY_BIN_DIR holds service/parley-service, gateway/parley-gateway,
# tools/loadgen/parley-loadgen and tools/loadgen/ws-relay (default: the
# repository's bazel-bin). Writes $PARLEY_ARTIFACTS/bench-smoke.xml (JUnit).
# Cases whose binaries (Parley's, nats-server, PostgreSQL 15) are missing are
# reported as skipped, not failed. The cluster cases start PostgreSQL as
# `nobody` when run as root. Exits non-zero when any case failed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${PARLEY_BIN_DIR:-$ROOT/bazel-bin}
ARTIFACTS=${PARLEY_ARTIFACTS:-$ROOT/tests/artifacts}
mkdir -p "$ARTIFACTS"
BENCH_WORK=$(mktemp -d /tmp/parley-bench-smoke.XXXXXX)
# shellcheck source=tests/bench/lib.sh
source "$ROOT/tests/bench/lib.sh"
trap bench_cleanup EXIT

LG="$BIN/tools/loadgen/parley-loadgen"
CHECK="/usr/bin/python3 $ROOT/tests/bench/check_report.py"
RESULTS="$BENCH_WORK/results.tsv"
: >"$RESULTS"
SHORT=(--warmup=300ms --duration=1s --drain=5s --connect_timeout=20s)
PARLEY_UP=""
CLUSTER_UP=""

# run_case NAME FUNCTION: FUNCTION returns 0 (pass), 77 (skip) or other (fail);
# its output is the case's message.
run_case() {
  local name=$1 fn=$2 log="$BENCH_WORK/$1.log" start end status
  start=$(date +%s%N)
  "$fn" >"$log" 2>&1
  local rc=$?
  end=$(date +%s%N)
  case $rc in
    0) status=pass ;;
    77) status=skip ;;
    *) status=fail ;;
  esac
  printf '%s\t%s\t%d.%02d\t%s\n' "$name" "$status" \
    $(( (end - start) / 1000000000 )) $(( (end - start) / 10000000 % 100 )) \
    "$log" >>"$RESULTS"
  echo "bench-smoke: $name: $status"
  [[ $status == fail ]] && tail -20 "$log" | sed 's/^/    /'
  return 0
}

need_tools() {
  for f in "$LG" "$BIN/tools/loadgen/ws-relay"; do
    if [[ ! -x $f ]]; then
      echo "missing $f: build //tools/loadgen:parley-loadgen and //tools/loadgen:ws-relay"
      return 1
    fi
  done
}

# Starts one service + gateway for all Parley cases; 77 when not built.
need_parley() {
  need_tools || return 1
  for f in "$BIN/service/parley-service" "$BIN/gateway/parley-gateway"; do
    if [[ ! -x $f ]]; then
      echo "skipped: $f is not built"
      return 77
    fi
  done
  [[ -n $PARLEY_UP ]] && return 0
  start_service parley-service || return 1
  start_gateway parley-gateway "$SERVICE_LINK" || return 1
  PARLEY_UP=1
}

loadgen() {
  local name=$1
  shift
  echo "+ parley-loadgen $*"
  "$LG" "$@" --json_out="$BENCH_WORK/$name.json" --user_prefix="smoke$$-$name-"
}

case_relay_pairs() {
  need_tools || return 1
  start_relay relay || return 1
  loadgen relay_pairs --target=relay --address="$RELAY_ADDR" --connections=10 \
    --inflight=4 --source_addresses=3 --watch=relay:"$RELAY_PID" "${SHORT[@]}" &&
    $CHECK "$BENCH_WORK/relay_pairs.json" --connections 10 --traffic --watched 1
}

case_relay_paced() {
  need_tools || return 1
  [[ -n ${RELAY_ADDR:-} ]] || start_relay relay || return 1
  loadgen relay_paced --target=relay --address="$RELAY_ADDR" --connections=10 \
    --rate=500 --inflight=50 "${SHORT[@]}" &&
    $CHECK "$BENCH_WORK/relay_paced.json" --connections 10 --traffic &&
    /usr/bin/python3 - "$BENCH_WORK/relay_paced.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
rate = r["delivered_per_second"]
# 500/s offered: a loaded machine may lag, but pacing must not be off by 2x.
sys.exit(0 if 250 <= rate <= 750 else f"paced at 500/s, delivered {rate}/s")
PY
}

case_nats_pairs() {
  need_tools || return 1
  if ! command -v nats-server >/dev/null; then
    echo "skipped: nats-server is not installed (apt-get install nats-server)"
    return 77
  fi
  start_nats nats || return 1
  loadgen nats_pairs --target=nats --address="$NATS_ADDR" --connections=10 \
    --inflight=4 --watch=nats:"$NATS_PID" "${SHORT[@]}" &&
    $CHECK "$BENCH_WORK/nats_pairs.json" --connections 10 --traffic --watched 1
}

case_jetstream_pairs() {
  need_tools || return 1
  if ! command -v nats-server >/dev/null; then
    echo "skipped: nats-server is not installed (apt-get install nats-server)"
    return 77
  fi
  start_nats jetstream jetstream || return 1
  loadgen jetstream_pairs --target=jetstream --address="$NATS_ADDR" \
    --connections=10 --inflight=4 --watch=jetstream:"$NATS_PID" \
    "${SHORT[@]}" &&
    $CHECK "$BENCH_WORK/jetstream_pairs.json" --connections 10 --traffic \
      --acks --watched 1
}

# The durable-peer table from the JetStream and Parley runs above.
case_durable_report() {
  [[ -f $BENCH_WORK/jetstream_pairs.json && -f $BENCH_WORK/parley_pairs.json ]] ||
    { echo "skipped: needs jetstream_pairs and parley_pairs"; return 77; }
  local dir="$BENCH_WORK/durable_report"
  mkdir -p "$dir"
  cp "$BENCH_WORK/parley_pairs.json" "$dir/pairs_max_parley.json"
  cp "$BENCH_WORK/jetstream_pairs.json" "$dir/pairs_max_jetstream.json"
  printf 'cores=%s\n' "$(nproc)" >"$dir/machine.txt"
  /usr/bin/python3 "$ROOT/tests/bench/report.py" "$dir" /dev/null \
    >"$dir/benchmarks.md" || return 1
  for want in "## Against a durable peer" "NATS JetStream 2.9, file storage" \
    "Parley (fsync) / JetStream" "fsyncs every 2 minutes"; do
    grep -qF "$want" "$dir/benchmarks.md" ||
      { echo "report lacks \"$want\""; return 1; }
  done
}

# A run of other sections (--only) carries the durable report's sections
# over, each once and marked so.
case_partial_report() {
  local previous="$BENCH_WORK/durable_report/benchmarks.md"
  [[ -f $previous ]] || { echo "skipped: needs durable_report"; return 77; }
  local dir="$BENCH_WORK/partial_report"
  mkdir -p "$dir"
  printf 'cores=%s\nonly=idle\n' "$(nproc)" >"$dir/machine.txt"
  /usr/bin/python3 "$ROOT/tests/bench/report.py" "$dir" /dev/null \
    "$previous" >"$dir/benchmarks.md" || return 1
  local want
  for want in "## 1:1 pairs, open loop (maximum throughput)" \
    "## Against a durable peer: JetStream, and CPU per delivered message"; do
    [[ $(grep -cxF "$want" "$dir/benchmarks.md") == 1 ]] ||
      { echo "report does not carry \"$want\" over once"; return 1; }
    grep -A2 -xF "$want" "$dir/benchmarks.md" | grep -qF "Not rerun by this run" ||
      { echo "\"$want\" is not marked as carried over"; return 1; }
  done
}

case_parley_pairs() {
  need_parley || return $?
  loadgen parley_pairs --target=parley --address="$GATEWAY_ADDR" $(parley_flags) \
    --connections=10 --inflight=2 --source_addresses=2 \
    --watch=gateway:"$GATEWAY_PID",service:"$SERVICE_PID" "${SHORT[@]}" &&
    $CHECK "$BENCH_WORK/parley_pairs.json" --connections 10 --traffic --acks \
      --watched 2
}

case_parley_fanout() {
  need_parley || return $?
  loadgen parley_fanout --target=parley --address="$GATEWAY_ADDR" $(parley_flags) \
    --workload=fanout --connections=10 --inflight=2 "${SHORT[@]}" &&
    $CHECK "$BENCH_WORK/parley_fanout.json" --connections 10 --traffic --acks
}

case_parley_churn() {
  need_parley || return $?
  loadgen parley_churn --target=parley --address="$GATEWAY_ADDR" $(parley_flags) \
    --workload=churn --connections=5 "${SHORT[@]}" &&
    $CHECK "$BENCH_WORK/parley_churn.json" --connections 5
}

case_parley_idle() {
  need_parley || return $?
  loadgen parley_idle --target=parley --address="$GATEWAY_ADDR" $(parley_flags) \
    --workload=idle --connections=50 --hold=500ms \
    --watch=gateway:"$GATEWAY_PID" "${SHORT[@]}" &&
    $CHECK "$BENCH_WORK/parley_idle.json" --connections 50 --held 50 --watched 1
}

# Starts the scaled-out shape (PostgreSQL, nats-server, 2 replicas, 2
# gateways) for the cluster cases; 77 when a piece is not installed or built.
need_cluster() {
  need_tools || return 1
  for f in "$BIN/service/parley-service" "$BIN/gateway/parley-gateway" \
    "$PG_BIN/postgres"; do
    if [[ ! -x $f ]]; then
      echo "skipped: $f is not built or installed"
      return 77
    fi
  done
  if ! command -v nats-server >/dev/null; then
    echo "skipped: nats-server is not installed"
    return 77
  fi
  [[ -n $CLUSTER_UP ]] && return 0
  start_cluster 2 2 || return 1
  CLUSTER_UP=1
}

case_cluster_pairs() {
  need_cluster || return $?
  loadgen cluster_pairs --target=parley --address="$CLUSTER_GATEWAYS" \
    $(parley_flags) --connections=10 --inflight=2 --watch="$CLUSTER_WATCH" \
    --watch_tree="$CLUSTER_WATCH_TREE" "${SHORT[@]}" &&
    $CHECK "$BENCH_WORK/cluster_pairs.json" --connections 10 --traffic --acks \
      --watched 6
}

case_cluster_fanout() {
  need_cluster || return $?
  loadgen cluster_fanout --target=parley --address="$CLUSTER_GATEWAYS" \
    $(parley_flags) --workload=fanout --connections=10 --inflight=2 \
    "${SHORT[@]}" &&
    $CHECK "$BENCH_WORK/cluster_fanout.json" --connections 10 --traffic --acks
}

# The report's scaled-out section from the smoke run's own reports.
case_cluster_report() {
  for f in parley_pairs parley_fanout cluster_pairs cluster_fanout; do
    [[ -f $BENCH_WORK/$f.json ]] || { echo "skipped: no $f.json"; return 77; }
  done
  local dir="$BENCH_WORK/report"
  mkdir -p "$dir"
  cp "$BENCH_WORK/parley_pairs.json" "$dir/pairs_max_parley.json"
  cp "$BENCH_WORK/parley_fanout.json" "$dir/fanout_parley.json"
  cp "$BENCH_WORK/cluster_pairs.json" "$dir/pairs_max_cluster.json"
  cp "$BENCH_WORK/cluster_fanout.json" "$dir/fanout_cluster.json"
  # As --baseline gives it: the same shape on other binaries.
  cp "$BENCH_WORK/cluster_pairs.json" "$dir/pairs_max_cluster-baseline.json"
  cp "$BENCH_WORK/parley_fanout.json" "$dir/fanout_parley-baseline.json"
  printf 'cores=%s\npostgres=%s\n' "$(nproc)" \
    "$("$PG_BIN/postgres" --version)" >"$dir/machine.txt"
  /usr/bin/python3 "$ROOT/tests/bench/report.py" "$dir" /dev/null \
    >"$dir/benchmarks.md" || return 1
  for want in "## Scaled out" "cluster / one box" "| replica |" \
    "| PostgreSQL (postmaster and backends) |" "| nats-server (bus) |" \
    "Each added gateway" "Each added replica" \
    "| 1:1 pairs, cluster, baseline binaries |" \
    "these binaries / the baseline binaries" \
    "| Parley baseline binaries (\`--baseline\`) |" \
    "Fan-out, these binaries / the baseline binaries"; do
    grep -qF "$want" "$dir/benchmarks.md" ||
      { echo "report lacks \"$want\""; return 1; }
  done
}

run_case relay_pairs case_relay_pairs
run_case relay_paced case_relay_paced
run_case nats_pairs case_nats_pairs
run_case jetstream_pairs case_jetstream_pairs
run_case parley_pairs case_parley_pairs
run_case durable_report case_durable_report
run_case partial_report case_partial_report
run_case parley_fanout case_parley_fanout
run_case parley_churn case_parley_churn
run_case parley_idle case_parley_idle
run_case cluster_pairs case_cluster_pairs
run_case cluster_fanout case_cluster_fanout
run_case cluster_report case_cluster_report

/usr/bin/python3 "$ROOT/tests/bench/junit.py" "$RESULTS" \
  "$ARTIFACTS/bench-smoke.xml" bench-smoke
echo "bench-smoke: JUnit report in $ARTIFACTS/bench-smoke.xml"
if grep -q $'\tfail\t' "$RESULTS"; then
  exit 1
fi
exit 0
