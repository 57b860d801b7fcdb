#!/usr/bin/env bash
# Builds Parley's libFuzzer targets (the *_fuzzer binaries: everything that
# parses peer input) with clang and runs each: first once over its seed corpus
# and the inputs that once crashed it (<pkg>/fuzz/corpus/<target>/ and
# <pkg>/fuzz/regressions/<target>/), then fuzzing for a bounded time. Each
# target is one JUnit case, failed by a build failure, a crash, a leak, a
# timeout or a broken property.
#
#   tests/fuzz/run.sh [--seconds N] [--jobs N] [--artifacts DIR] [TARGET ...]
#
#   --seconds N     fuzzing time per target (default 20; a soak: as long as
#                   wanted)
#   --jobs N        targets fuzzed at once (default: the number of cores)
#   --artifacts DIR where fuzz.xml (JUnit), the logs and any crash input go
#                   (default $PARLEY_ARTIFACTS, else tests/artifacts)
#   TARGET          e.g. //common:jwt_fuzzer (default: all of them)
#
# The build uses clang (CC=clang) and --config=fuzz in an output base of its
# own ($PARLEY_FUZZ_OUTPUT_BASE, default under ~/.cache/parley-fuzz/), so it
# never displaces the gcc build's cache or holds its Bazel server's lock.
# Inputs the fuzzer finds are kept only for the run; a crash input is written
# to DIR/fuzz/ and belongs, once fixed, in the target's regressions/.
# Needs clang and libclang-rt-14-dev (tools/deps.sh test). Exits non-zero when
# any target failed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TARGETS_ALL=(
  //gateway:ws_frame_fuzzer
  //common:json_codec_fuzzer
  //common:frame_codec_fuzzer
  //common:jwt_fuzzer
  //service:gateway_batch_fuzzer
  //gateway:service_batch_fuzzer
)

SECONDS_EACH=20
JOBS=$(nproc)
ARTIFACTS=${PARLEY_ARTIFACTS:-$ROOT/tests/artifacts}
TARGETS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --seconds) SECONDS_EACH=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --artifacts) ARTIFACTS=$2; shift 2 ;;
    //*) TARGETS+=("$1"); shift ;;
    *) echo "usage: $0 [--seconds N] [--jobs N] [--artifacts DIR] [TARGET ...]" >&2
       exit 2 ;;
  esac
done
[[ ${#TARGETS[@]} -eq 0 ]] && TARGETS=("${TARGETS_ALL[@]}")

OUT=$ARTIFACTS/fuzz
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/parley-fuzz.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
RESULTS=$WORK/results.tsv
: >"$RESULTS"

# One output base per checkout: two checkouts must not share one.
OUTPUT_BASE=${PARLEY_FUZZ_OUTPUT_BASE:-$HOME/.cache/parley-fuzz/$(printf %s "$ROOT" | md5sum | cut -c1-12)}
# The server lingers briefly after the last run, not Bazel's default 3 hours.
BAZEL=(bazel --output_base="$OUTPUT_BASE" --max_idle_secs=120)
# No bazel-* convenience links: those in the checkout belong to the gcc build.
FLAGS=(--config=fuzz --symlink_prefix=/ --noshow_progress --show_result=0)

elapsed() {  # seconds since $1 (date +%s%N), as S.CC
  local ns=$(( $(date +%s%N) - $1 ))
  printf '%d.%02d' $(( ns / 1000000000 )) $(( ns / 10000000 % 100 ))
}

# result NAME pass|fail SECONDS LOG
result() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS"; }

write_junit() {
  /usr/bin/python3 "$ROOT/tests/bench/junit.py" "$RESULTS" "$ARTIFACTS/fuzz.xml" fuzz
}

echo "fuzz: building ${#TARGETS[@]} targets with clang (output base $OUTPUT_BASE)"
start=$(date +%s%N)
(cd "$ROOT" && CC=clang "${BAZEL[@]}" build "${FLAGS[@]}" "${TARGETS[@]}") \
  >"$OUT/build.log" 2>&1
build_rc=$?
echo "fuzz: build took $(elapsed "$start") s"
if [[ $build_rc -ne 0 ]]; then
  grep -E '^ERROR|error:' "$OUT/build.log" | head -20
  for target in "${TARGETS[@]}"; do
    result "${target#//}" fail 0 "$OUT/build.log"
  done
  write_junit
  exit 1
fi
BIN=$(cd "$ROOT" && "${BAZEL[@]}" info "${FLAGS[@]}" bazel-bin 2>/dev/null)

# Symbolized stack traces (llvm-symbolizer is in llvm-14).
export PATH=/usr/lib/llvm-14/bin:$PATH
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}

# fuzz_target TARGET: the regression pass, then fuzzing; writes its result.
fuzz_target() {
  local target=$1 pkg name log corpus regressions dirs=() dict=() start rc why
  pkg=${target#//}
  pkg=${pkg%%:*}
  name=${target##*:}
  log=$OUT/$name.log
  corpus=$ROOT/$pkg/fuzz/corpus/$name
  regressions=$ROOT/$pkg/fuzz/regressions/$name
  [[ -d $regressions ]] && dirs+=("$regressions")
  [[ -f $ROOT/$pkg/fuzz/$name.dict ]] && dict=(-dict="$ROOT/$pkg/fuzz/$name.dict")
  start=$(date +%s%N)
  {
    echo "== every seed and regression input once"
    "$BIN/$pkg/$name" -runs=0 "${dict[@]}" -artifact_prefix="$OUT/$name-" \
      "$corpus" "${dirs[@]}"
    rc=$?
    if [[ $rc -eq 0 ]]; then
      echo "== fuzzing for $SECONDS_EACH s"
      # New inputs go to a copy of the seeds, not to the checkout.
      mkdir -p "$WORK/$name"
      cp -r "$corpus/." "$WORK/$name/"
      "$BIN/$pkg/$name" -max_total_time="$SECONDS_EACH" -timeout=10 \
        -print_final_stats=1 "${dict[@]}" -artifact_prefix="$OUT/$name-" \
        "$WORK/$name" "${dirs[@]}"
      rc=$?
    fi
  } >"$log" 2>&1
  if [[ $rc -eq 0 ]]; then
    result "$pkg:$name" pass "$(elapsed "$start")" "$log"
    echo "fuzz: $pkg:$name: pass ($(grep -a -m1 -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$') runs)"
  else
    # The last line is the JUnit failure's message: the first sign of why.
    why=$(grep -a -m1 -E 'fuzz property broken|runtime error|ERROR: ' "$log")
    echo "${why:-failed}" >>"$log"
    result "$pkg:$name" fail "$(elapsed "$start")" "$log"
    echo "fuzz: $pkg:$name: FAIL (log: $log)"
    grep -a -E 'fuzz property broken|runtime error|ERROR: (Address|Leak|libFuzzer)|Test unit written' \
      "$log" | head -5 | sed 's/^/    /'
  fi
}

start=$(date +%s%N)
for target in "${TARGETS[@]}"; do
  while [[ $(jobs -rp | wc -l) -ge $JOBS ]]; do wait -n; done
  fuzz_target "$target" &
done
wait
echo "fuzz: ${#TARGETS[@]} targets ran in $(elapsed "$start") s"

write_junit
! grep -q $'\tfail\t' "$RESULTS"
