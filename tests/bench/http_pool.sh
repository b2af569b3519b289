#!/bin/sh
# Issue 17's figure: a guarded HTTP GET through a pick and a breaker,
# over the pool's keep-alive connections, versus wrk's own keep-alive
# request rate against the same local backend (fb.http.serve in its own
# process), and versus a new connection per request (pool = false).
# Target: the guarded call within 1.25x of a raw keep-alive request,
# ratio = wrk's rate / the guarded call's rate <= 1.25.
#
# Fair by construction: both clients have one thread (wrk -t1) and the
# same number of connections (wrk -cN; the fusebox client runs N
# coroutines, each holding one pooled connection), one backend serves
# both, and the runs interleave (wrk, pooled, new; HTTP_POOL_ROUNDS
# rounds, 3 by default, of HTTP_POOL_SECONDS, 2 s, each) so a busy
# machine slows all alike; medians. One connection (calls one at a
# time: the latency a caller sees) and 16 at once. The client's CPU per
# call (os.clock, user + system, median) says what the client costs
# whatever the backend or the machine's other load.
cd "$(dirname "$0")/../.." || exit 1
B="${FB_BUILD:-build}"
ROUNDS="${HTTP_POOL_ROUNDS:-3}"
SECONDS_EACH="${HTTP_POOL_SECONDS:-2}"
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
median() { sort -n "$1" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
for c in 1 16; do
  : > "$tmp/wrk.$c"; : > "$tmp/pooled.$c"; : > "$tmp/new.$c"
  for _ in $(seq 1 "$ROUNDS"); do
    wrk -t1 -c$c -d"${SECONDS_EACH}s" "$url" > "$tmp/wrk" 2>&1
    if grep -q "Non-2xx\|Socket errors" "$tmp/wrk"; then
      echo "wrk -c$c: errors"; sed 's/^/# /' "$tmp/wrk"; status=1
    fi
    sed -n 's/^Requests\/sec: *\([0-9.]*\)/\1/p' "$tmp/wrk" >> "$tmp/wrk.$c"
    "$B/fusebox" run tests/bench/real/http_pool.lua "$url" pooled $c "$SECONDS_EACH" >> "$tmp/pooled.$c" || status=1
    "$B/fusebox" run tests/bench/real/http_pool.lua "$url" new $c "$SECONDS_EACH" >> "$tmp/new.$c" || status=1
  done
  awk '{ print $2 }' "$tmp/pooled.$c" > "$tmp/cpu.$c"
  w=$(median "$tmp/wrk.$c"); p=$(median "$tmp/pooled.$c"); n=$(median "$tmp/new.$c"); u=$(median "$tmp/cpu.$c")
  awk -v c=$c -v w="$w" -v p="$p" -v n="$n" -v u="$u" -v r="$ROUNDS" -v s="$SECONDS_EACH" 'BEGIN {
    ratio = w / p
    printf "http GET, %2d conn: wrk keep-alive    %7.0f req/s   (%6.1f us)\n", c, w, 1e6 * c / w
    printf "http GET, %2d conn: guarded, pooled   %7.0f calls/s (%6.1f us; client CPU %.1f us a call)  ratio %.2f, target <= 1.25: %s\n",
      c, p, 1e6 * c / p, u, ratio, ratio <= 1.25 ? "met" : "missed"
    printf "http GET, %2d conn: guarded, new conn %7.0f calls/s (%6.1f us)  ratio %.2f  (median of %d x %s s)\n",
      c, n, 1e6 * c / n, w / n, r, s
  }'
done
exit $status
