#!/bin/sh
# fusebox explore's throughput: seeds per second on the outage scenario
# (tests/scenarios/outage_recovery.lua, 400 seeds), with 1 job and with 2
# (this machine's cores); 3 runs each, the median printed. Each seed is a
# fork and a fresh Lua state, so the figure includes both.
cd "$(dirname "$0")/../.." || exit 1
B="${FB_BUILD:-build}"
S=tests/scenarios/outage_recovery.lua
status=0
for jobs in 1 2; do
  runs=""
  for _ in 1 2 3; do
    out=$("$B/fusebox" explore --seeds 1-400 --jobs "$jobs" "$S" 2>&1)
    rate=$(echo "$out" | sed -n 's/^explore: 400 seeds in .* (\([0-9]*\) seeds\/s).*/\1/p')
    [ -n "$rate" ] || { echo "explore failed: $out"; status=1; rate=0; }
    runs="$runs $rate"
  done
  median=$(echo $runs | tr ' ' '\n' | sort -n | sed -n 2p)
  echo "explore, outage scenario, $jobs job(s): $median seeds/s (runs:$runs)"
done
exit $status
