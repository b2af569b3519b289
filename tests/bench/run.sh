#!/bin/sh
# Runs every microbenchmark: each C program built from tests/bench/*.c,
# then each tests/bench/*.lua under the CLI in virtual time, then each
# tests/bench/*.sh (real-time network benchmarks on loopback).
cd "$(dirname "$0")/../.." || exit 1
B="${FB_BUILD:-build}"
echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores; $(luajit -v | cut -d' ' -f1-2)"
status=0
for c in tests/bench/*.c; do
  bin="$B/bench/$(basename "$c" .c)"
  echo "## $bin"
  "$bin" || status=1
done
for l in tests/bench/*.lua; do
  echo "## $l"
  "$B/fusebox" run --virtual-time --seed 1 "$l" || status=1
done
for s in tests/bench/*.sh; do
  echo "## $s (real time, loopback)"
  FB_BUILD="$B" sh "$s" || status=1
done
exit $status
