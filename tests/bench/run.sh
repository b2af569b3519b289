#!/bin/sh
# make bench: every benchmark, C then Lua. Each prints its own table
# (medians of several runs, ns/op); see the header of each file for the
# method. Add a benchmark by appending a line.
cd "$(dirname "$0")/../.." || exit 1
B="${FB_BUILD:-build}"
set -e
echo "== balancers from C (tests/bench/bench_balancer.c)"
"$B/bench/bench_balancer"
echo
echo "== balancers from Lua (tests/bench/bench_balancer.lua)"
"$B/fusebox" run --virtual-time tests/bench/bench_balancer.lua
