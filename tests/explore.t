#!/bin/sh
# fusebox explore: every failing seed found, each replay command failing
# the same way, the shrinker dropping a fault kind that is not needed,
# --stop-at-first, a seed whose process dies, usage errors.
cd "$(dirname "$0")/.." || exit 1
B="${FB_BUILD:-build}"
S=tests/explore/two_faults.lua
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "1..12"
n=0
ok() { # description, then a command that must succeed
  n=$((n + 1))
  d=$1
  shift
  if "$@"; then echo "ok $n - $d"; else echo "not ok $n - $d"; fi
}

"$B/fusebox" explore --seeds 1-60 --jobs 2 --list 1000 --shrink 1000 "$S" > "$tmp/out" 2>&1
rc=$?
ok "exits 1 when a seed failed" test "$rc" = 1
# The seeds that fail, found one run at a time the way a user replays.
: > "$tmp/want"
for s in $(seq 1 60); do
  "$B/fusebox" run --virtual-time --seed "$s" "$S" > /dev/null 2>&1 || echo "$s" >> "$tmp/want"
done
sed -n 's/^seed \([0-9]*\): failed.*/\1/p' "$tmp/out" | sort -n > "$tmp/got"
ok "lists exactly the seeds that fail when replayed one by one" cmp -s "$tmp/want" "$tmp/got"
nwant=$(wc -l < "$tmp/want")
ok "the count line agrees ($nwant of 60, about a quarter)" \
  grep -q "^explore: 60 seeds in .*: $nwant failed" "$tmp/out"
ok "some but not all seeds fail (the two kinds together: 1 in 4)" \
  test "$nwant" -gt 5 -a "$nwant" -lt 30
# Every replay command printed fails with the message explore reported.
same=1
grep '^  replay: ' "$tmp/out" | head -n 20 | sed 's/^  replay: fusebox //' > "$tmp/replays"
while read -r cmd; do
  seed=$(echo "$cmd" | sed 's/.*--seed \([0-9]*\).*/\1/')
  # shellcheck disable=SC2086
  if "$B/fusebox" $cmd > "$tmp/r" 2>&1; then same=0; fi
  grep -q "an outage during a burst, seed $seed" "$tmp/r" || same=0
done < "$tmp/replays"
ok "each replay command reproduces its seed's failure" test "$same" = 1
ok "failing seeds list their fault mix" grep -q "^  faults on: burst,outage$" "$tmp/out"
ok "the list is earliest in virtual time first" \
  sh -c "sed -n 's/^seed [0-9]*: failed at t=\([0-9.]*\).*/\1/p' '$tmp/out' | sort -c -n"
# A seed with noise on shrinks to the two kinds that matter.
ok "the shrinker finds noise not needed" grep -q "^  not needed: noise$" "$tmp/out"
seed=$(sed -n 's/^shrunk seed \([0-9]*\) .*/\1/p' "$tmp/out" | while read -r s; do
  grep -A1 "^shrunk seed $s " "$tmp/out" | grep -q "not needed: noise" && echo "$s"; done | head -n 1)
"$B/fusebox" run --virtual-time --seed "$seed" --swarm-off noise "$S" > "$tmp/r" 2>&1
rc=$?
ok "its shrunk replay (--swarm-off noise) still fails, at t=1 without noise" \
  sh -c "test $rc = 1 && grep -q 'expectation failed at t=1.000' '$tmp/r'"

"$B/fusebox" explore --seeds 1-60 --jobs 1 --stop-at-first "$S" > "$tmp/first" 2>&1
ok "--stop-at-first stops at one failure" \
  grep -q ": 1 failed (.*), stopped at the first$" "$tmp/first"

cat > "$tmp/dies.lua" <<'LUA'
local fb = require "fusebox"
if tonumber(fb.seed()) % 3 == 0 then os.exit(7) end
LUA
"$B/fusebox" explore --seeds 1-9 --jobs 2 "$tmp/dies.lua" > "$tmp/dies" 2>&1
ok "a seed whose process exits is a failure that says so" \
  sh -c "grep -q ': 3 failed' '$tmp/dies' && grep -q 'ended .* without a result' '$tmp/dies'"

bad=0
for args in "--seeds 0 $S" "--seeds 5-2 $S" "--jobs 0 $S" "--seeds" "" "$S $S" "--nope $S" \
    "--timeout -1 $S" "/no/such/scenario.lua"; do
  # shellcheck disable=SC2086
  "$B/fusebox" explore $args > "$tmp/u" 2>&1
  [ $? = 2 ] && grep -q "^fusebox: " "$tmp/u" || { bad=1; echo "# '$args': $(cat "$tmp/u")"; }
done
ok "usage errors exit 2 with one line naming the problem" test "$bad" = 0
