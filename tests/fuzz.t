#!/bin/sh
# Replays every input under tests/fuzz/corpus/T and tests/fuzz/crashes/T
# through fuzz target T, built for $FB_BUILD (make test: plain, then
# ASan+UBSan) with tests/fuzz/replay_main.c: what fuzzing once found
# stays fixed, with no clang needed. tests/fuzz/pending/ is not replayed:
# those inputs wait for a fix (tests/fuzz/pending/README).
cd "$(dirname "$0")/.." || exit 1
B="${FB_BUILD:-build}/fuzz/replay"
set -- tests/fuzz/corpus/*/
echo "1..$#"
n=0
for dir in "$@"; do
  n=$((n + 1))
  t=$(basename "$dir")
  crashes=""
  [ -d "tests/fuzz/crashes/$t" ] && crashes="tests/fuzz/crashes/$t"
  # shellcheck disable=SC2086 # crashes: zero or one directory
  if out=$(timeout 300 "$B/$t" "tests/fuzz/corpus/$t" $crashes 2>&1); then
    echo "ok $n - $t: $(echo "$out" | tail -1)"
  else
    echo "not ok $n - $t"
    echo "$out" | tail -40 | sed 's/^/# /'
  fi
done
