#!/bin/sh
# Valgrind memcheck over the C tests and the CLI running the demos under
# virtual time: any error or definite leak fails (TAP, one line a run).
cd "$(dirname "$0")/../.." || exit 1
B="${FB_BUILD:-build}"
VG="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite"
set -- $(ls "$B"/tests/*.t 2>/dev/null) \
  "run --virtual-time --seed 1 examples/service_discovery.lua" \
  "run --virtual-time --seed 1 examples/circuit_breaker.lua" \
  "report tests/fixtures/report_corrupt.jsonl -o /dev/null" \
  "run --virtual-time --seed 1 --report /dev/null examples/outage_recovery.lua" \
  "run tests/valgrind/io.lua" \
  "run tests/valgrind/tls.lua"
echo "1..$#"
n=0
for t in "$@"; do
  n=$((n + 1))
  case "$t" in
    run*|report*) cmd="$VG $B/fusebox $t" ;;
    *) cmd="$VG $t" ;;
  esac
  if out=$($cmd 2>&1 >/dev/null); then
    echo "ok $n - valgrind $t"
  else
    echo "not ok $n - valgrind $t"
    echo "$out" | sed 's/^/# /' | head -40
  fi
done
