#!/bin/sh
# Soak: `fusebox serve` on loopback under wrk for SOAK_SECONDS (default
# 300) with registration churn and expiry (tests/soak/churn.lua, a 2 s
# heartbeat timeout), while a side loop keeps abandoning blocking queries
# (curl gives up after 0.2 s on a 10 min wait). Every SOAK_INTERVAL
# seconds (default 5) it samples the server's RSS (/proc/PID/status) and
# open descriptors (/proc/PID/fd). Fails unless: no 5xx, no 4xx but the
# 404s of deleting what is gone, no socket errors; RSS after the warm-up
# (the first third, at least 20 s: the Lua heap's collection peaks
# settle by then) stays within SOAK_RSS_PCT percent
# (default 5) of its first post-warm-up sample; and the descriptors are
# back to their count before the load once the clients are gone.
cd "$(dirname "$0")/../.." || exit 1
B="${FB_BUILD:-build}"
SECONDS_TOTAL="${SOAK_SECONDS:-300}"
INTERVAL="${SOAK_INTERVAL:-5}"
RSS_PCT="${SOAK_RSS_PCT:-5}"
command -v wrk >/dev/null || { echo "soak: wrk missing (apt-get install wrk)"; exit 1; }
tmp=$(mktemp -d)
"$B/fusebox" serve --listen 127.0.0.1:0 --heartbeat-timeout 2 > "$tmp/out" 2> "$tmp/err" &
pid=$!
side=
trap 'kill $pid $side 2>/dev/null; wait $pid $side 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 1 100); do
  grep -q "registry API on" "$tmp/out" 2>/dev/null && break
  sleep 0.05
done
url=$(sed -n 's/.*registry API on \(http[^ ]*\)/\1/p' "$tmp/out")
[ -n "$url" ] || { echo "soak: the server did not start"; cat "$tmp/err"; exit 1; }
fds() { ls "/proc/$pid/fd" | wc -l; }
rss() { sed -n "s/^VmRSS:[[:space:]]*\([0-9]*\) kB/\1/p" "/proc/$pid/status"; }
fd0=$(fds)
echo "soak: $SECONDS_TOTAL s against $url, pid $pid, RSS $(rss) kB, $fd0 fds before the load"

wrk -t2 -c16 --timeout 5s -d"${SECONDS_TOTAL}s" -s tests/soak/churn.lua "$url" > "$tmp/wrk" 2>&1 &
wrk_pid=$!
( # abandoned blocking queries on a service nothing changes: each must
  # free its connection at once, not after its 10 min wait
  while kill -0 $wrk_pid 2>/dev/null; do
    curl -s -m 0.2 -o /dev/null "$url/quiet?index=0&wait=10m"
  done
) &
side=$!

warmup=$((SECONDS_TOTAL / 3))
[ "$warmup" -lt 20 ] && warmup=20
t=0
: > "$tmp/samples"
while kill -0 $wrk_pid 2>/dev/null; do
  sleep "$INTERVAL"
  t=$((t + INTERVAL))
  r=$(rss); f=$(fds)
  [ -n "$r" ] || break
  echo "$t $r $f" >> "$tmp/samples"
  echo "soak: t=${t}s RSS ${r} kB, ${f} fds"
done
wait $wrk_pid
wait $side 2>/dev/null
side=
status=0
if ! kill -0 $pid 2>/dev/null; then
  echo "soak: FAIL the server died"; cat "$tmp/err"; exit 1
fi

# Connections: back to the count before the load (give closes a moment).
for _ in $(seq 1 50); do [ "$(fds)" -le "$fd0" ] && break; sleep 0.1; done
fd1=$(fds)
if [ "$fd1" -ne "$fd0" ]; then echo "soak: FAIL $fd1 fds after the load, $fd0 before"; status=1; fi

answers=$(grep '^soak answers:' "$tmp/wrk")
rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p' "$tmp/wrk")
echo "$answers; $rps requests/s"
case "$answers" in
  *" other4xx=0 5xx=0 socket_errors=0") ;;
  *) echo "soak: FAIL errors"; sed 's/^/# /' "$tmp/wrk"; status=1 ;;
esac
if [ -s "$tmp/err" ]; then echo "soak: FAIL the server wrote to stderr:"; sed 's/^/# /' "$tmp/err"; status=1; fi

# RSS: flat after the warm-up.
awk -v w="$warmup" -v pct="$RSS_PCT" '
  $1 >= w { if (first == "") first = $2; if ($2 > max) max = $2; n++ }
  END {
    if (n < 2) { print "soak: FAIL fewer than 2 RSS samples after the warm-up"; exit 1 }
    g = (max - first) * 100 / first
    printf "soak: RSS after %d s of warm-up: %d kB first, %d kB max (+%.1f%%, limit %d%%), %d samples\n", w, first, max, g, pct, n
    if (g > pct) { print "soak: FAIL RSS grew"; exit 1 }
  }' "$tmp/samples" || status=1
[ $status -eq 0 ] && echo "soak: ok"
exit $status
