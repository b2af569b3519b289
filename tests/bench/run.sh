#!/bin/sh
# make bench: every microbenchmark. Each C program (built from
# tests/bench/*.c) and each Lua script below reports medians of its own
# runs; bench_sim.lua is one run per process, so it is run RUNS times here
# and the median line of each kind is printed.
# Then tests/bench/*.sh: real-time network benchmarks on loopback.
cd "$(dirname "$0")/../.." || exit 1
B="${FB_BUILD:-build}"
RUNS="${RUNS:-5}"
export FB_BIN="$B/fusebox" # bench_policy.lua runs each case in its own process
echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(luajit -v | cut -d' ' -f1-2)"
status=0

for c in tests/bench/*.c; do
  bin="$B/bench/$(basename "$c" .c)"
  echo "## $bin"
  "$bin" || status=1
done

lua_once() {
  echo "## $1"
  "$B/fusebox" run --virtual-time --seed 1 "$@" || status=1
}

# Runs a Lua benchmark RUNS times; for each kind of result line (the text
# before the first ':') prints the run with the median ns figure.
lua_median() {
  script=$1
  shift
  echo "## $script (median of $RUNS runs)"
  i=0
  out=$(while [ "$i" -lt "$RUNS" ]; do
    "$B/fusebox" run --virtual-time --seed 1 "$script" "$@" || exit 1
    i=$((i + 1))
  done) || { status=1; return; }
  echo "$out" | awk -F': ' '{ print $1 }' | sort -u | while read -r kind; do
    echo "$out" | grep -F "$kind: " |
      awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^ns/) { print $(i-1) "\t" $0; break } }' |
      sort -n | awk -v n="$RUNS" 'NR == int((n + 1) / 2) { sub(/^[^\t]*\t/, ""); print }'
  done
}

# The hot paths on the real clock too, the way users run.
lua_real() {
  echo "## $1 (real clock)"
  "$B/fusebox" run --seed 1 "$@" || status=1
}

lua_once tests/bench/bench_core.lua
lua_once tests/bench/bench_breaker.lua
lua_real tests/bench/bench_breaker.lua
lua_once tests/bench/bench_balancer.lua
lua_real tests/bench/bench_balancer.lua
lua_median tests/bench/bench_sim.lua
lua_once tests/bench/bench_policy.lua
lua_real tests/bench/bench_limiter.lua
lua_real tests/bench/bench_resilience.lua
for s in tests/bench/*.sh; do
  [ "$s" = "$0" ] || [ "$(basename "$s")" = run.sh ] && continue
  echo "## $s (real time, loopback)"
  FB_BUILD="$B" sh "$s" || status=1
done
exit $status
