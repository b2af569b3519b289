#!/bin/sh
# tests/fuzz/run.sh TARGET... -- make fuzz's runner: fuzzes each target
# built in $FUZZ_BUILD/fuzz/bin for $FUZZ_SECONDS, one after the other,
# and prints per target the executions, executions per second and the
# coverage libFuzzer reached (cov: edges, ft: features) from its final
# stats. Exits 1 if any target found a crash, a leak or a timeout (the
# input is kept under $FUZZ_BUILD/crashes/TARGET/ and named on stderr).
#
# Each target is run as (the flags are in FLAGS below):
#   $FUZZ_BUILD/fuzz/bin/T $FLAGS -max_total_time=$FUZZ_SECONDS \
#     [-dict=tests/fuzz/T.dict] [-detect_leaks=0: Lua targets] \
#     -artifact_prefix=$FUZZ_BUILD/crashes/T/ \
#     $FUZZ_BUILD/corpus/T tests/fuzz/corpus/T
# New inputs go to the first directory; the committed seeds are only read.
cd "$(dirname "$0")/../.." || exit 1
: "${FUZZ_BUILD:=build/libfuzzer}" "${FUZZ_SECONDS:=60}"
FLAGS="-max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1"
failed=0
printf '%-14s %12s %9s %7s %7s  %s\n' target executions execs/s cov ft result
for t in "$@"; do
  bin="$FUZZ_BUILD/fuzz/bin/$t"
  work="$FUZZ_BUILD/corpus/$t"
  crashes="$FUZZ_BUILD/crashes/$t"
  log="$FUZZ_BUILD/logs/$t.log"
  mkdir -p "$work" "$crashes" "$(dirname "$log")"
  dict=""
  [ -f "tests/fuzz/$t.dict" ] && dict="-dict=tests/fuzz/$t.dict"
  # A Lua target's state lives across inputs, and LeakSanitizer cannot
  # follow LuaJIT's tagged pointers while it does: leaks are checked at
  # exit, once the state is closed (tests/fuzz/lua_target.c).
  [ -f "tests/fuzz/$t.lua" ] && dict="$dict -detect_leaks=0"
  # shellcheck disable=SC2086 # FLAGS and dict are lists of flags
  "$bin" $FLAGS -max_total_time="$FUZZ_SECONDS" $dict -artifact_prefix="$crashes/" \
    "$work" "tests/fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(sed -n 's/.* cov: \([0-9]*\) .*/\1/p' "$log" | tail -1)
  ft=$(sed -n 's/.* ft: \([0-9]*\) .*/\1/p' "$log" | tail -1)
  if [ "$rc" = 0 ]; then
    result=ok
  else
    result="FAILED (exit $rc; $log)"
    failed=1
    grep -E '^(==[0-9]+==ERROR|SUMMARY|fuzz: |artifact_prefix|Test unit written)' "$log" | head -5 >&2
  fi
  printf '%-14s %12s %9s %7s %7s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$result"
done
exit $failed
