#!/bin/sh
# run.sh BUILD_DIR SECONDS [TARGET...] — runs the libFuzzer targets built in BUILD_DIR (`make fuzz`), one
# after another, SECONDS each, and prints per target the executions and what was found. Exit status 1
# when any target found a crash, a sanitizer report (AddressSanitizer, UndefinedBehaviorSanitizer, a
# leak), an input slower than 1 s or one that needs more than 2 GB.
#
# Corpora: BUILD_DIR/fuzz-seeds/<target> is rewritten by fuzz_seeds first (small generated inputs, the
# reproducers of past defects among them); what the fuzzer adds goes to BUILD_DIR/fuzz-corpus/<target>,
# which later runs start from. Findings are saved as BUILD_DIR/fuzz-artifacts/<target>-<kind>-<sha1>.
# FUZZ_RUNS=N in the environment also stops each target after N executions (SECONDS stays the limit).
set -u
B=${1:?usage: run.sh BUILD_DIR SECONDS [TARGET...]}
S=${2:?usage: run.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
T=${*:-}
if [ -z "$T" ]; then
  for f in "$B"/tests/fuzz/fuzz_*; do
    n=$(basename "$f")
    [ "$n" = fuzz_seeds ] || T="$T ${n#fuzz_}"
  done
fi
"$B/tests/fuzz/fuzz_seeds" "$B/fuzz-seeds" >/dev/null || exit 1
mkdir -p "$B/fuzz-artifacts" "$B/fuzz-logs"
# The library must not leak either; halt on the first UndefinedBehaviorSanitizer report.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

# Targets that make files (fuzz_imdb_folder) make them under TMPDIR: a scratch folder of this run, in
# memory when /dev/shm exists, removed when the run ends or is interrupted, so a target killed mid-input
# leaves nothing behind and two runs never touch each other's trees.
shm=/tmp
[ -d /dev/shm ] && [ -w /dev/shm ] && shm=/dev/shm
scratch=$(mktemp -d "$shm/attn-fuzz-run-XXXXXX") || exit 1
trap 'rm -rf "$scratch"' EXIT
trap 'exit 130' INT TERM
export TMPDIR="$scratch"

status=0
summary=""
for t in $T; do
  exe="$B/tests/fuzz/fuzz_$t"
  [ -x "$exe" ] || { echo "no fuzz target $exe"; exit 1; }
  corpus="$B/fuzz-corpus/$t"
  log="$B/fuzz-logs/$t.log"
  mkdir -p "$corpus"
  case $t in
    cli) extra="-close_fd_mask=3" ;;   # the parser prints a usage for every bad flag
    # Every pass over the input (load, index, encode, count, index, encode) is linear in it; 2 KB still
    # holds the 512 distinct tokens that make the counting index grow, at twice the speed of 4 KB.
    nmt_vocab) extra="-max_len=2048" ;;
    *) extra="" ;;
  esac
  echo "== fuzz_$t: $S s${FUZZ_RUNS:+ or $FUZZ_RUNS executions}"
  [ -n "${FUZZ_RUNS:-}" ] && extra="$extra -runs=$FUZZ_RUNS"
  "$exe" -max_total_time="$S" -timeout=1 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$B/fuzz-artifacts/$t-" $extra "$corpus" "$B/fuzz-seeds/$t" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  if [ $rc -eq 0 ]; then
    found="nothing found"
  else
    status=1
    if grep -q "ALARM: working on the last Unit for\|ERROR: libFuzzer: timeout" "$log"; then found="TIMEOUT (> 1 s)"
    elif grep -q "out-of-memory\|malloc limit" "$log"; then found="OUT OF MEMORY (> 2 GB)"
    elif grep -q "LeakSanitizer" "$log"; then found="LEAK"
    elif grep -q "runtime error:" "$log"; then found="UNDEFINED BEHAVIOR"
    elif grep -q "ERROR: AddressSanitizer" "$log"; then found="ADDRESS SANITIZER: $(sed -n 's/.*ERROR: AddressSanitizer: \([a-z-]*\).*/\1/p' "$log" | head -n 1)"
    else found="CRASH (exit $rc)"
    fi
    art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    found="$found: ${art:-see $log}"
    # the report itself, for CI logs
    grep -m 1 -A 12 "ERROR:\|runtime error:\|contract broken\|ALARM:" "$log" | sed 's/^/   /'
  fi
  line=$(printf '%-22s %12s executions  %s' "fuzz_$t" "${execs:-?}" "$found")
  echo "$line"
  summary="$summary$line
"
done
echo
echo "== fuzzing summary ($S s per target)"
printf '%s' "$summary"
exit $status
