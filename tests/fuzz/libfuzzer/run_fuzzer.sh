#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time (ctest, label fuzz), starting from its seeds.
#   run_fuzzer.sh FUZZER SEED_DIR WORK_DIR SECONDS [libFuzzer flags...]
# Fails (exit non-zero) on any crash, failed check, sanitizer report (ASan, UBSan, LSan), hang
# (-timeout) or excessive memory. New inputs go to WORK_DIR (emptied first); a crashing input is
# written there as crash-* (replay: FUZZER WORK_DIR/crash-...). Prints the final stats line
# (executions, exec/s) that docs/benchmarks.md quotes.
set -uo pipefail
fuzzer="$1" seeds="$2" work="$3" seconds="${KVTIER_FUZZ_SECONDS:-$4}"  # the environment overrides
shift 4
rm -rf "$work"
mkdir -p "$work"
log="$work.log"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$work/" "$@" "$work" "$seeds" >"$log" 2>&1
rc=$?
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
echo "fuzz $(basename "$fuzzer"): ${seconds}s, ${execs:-?} executions, ${rate:-?} exec/s, ${cov:-cov: ?}, exit $rc"
if [ $rc -ne 0 ] || grep -qE 'runtime error:|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)' "$log"; then
  tail -n 80 "$log"
  exit 1
fi
