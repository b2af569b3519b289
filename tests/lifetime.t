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
exec luajit tests/lifetime/stress.lua
