#!/bin/sh
# make bench: every benchmark, each run several times; medians reported.
# C benchmarks are build/bench/* (from tests/bench/*.c); Lua benchmarks
# are scripts run by the CLI in virtual time.
cd "$(dirname "$0")/../.." || exit 1
FB_BUILD="${FB_BUILD:-build}"
RUNS="${RUNS:-5}"

for b in "$FB_BUILD"/bench/*; do
  [ -x "$b" ] || continue
  echo "== $b"
  "$b" || exit 1
done

# Runs a Lua benchmark RUNS times; for each kind of result line (the text
# before the first ':') prints the run with the median ns figure.
lua_bench() {
  script=$1
  shift
  echo "== $script (median of $RUNS runs)"
  i=0
  out=$(while [ "$i" -lt "$RUNS" ]; do
    "$FB_BUILD/fusebox" run --virtual-time --seed 1 "$script" "$@" || exit 1
    i=$((i + 1))
  done) || exit 1
  echo "$out" | awk -F': ' '{ print $1 }' | sort -u | while read -r kind; do
    echo "$out" | grep -F "$kind: " |
      awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^ns/) { print $(i-1) "\t" $0; break } }' |
      sort -n | awk -v m="$(( (RUNS + 1) / 2 ))" 'NR == m { sub(/^[^\t]*\t/, ""); print }'
  done
}

lua_bench tests/bench/bench_sim.lua
