#!/bin/sh
# tests/bench/run.sh -- the microbenchmarks: every C program built from
# tests/bench/*.c (build/bench/NAME) and every tests/bench/*.lua script
# (run under `fusebox run --virtual-time`). Each prints its own ns/op
# lines. Exits non-zero if one of them fails.
cd "$(dirname "$0")/../.." || exit 1
BUILD="${FB_BUILD:-build}"
status=0
found=
for src in tests/bench/*.c tests/bench/*.lua; do
  [ -e "$src" ] || continue
  found=1
  name=$(basename "$src")
  echo "== $name"
  case $src in
  *.c) "$BUILD/bench/${name%.c}" || status=1 ;;
  *.lua) "$BUILD/fusebox" run --virtual-time --seed 1 "$src" || status=1 ;;
  esac
done
[ -n "$found" ] || echo "tests/bench: no microbenchmarks yet (tests/bench/*.c, *.lua)"
exit $status
