#!/bin/sh
# A guarded HTTP GET through a pick and a breaker, over the pool's
# keep-alive connections, versus wrk's own keep-alive request rate
# against the same local backend (fb.http.serve in its own process), and
# versus a new connection per request (pool = false). One connection
# (calls one at a time: the latency a caller sees) and 16 at once; wrk
# with one thread, as the fusebox client has one. The runs interleave
# (wrk, pooled, new; three rounds of 2 s each) so a busy machine slows
# all alike; medians. ratio = wrk's rate / the guarded call's rate (the
# target: at most 1.25).
cd "$(dirname "$0")/../.." || exit 1
B="${FB_BUILD:-build}"
command -v wrk >/dev/null || { echo "wrk missing (apt-get install wrk)"; exit 1; }
tmp=$(mktemp -d)
"$B/fusebox" run tests/bench/real/http_backend.lua > "$tmp/out" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 1 100); do
  grep -q "backend on" "$tmp/out" 2>/dev/null && break
  sleep 0.05
done
url=$(sed -n 's/^backend on //p' "$tmp/out")
[ -n "$url" ] || { echo "http pool: the backend did not start"; cat "$tmp/out"; exit 1; }
status=0
median() { sort -n "$1" | sed -n 2p; }
for c in 1 16; do
  : > "$tmp/wrk.$c"; : > "$tmp/pooled.$c"; : > "$tmp/new.$c"
  for _ in 1 2 3; do
    wrk -t1 -c$c -d2s "$url" > "$tmp/wrk" 2>&1
    if grep -q "Non-2xx\|Socket errors" "$tmp/wrk"; then
      echo "wrk -c$c: errors"; sed 's/^/# /' "$tmp/wrk"; status=1
    fi
    sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p' "$tmp/wrk" >> "$tmp/wrk.$c"
    "$B/fusebox" run tests/bench/real/http_pool.lua "$url" pooled $c 2 >> "$tmp/pooled.$c" || status=1
    "$B/fusebox" run tests/bench/real/http_pool.lua "$url" new $c 2 >> "$tmp/new.$c" || status=1
  done
  w=$(median "$tmp/wrk.$c"); p=$(median "$tmp/pooled.$c"); n=$(median "$tmp/new.$c")
  awk -v c=$c -v w="$w" -v p="$p" -v n="$n" 'BEGIN {
    printf "http GET, %2d conn: wrk keep-alive %8.0f req/s (%5.1f us)\n", c, w, 1e6 * c / w
    printf "http GET, %2d conn: guarded, pooled %7.0f calls/s (%5.1f us)  ratio %.2f\n", c, p, 1e6 * c / p, w / p
    printf "http GET, %2d conn: guarded, new conn %5.0f calls/s (%5.1f us)  ratio %.2f  (median of 3 x 2 s)\n", c, n, 1e6 * c / n, w / n
  }'
done
exit $status
