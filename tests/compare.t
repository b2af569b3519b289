#!/bin/sh
# fusebox compare: the same seeds print the same table byte for byte
# (whatever --jobs), different policies print different numbers, the
# figures agree with a single run's, bad --policy files are one-line
# errors (exit 2), and the side-by-side page is made and bounded.
cd "$(dirname "$0")/.." || exit 1
B="${FB_BUILD:-build}"
S=tests/compare/flaky.lua
P=tests/compare
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export TMPDIR="$tmp/t"
mkdir "$TMPDIR"
echo "1..24"
n=0
ok() { # description, then a command that must succeed
  n=$((n + 1))
  d=$1
  shift
  if "$@"; then echo "ok $n - $d"; else echo "not ok $n - $d"; fi
}
# the cell of row $1 (its label as printed), column $2 (1: the first policy)
cell() {
  awk -v row="$1" -v col="$2" '{ l = substr($0, 1, 38); sub(/ +$/, "", l) }
    l == row { print substr($0, 39 + (col - 1) * 30, 30) }' "$3" | sed 's/ *$//'
}

"$B/fusebox" compare "$S" --policy "$P/none.json" --policy "$P/retry.json" \
  --policy "$P/breaker.lua" --seeds 1-4 --jobs 2 > "$tmp/a" 2> "$tmp/a.err"
rc=$?
ok "compare exits 0 when every run finished" test "$rc" = 0
"$B/fusebox" compare "$S" --policy "$P/none.json" --policy "$P/retry.json" \
  --policy "$P/breaker.lua" --seeds 1-4 --jobs 1 > "$tmp/b" 2> /dev/null
ok "the same seeds print a byte-identical table (with --jobs 2 and 1)" cmp -s "$tmp/a" "$tmp/b"
ok "the table names each policy" \
  grep -q "^policy  *$P/none.json  *$P/retry.json  *$P/breaker.lua" "$tmp/a"
ok "the wall time goes to stderr, not the table" \
  sh -c "grep -q '^compare: 12 runs in' '$tmp/a.err' && ! grep -q ' s$' '$tmp/a'"
none=$(cell "success rate %" 1 "$tmp/a")
retry=$(cell "success rate %" 2 "$tmp/a")
ok "retries raise the success rate ($none -> $retry)" \
  awk -v a="${none%% *}" -v b="${retry%% *}" 'BEGIN { exit !(b > a + 10) }'
ok "no retries: amplification 1.000" test "$(cell "amplification x" 1 "$tmp/a")" = "1.000"
amp=$(cell "amplification x" 2 "$tmp/a")
ok "retries amplify the offered load ($amp)" \
  awk -v a="${amp%% *}" 'BEGIN { exit !(a > 1.2 && a < 2) }'
ok "offered load per backend: a and b rows" \
  sh -c "grep -q '^  a  ' '$tmp/a' && grep -q '^  b  ' '$tmp/a'"
ok "the breaker's rejections are counted by kind" \
  test "$(cell "rejected: circuit open" 1 "$tmp/a")" = 0 -a \
       "$(cell "rejected: circuit open" 3 "$tmp/a" | cut -d' ' -f1)" -gt 1000
open=$(cell "breaker open s" 3 "$tmp/a")
ok "the breaker spent the outage open ($open s)" \
  awk -v a="${open%% *}" 'BEGIN { exit !(a > 10 && a < 20) }'
ok "a spread across seeds is printed (median (min-max))" \
  sh -c "echo '$retry' | grep -Eq '^[0-9.]+ \([0-9.]+-[0-9.]+\)$'"

# One seed's figures are the run's own: offered load = the summary's calls.
"$B/fusebox" compare "$S" --policy "$P/retry.json" --seeds 3-3 > "$tmp/one" 2>/dev/null
"$B/fusebox" run --virtual-time --seed 3 --policy "$P/retry.json" --summary "$S" 2> "$tmp/run"
calls=$(sed -n 's/.*: \([0-9]*\) calls,.*/\1/p' "$tmp/run")
ok "seed 3's offered load is fusebox run --policy's call count ($calls)" \
  test "$(cell "offered load (calls)" 1 "$tmp/one")" = "$calls"

