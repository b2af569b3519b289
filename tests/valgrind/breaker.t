#!/bin/sh
# The breaker's C tests and the document's breaker demo (virtual time)
# under valgrind: any leak or invalid access fails.
cd "$(dirname "$0")/../.." || exit 1
B="${FB_BUILD:-build}"
VG="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite"
echo "1..2"
if CMOCKA_MESSAGE_OUTPUT=TAP $VG "$B/tests/test_breaker.t" >/dev/null; then
  echo "ok 1 - test_breaker under valgrind"
else
  echo "not ok 1 - test_breaker under valgrind"
fi
if $VG "$B/fusebox" run --virtual-time --seed 1 examples/circuit_breaker.lua >/dev/null; then
  echo "ok 2 - examples/circuit_breaker.lua under valgrind"
else
  echo "not ok 2 - examples/circuit_breaker.lua under valgrind"
fi
