#!/bin/sh
# fusebox compare on a million calls with two policies (none, and retry +
# timeout), one seed each, --jobs 2: the wall time of the whole command
# (the runs, aggregating their events), 3 runs, the median printed, for
# two workloads:
#   - the model: tests/compare/flaky.lua with FB_COMPARE_CALLS calls
#     (default 1000000) to two flaky service models;
#   - the trace: tests/compare/replay.lua replaying a trace of as many
#     calls (an events file tests/bench/trace_write.lua writes first, as
#     a real run logs its calls: 2 lines a call) through fb.sim.replay,
#     each run reading it.
# The issue's target: "compare on a one-million-call trace with two
# policies under five seconds on this machine".
cd "$(dirname "$0")/../.." || exit 1
B="${FB_BUILD:-build}"
CALLS="${FB_COMPARE_CALLS:-1000000}"
status=0
trace=$(mktemp "${TMPDIR:-/tmp}/fusebox-bench-trace-XXXXXX")
trap 'rm -f "$trace"' EXIT INT TERM

# median_of LABEL SCENARIO: 3 runs of compare, the median of its own
# "compare: 2 runs in S s" figure
median_of() {
  runs=""
  for _ in 1 2 3; do
    out=$("$B/fusebox" compare "$2" --policy tests/compare/none.json \
      --policy tests/compare/retry.json --seeds 1-1 --jobs 2 --timeout 600 2>&1)
    secs=$(echo "$out" | sed -n 's/^compare: 2 runs in \([0-9.]*\) s$/\1/p')
    [ -n "$secs" ] || { echo "compare $1 failed: $out"; status=1; secs=0; }
    runs="$runs $secs"
  done
  median=$(echo $runs | tr ' ' '\n' | sort -n | sed -n 2p)
  echo "compare, $1, $CALLS calls x 2 policies, 2 jobs: $median s (runs:$runs; target < 5 s)"
}

export FB_COMPARE_CALLS="$CALLS" FB_COMPARE_TRACE="$trace"
median_of "model" tests/compare/flaky.lua
if "$B/fusebox" run tests/bench/trace_write.lua "$trace" "$CALLS"; then
  median_of "trace" tests/compare/replay.lua
else
  echo "compare, trace: writing the trace failed"
  status=1
fi
exit $status
