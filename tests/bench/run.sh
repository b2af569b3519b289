#!/bin/sh
# make bench: runs every benchmark and prints its lines (ns/op, medians).
# Each benchmark is one line below; add yours, keep it short (< 20 s).
cd "$(dirname "$0")/../.." || exit 1
B="${FB_BUILD:-build}"
status=0
"$B/bench/bench_breaker" || status=1
"$B/fusebox" run --virtual-time tests/bench/bench_breaker.lua || status=1
exit $status
