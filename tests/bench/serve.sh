#!/bin/sh
# Registry API throughput: wrk (64 connections, 2 threads) against
# `fusebox serve` on loopback, heartbeat PUT and discover GET, 3 runs of
# 2 s each; prints the median requests/s and p99 latency. Any socket
# error or non-2xx answer fails the benchmark. Then guarded vs direct
# HTTP calls (tests/bench/real/http_calls.lua).
cd "$(dirname "$0")/../.." || exit 1
B="${FB_BUILD:-build}"
command -v wrk >/dev/null || { echo "wrk missing (apt-get install wrk)"; exit 1; }
tmp=$(mktemp -d)
"$B/fusebox" serve --listen 127.0.0.1:0 > "$tmp/out" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 1 100); do
  grep -q "registry API on" "$tmp/out" 2>/dev/null && break
  sleep 0.05
done
url=$(sed -n 's/.*registry API on \(http[^ ]*\)/\1/p' "$tmp/out")
curl -s -X PUT -d '{"host":"127.0.0.1","port":7001}' "$url/bench/instances" >/dev/null
status=0
bench() { # name, wrk args...
  name=$1; shift
  : > "$tmp/runs"
  for _ in 1 2 3; do
    wrk -t2 -c64 -d2s --latency "$@" > "$tmp/wrk" 2>&1
    if grep -q "Non-2xx\|Socket errors" "$tmp/wrk"; then
      echo "$name: errors"; sed 's/^/# /' "$tmp/wrk"; status=1
    fi
    rps=$(sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p' "$tmp/wrk")
    p99=$(sed -n 's/^ *99% *\([0-9.]*[a-z]*\)/\1/p' "$tmp/wrk")
    echo "$rps $p99" >> "$tmp/runs"
  done
  sort -n "$tmp/runs" | sed -n 2p | awk -v n="$name" '{printf "%-22s %9.0f req/s  p99 %s  (median of 3 x 2 s, 64 conns)\n", n, $1, $2}'
}
bench "serve heartbeat PUT" -s tests/bench/real/heartbeat.lua "$url/bench/instances/127.0.0.1:7001/heartbeat"
bench "serve discover GET" "$url/bench"
"$B/fusebox" run tests/bench/real/http_calls.lua || status=1
exit $status