# A run that fails is counted and shown with its replay.
printf 'local fb = require "fusebox"\nlocal p = fb.sim.policy()\nfb.expect(tostring(fb.seed()) ~= "2", "seed two")\n' > "$tmp/fails.lua"
"$B/fusebox" compare "$tmp/fails.lua" --policy "$P/none.json" --seeds 1-3 > "$tmp/f" 2>&1
rc=$?
ok "a failed run: exit 1, '1 of 3', the replay command" \
  sh -c "test $rc = 1 && grep -q '^runs failed  *1 of 3' '$tmp/f' && grep -q '^  replay: fusebox run --virtual-time --seed 2 --policy $P/none.json $tmp/fails.lua$' '$tmp/f'"

# A run that ends without a result (os.exit; under LeakSanitizer, by the
# abort at exit) gives no figures, not zeros.
printf 'os.exit(3)\n' > "$tmp/exits.lua"
"$B/fusebox" compare "$tmp/exits.lua" --policy "$P/none.json" --seeds 1-2 > "$tmp/x" 2>&1
rc=$?
ok "runs without a result: counted as failed (exit 1), their cells '-' (not 0)" \
  sh -c "test $rc = 1 && grep -q '^runs failed  *2 of 2$' '$tmp/x' && grep -q '^p50 latency ms  *-$' '$tmp/x' && grep -q 'seed 1: the run ended .* without a result' '$tmp/x'"

# Bad --policy files: one line, exit 2, naming the file (and the field).
printf '{"retry": {"attempts": "many"}}' > "$tmp/schema.json"
printf '{"retry": ' > "$tmp/json.json"
printf 'return 42\n' > "$tmp/num.lua"
bad=1
for f in "$tmp/missing.json" "$tmp/schema.json" "$tmp/json.json" "$tmp/num.lua"; do
  "$B/fusebox" compare "$S" --policy "$P/none.json" --policy "$f" > "$tmp/o" 2> "$tmp/e"
  rc=$?
  { test "$rc" = 2 && test "$(wc -l < "$tmp/e")" = 1 && test ! -s "$tmp/o" &&
    grep -q "^fusebox: compare: bad --policy: $f: " "$tmp/e"; } || bad=0
done
ok "missing, bad JSON, schema errors, bad Lua: one line, exit 2, before any run" test "$bad" = 1
ok "a schema error names the field's path" \
  sh -c "'$B/fusebox' compare '$S' --policy '$tmp/schema.json' 2>&1 | grep -q 'retry.attempts: must be an integer >= 1, got \"many\"'"
printf 'while true do end\n' > "$tmp/loop.lua"
"$B/fusebox" compare "$S" --policy "$tmp/loop.lua" > /dev/null 2> "$tmp/e"
ok "a policy file that never returns: one line, exit 2 (after 10 s)" \
  sh -c "test $? = 2 && test \$(wc -l < '$tmp/e') = 1 && grep -q 'loop.lua: building the policy took longer than 10 s' '$tmp/e'"
"$B/fusebox" compare "$S" > /dev/null 2> "$tmp/e"
ok "no --policy: a usage error, exit 2" sh -c "test $? = 2 && grep -q 'no --policy FILE given' '$tmp/e'"
"$B/fusebox" compare "$S" --policy "$P/none.json" --seeds 5-2 > /dev/null 2> "$tmp/e"
ok "bad --seeds: exit 2" sh -c "test $? = 2 && grep -q -- '--seeds needs N' '$tmp/e'"
printf 'local fb = require "fusebox"\nfb.sim.policy()\n' > "$tmp/nopolicy.lua"
"$B/fusebox" run --virtual-time "$tmp/nopolicy.lua" > /dev/null 2> "$tmp/e"
ok "fb.sim.policy() outside compare, without a default: a clear error" \
  grep -q "fb.sim.policy: no policy under comparison" "$tmp/e"

# The page.
"$B/fusebox" compare "$S" --policy "$P/none.json" --policy "$P/breaker.lua" \
  --seeds 1-2 --report "$tmp/cmp.html" > "$tmp/t1" 2>/dev/null
ok "--report writes a page with a section per policy" \
  test "$(grep -c '<section class="policy"' "$tmp/cmp.html")" = 2
ok "the page holds the table, escaped, and every axis is the same" \
  sh -c "grep -q '^runs failed ' '$tmp/cmp.html' && grep -q '&lt;\|^policy ' '$tmp/cmp.html'"
size=$(wc -c < "$tmp/cmp.html")
ok "the page is bounded ($size bytes, under 1 MB here; at most 8 x 16 MB)" test "$size" -lt 1000000
ok "no temporary events file is left behind" test -z "$(ls "$TMPDIR")"
