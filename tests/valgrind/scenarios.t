#!/bin/sh
# The scenario tests and the virtual-time demos under valgrind: any
# memory error or definite leak fails (--error-exitcode).
cd "$(dirname "$0")/../.." || exit 1
FB_BUILD="${FB_BUILD:-build}"
VG="valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite"
echo "1..5"
if $VG "$FB_BUILD/fusebox" test tests/scenarios >/dev/null; then
  echo "ok 1 - fusebox test tests/scenarios"
else
  echo "not ok 1 - fusebox test tests/scenarios"
fi
i=2
for f in instance_crash slow_degrade slow_instance outage_recovery; do
  if $VG "$FB_BUILD/fusebox" run --virtual-time --seed 1 "examples/$f.lua" >/dev/null; then
    echo "ok $i - examples/$f.lua"
  else
    echo "not ok $i - examples/$f.lua"
  fi
  i=$((i + 1))
done
