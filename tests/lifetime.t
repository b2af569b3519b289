#!/bin/sh
# Lifetime stress of the Lua API (tests/lifetime/stress.lua): a seeded
# random program of 500,000 operations; FB_SEED=n replays a failure.
# Under the sanitizers the .so needs their runtimes preloaded into luajit.
cd "$(dirname "$0")/.." || exit 1
export FB_BUILD="${FB_BUILD:-build}"
if [ -n "$FB_PRELOAD" ]; then
  export LD_PRELOAD="$FB_PRELOAD"
  # luajit itself (not our code) keeps allocations alive at exit.
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
fi
# With the JIT off: on Debian's LuaJIT (OpenResty's branch of 2023-01-19)
# about one seed in a hundred crashed the VM with the JIT on, and the
# crash was LuaJIT's: a trace, exiting, restored a listener's function
# slot from a register that held a small integer (a hardware watchpoint
# in a replayed run caught LuaJIT's snapshot restore writing it; moving
# the listener one call deeper moved the garbage with it). No seed
# crashed in a few hundred runs with -joff. What this stress tests is
# fusebox's lifetimes, which the interpreter reaches the same way; the
# compiled FFI paths are exercised by every other spec.
exec luajit -joff tests/lifetime/stress.lua
