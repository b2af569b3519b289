#!/bin/sh
# Benchmarks: every C benchmark in $FB_BUILD/bench, then the Lua ones.
cd "$(dirname "$0")/../.." || exit 1
B="${FB_BUILD:-build}"
for b in "$B"/bench/*; do [ -x "$b" ] && "$b"; done
FB_BIN="$B/fusebox" "$B/fusebox" run --virtual-time tests/bench/bench_policy.lua
