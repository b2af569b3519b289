#!/bin/sh
# The Lua API tests: busted specs under LuaJIT, loading $FB_BUILD/fusebox.so.
# Under the sanitizers the .so needs their runtimes preloaded into luajit.
cd "$(dirname "$0")/.." || exit 1
export FB_BUILD="${FB_BUILD:-build}"
if [ -n "$FB_PRELOAD" ]; then
  export LD_PRELOAD="$FB_PRELOAD"
  # luajit itself (not our code) keeps allocations alive at exit.
  export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
fi
exec busted --lua=luajit -o TAP --helper=tests/lua/helper.lua tests/lua
