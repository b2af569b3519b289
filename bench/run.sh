#!/bin/sh
# bench/run.sh -- fusebox side by side with the document's own code, a
# pure-LuaJIT port of it, opossum and cockatiel (BENCHMARKS.md explains
# every row). Each contender runs as its own process and prints one JSON
# line per row; bench/table.py turns them into ONE markdown table, with
# medians and ratios to fusebox measured in this same run, on stdout.
# Progress goes to stderr. A peer that cannot run is listed under the
# table with the reason, never given a number; the exit status is
# non-zero only when one of fusebox's own contenders failed.
#
#   make bench             (builds first; FB_BUILD=build)
cd "$(dirname "$0")/.." || exit 1
BUILD="${FB_BUILD:-build}"
LIMIT=240 # seconds; a peer that hangs is stopped and listed as failed
work=$(mktemp -d) || exit 1
trap 'rm -rf "$work"' EXIT
: >"$work/results" && : >"$work/failures"
status=0

say() { echo "bench: $*" >&2; }

# missing WHO WHY: the contender WHO is not measured, for reason WHY.
missing() {
  say "skipping $1: $2"
  printf '%s\t%s\n' "$1" "$2" >>"$work/failures"
}

# run WHO COMMAND...: runs one contender, keeps its result lines.
run() {
  who=$1
  shift
  say "$who: $*"
  if timeout "$LIMIT" "$@" >"$work/out" 2>"$work/err"; then
    cat "$work/out" >>"$work/results"
  else
    rc=$?
    cat "$work/out" >>"$work/results"
    [ "$rc" = 124 ] && why="stopped after ${LIMIT} s" || why="exited with status $rc"
    missing "$who" "$why: $(tail -n 1 "$work/err")"
    case $who in fusebox*) status=1 ;; esac
  fi
}

have() { command -v "$1" >/dev/null 2>&1; }

# The JavaScript peers, from bench/peers/package-lock.json.
node_ok=
if ! have node || ! have npm; then
  node_why="node or npm is not installed"
elif [ -d bench/peers/node_modules/opossum ] && [ -d bench/peers/node_modules/cockatiel ]; then
  node_ok=1
elif npm ci --prefix bench/peers --no-audit --no-fund >"$work/npm" 2>&1; then
  node_ok=1
else
  node_why="npm ci in bench/peers failed: $(tail -n 1 "$work/npm")"
fi
node_run() {
  if [ -n "$node_ok" ]; then run "$@"; else missing "$1" "$node_why"; fi
}
py_run() {
  if have python3; then run "$@"; else missing "$1" "python3 is not installed"; fi
}
lua="$BUILD/fusebox run --virtual-time --seed 1" # split into words below
# The hot paths run on the real clock too, the way users run; the naive
# C-API baseline (build/cmp/naive.so) is found through FB_BUILD.
export FB_BUILD="$BUILD"
real="env FB_BENCH_CLOCK=real $BUILD/fusebox run --seed 1"

# One line per contender and benchmark.
run "fusebox C, guarded call" "$BUILD/cmp/guarded_call"
run "fusebox Lua, guarded call" $lua bench/lua/guarded_call.lua
run "fusebox Lua, guarded call, real clock" $real bench/lua/guarded_call.lua
py_run "document's Python, guarded call" python3 bench/peers/doc_bench.py guarded_call
run "LuaJIT port, guarded call" luajit bench/peers/lua_port.lua guarded_call
node_run "opossum, guarded call" node bench/peers/opossum.js
node_run "cockatiel, guarded call" node bench/peers/cockatiel.js
run "fusebox C, balanced pick" "$BUILD/cmp/balanced_pick"
run "fusebox Lua, balanced pick" $lua bench/lua/balanced_pick.lua
run "fusebox Lua, balanced pick, real clock" $real bench/lua/balanced_pick.lua
py_run "document's Python, balanced pick" python3 bench/peers/doc_bench.py balanced_pick
run "LuaJIT port, balanced pick" luajit bench/peers/lua_port.lua balanced_pick
run "fusebox C, registry at scale" "$BUILD/cmp/registry_scale"
run "fusebox Lua, registry at scale" $lua bench/lua/registry_scale.lua
py_run "document's Python, registry at scale" python3 bench/peers/doc_bench.py registry_scale
run "fusebox Lua, simulation" $lua bench/lua/simulation.lua
py_run "document's Python, simulation" python3 bench/peers/doc_bench.py simulation

if have python3; then
  python3 bench/table.py "$work/results" "$work/failures" || status=1
else
  say "python3 is not installed: raw results follow instead of the table"
  cat "$work/results"
fi
exit $status
