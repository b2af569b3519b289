#!/bin/sh
# The scenario tests: `fusebox test` prints TAP itself (one line per
# scenario, then "N passed, N failed"). The CLI binary links the
# sanitizer runtimes itself, so FB_PRELOAD is only passed on for
# symmetry with tests/lua.t (a preloaded runtime is harmless).
cd "$(dirname "$0")/.." || exit 1
FB_BUILD="${FB_BUILD:-build}"
if [ -n "$FB_PRELOAD" ]; then
  export LD_PRELOAD="$FB_PRELOAD"
fi
exec "$FB_BUILD/fusebox" test tests/scenarios
