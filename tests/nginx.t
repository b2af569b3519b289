#!/bin/sh
# fusebox.ngx in a real nginx (Debian's, with libnginx-mod-http-lua): two
# workers in front of three local backends (one small nginx each, so one
# can be killed and restarted), everything on loopback in a temp dir.
# Checks: traffic balanced over the three; a killed backend costs at most
# failure_threshold failed requests per worker with nginx's retries off
# (an upstream without a zone keeps its state per worker), then none once the breakers are
# open; traffic returns through half-open probes after a restart; a
# request's retries never repeat a peer; /metrics serves the breakers.
# With a zone (state shared by the workers, in shared memory): a killed
# backend costs about failure_threshold failed requests in all, not per
# worker; `nginx -s reload` keeps an open breaker open (while the
# per-worker upstream pays again); traffic returns through a half-open
# probe once the shared breaker's timeout passed; least_request weighs
# every worker's calls in flight (the zone's load records).
# Then fusebox on nginx's scheduler (a second nginx, 2 workers): retries
# with backoff and fb.timeout in content_by_lua, fb.sleep not blocking
# the worker, fb.run and fb.http refused with a clear error, fb.client's
# ejection ending on time, one clock in both workers, health checks from
# worker 0 alone (TCP and HTTP probes over cosockets), a graceful stop not
# held by a health check's interval.
cd "$(dirname "$0")/.." || exit 1
B="${FB_BUILD:-build}"
ROOT=$(pwd)
MODS=/usr/lib/nginx/modules

if ! command -v nginx >/dev/null 2>&1 || [ ! -f "$MODS/ngx_http_lua_module.so" ]; then
  echo "1..0 # SKIP nginx or libnginx-mod-http-lua is not installed (make deps-test installs them)"
  exit 0
fi
if ! command -v curl >/dev/null 2>&1; then
  echo "1..0 # SKIP curl is not installed (make deps-test installs it)"
  exit 0
fi
# Under the sanitizer pass (FB_PRELOAD: the ASan and UBSan runtimes) the
# front nginx, which loads fusebox.so from $FB_BUILD, runs with them
# preloaded: a report aborts a worker, which the last check catches.
T=$(mktemp -d)
chmod 755 "$T"
cleanup() {
  for p in "$T"/*.pid "$T"/example/logs/nginx.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done
  sleep 0.3
  rm -rf "$T"
  for m in "$MASTER" "$EXMASTER"; do [ -n "$m" ] && rm -f /dev/shm/fusebox-zone.*."$m"; done
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE

echo "1..27"
n=0
check() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; fi; }

# Free ports, from the kernel (the etcd tests' helper).
set -- $(FB_BUILD="$B" sh tests/etcd/ctl.sh ports 15)
[ $# = 15 ] || { echo "Bail out! no free ports"; exit 1; }
FRONT=$1 FRONT3=$2 B1=$3 B2=$4 B3=$5 EX=$6 E1=$7 E2=$8 E3=$9 HOSTF=${10} DEAD=${11} HOST1=${12}
FRONTZ=${13} FRONTLR=${14} SLOW=${15}
PEERS="\"127.0.0.1:$B1\", \"127.0.0.1:$B2\", \"127.0.0.1:$B3\""
USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root root;" # workers must read the build tree

temp_paths() {
  echo "client_body_temp_path $T/tmp; proxy_temp_path $T/tmp; fastcgi_temp_path $T/tmp;"
  echo "uwsgi_temp_path $T/tmp; scgi_temp_path $T/tmp;"
}
mkdir -p "$T/tmp"

backend() { # backend PORT: start one
  cat >"$T/b$1.conf" <<EOF
$USER_LINE
worker_processes 1;
pid $T/b$1.pid;
events { worker_connections 256; }
http {
  access_log off;
  $(temp_paths)
  server { listen 127.0.0.1:$1; location / { return 200 "$1\n"; } }
}
EOF
  nginx -p "$T" -e "$T/b$1.err" -c "$T/b$1.conf"
}
stop_backend() { # stop_backend PORT: kill it and wait until it is gone
  pid=$(cat "$T/b$1.pid")
  kill "$pid"
  i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  rm -f "$T/b$1.pid"
}

cat >"$T/nginx.conf" <<EOF
$USER_LINE
load_module $MODS/ndk_http_module.so;
load_module $MODS/ngx_http_lua_module.so;
worker_processes 2;
pid $T/nginx.pid;
error_log $T/error.log warn;
events { worker_connections 256; }
http {
  $(temp_paths)
  log_format tries '\$server_port \$status "\$upstream_addr" "\$upstream_status" \$pid';
  access_log $T/access.log tries;
  # lua/?.lua first on the path, as configs often have it: it must not
  # hide the C module (fusebox.so on the cpath)
  lua_package_path "$ROOT/lua/?.lua;;";
  lua_package_cpath "$ROOT/$B/?.so;;";
  init_worker_by_lua_block {
    local ngx_fb = require "fusebox.ngx"
    once = ngx_fb.upstream{ name = "once", peers = { $PEERS }, tries = 1,
      breaker = { failure_threshold = 3, timeout = 4, success_threshold = 1 } }
    thrice = ngx_fb.upstream{ name = "thrice", algorithm = "random", peers = { $PEERS }, tries = 3,
      breaker = { failure_threshold = 50, timeout = 30, success_threshold = 1 } }
    shared = ngx_fb.upstream{ name = "shared", peers = { $PEERS }, tries = 1, zone = "fbtest",
      breaker = { failure_threshold = 3, timeout = 10, success_threshold = 1 } }
    -- least_request over two fast peers and a slow one; lr_hold, of the
    -- same name and zone, sends to the slow one alone: its calls in flight
    -- are lr's (one load record per peer of upstream "lr"), whichever
    -- worker made them. choices = 10: the slow peer, loaded, is picked
    -- only if all ten samples fall on it ((1/3)^10)
    lr = ngx_fb.upstream{ name = "lr", algorithm = "least_request", balancer = { choices = 10 },
      peers = { "127.0.0.1:$B1", "127.0.0.1:$B2", "127.0.0.1:$SLOW" }, tries = 1, zone = "fbtest" }
    lr_hold = ngx_fb.upstream{ name = "lr", peers = { "127.0.0.1:$SLOW" }, tries = 1, zone = "fbtest" }
  }
  upstream lr { server 0.0.0.1; balancer_by_lua_block { lr:balance() } }
  upstream lr_hold { server 0.0.0.1; balancer_by_lua_block { lr_hold:balance() } }
  upstream shared { server 0.0.0.1; balancer_by_lua_block { shared:balance() } }
  upstream once { server 0.0.0.1; balancer_by_lua_block { once:balance() } }
  upstream thrice { server 0.0.0.1; balancer_by_lua_block { thrice:balance() } }
  server {
    listen 127.0.0.1:$FRONT;
    location / { proxy_pass http://once; proxy_next_upstream off; log_by_lua_block { once:log() } }
    location = /metrics { content_by_lua_block { once:metrics() } }
  }
  server {
    listen 127.0.0.1:$FRONTLR reuseport;
    location / { proxy_pass http://lr; proxy_next_upstream off; log_by_lua_block { lr:log() } }
    location /hold { proxy_pass http://lr_hold; proxy_next_upstream off; log_by_lua_block { lr_hold:log() } }
    location = /load { content_by_lua_block {
      ngx.say(ngx.worker.pid(), " ", lr:peers()["127.0.0.1:$SLOW"].shared_inflight) } }
  }
  server { listen 127.0.0.1:$SLOW; location / { content_by_lua_block { ngx.sleep(3) ngx.say("$SLOW") } } }
  server { # reuseport: the kernel spreads the connections over both workers
    listen 127.0.0.1:$FRONTZ reuseport;
    location / { proxy_pass http://shared; proxy_next_upstream off; log_by_lua_block { shared:log() } }
  }
  server {
    listen 127.0.0.1:$FRONT3;
    location / { proxy_pass http://thrice; proxy_next_upstream error timeout http_502;
                 log_by_lua_block { thrice:log() } }
  }
}
EOF

for b in $B1 $B2 $B3; do backend $b; done
# Under the sanitizers, the front nginx (which this test reloads) is checked
# for memory errors but not leaks: nginx itself leaks across a reload
# (LeakSanitizer reports its ngx_memalign pools without fusebox loaded at
# all, and its tracer crashes in the reloaded master).
FRONT_ASAN="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
ASAN_OPTIONS="$FRONT_ASAN" LD_PRELOAD="$FB_PRELOAD" nginx -p "$T" -e "$T/error.log" -c "$T/nginx.conf" 2>"$T/start.log"
up=1
for _ in $(seq 50); do
  curl -s -o /dev/null "http://127.0.0.1:$FRONT/" && { up=0; break; }
  sleep 0.1
done
check $up "nginx starts with fusebox.ngx in 2 workers ($(head -c 300 "$T/start.log" "$T/error.log" 2>/dev/null | tr '\n' ' '))"
MASTER=$(cat "$T/nginx.pid")

# requests N PORT: N sequential requests; prints one line per response:
# the status and the body (the backend's port)
requests() {
  for _ in $(seq "$1"); do
    curl -s -m 5 -o "$T/body" -w '%{http_code} ' "http://127.0.0.1:$2/"
    head -c 16 "$T/body" | tr -d '\n'
    echo
  done
}
count() { grep -c "^$1" "$2"; }

requests 60 $FRONT >"$T/r1"
c1=$(count "200 $B1" "$T/r1") c2=$(count "200 $B2" "$T/r1") c3=$(count "200 $B3" "$T/r1")
[ "$c1" -ge 10 ] && [ "$c2" -ge 10 ] && [ "$c3" -ge 10 ] && [ $((c1 + c2 + c3)) = 60 ]
check $? "60 requests are balanced over the three backends ($c1, $c2, $c3)"

# least_request and a slow peer: four calls held on it (through lr_hold,
# by either worker); both workers see all four, and lr sends it nothing.
for _ in 1 2 3 4; do curl -s -m 8 -o /dev/null "http://127.0.0.1:$FRONTLR/hold" & done
sleep 0.5
for _ in $(seq 10); do curl -s -m 2 "http://127.0.0.1:$FRONTLR/load"; done >"$T/load"
requests 20 $FRONTLR >"$T/lr"
wait
lpids=$(awk '{ print $1 }' "$T/load" | sort -u | wc -l)
lseen=$(awk '{ print $2 }' "$T/load" | sort -u | tr '\n' ' ')
toslow=$(count "200 $SLOW" "$T/lr") lok=$(grep -c '^200' "$T/lr")
[ "$lpids" = 2 ] && [ "$lseen" = "4 " ] && [ "$toslow" = 0 ] && [ "$lok" = 20 ]
check $? "least_request sees the slow peer's calls in flight from every worker ($lpids workers saw: $lseen) and sends it $toslow of $lok requests"

stop_backend $B2
requests 90 $FRONT >"$T/r2"
fails=$(grep -vc '^200' "$T/r2")
late=$(tail -n 30 "$T/r2" | grep -vc '^200')
[ "$fails" -ge 1 ] && [ "$fails" -le 6 ]
check $? "a killed backend with retries off fails $fails of 90 requests: at most failure_threshold (3) x workers (2)"
[ "$late" = 0 ]
check $? "no request fails once its breakers are open (last 30: $late failed)"

# The zoned upstream, the same backend dead: one breaker for both workers.
# Requests are sequential, but a request's log phase (where its failure is
# recorded) runs after its response went out, so the next request may be
# picked before the third failure opened the breaker: one more may fail.
requests 90 $FRONTZ >"$T/z1"
zopen=$(date +%s)
zfails=$(grep -vc '^200' "$T/z1")
zlate=$(tail -n 60 "$T/z1" | grep -vc '^200')
zpids=$(grep "^$FRONTZ " "$T/access.log" | awk '{ print $NF }' | sort -u | wc -l)
[ "$zfails" -ge 3 ] && [ "$zfails" -le 4 ] && [ "$zlate" = 0 ] && [ "$zpids" = 2 ]
check $? "with a zone the killed backend fails $zfails of 90 requests served by $zpids workers: failure_threshold (3) once, not per worker (+1 at most: a failure not yet logged)"

# nginx -s reload: wait until both workers are new ones.
workers() { ps -o pid= --ppid "$MASTER" | tr -d ' ' | sort | tr '\n' ' '; }
old_workers=$(workers)
ASAN_OPTIONS="$FRONT_ASAN" LD_PRELOAD="$FB_PRELOAD" nginx -p "$T" -e "$T/error.log" -c "$T/nginx.conf" -s reload 2>>"$T/start.log"
for _ in $(seq 100); do
  w=$(workers) fresh=1
  for p in $old_workers; do case " $w " in *" $p "*) fresh=0 ;; esac; done
  [ $fresh = 1 ] && [ "$(echo $w | wc -w)" = 2 ] && break
  sleep 0.1
done
requests 30 $FRONTZ >"$T/z2"
requests 30 $FRONT >"$T/o2"
zf2=$(grep -vc '^200' "$T/z2") of2=$(grep -vc '^200' "$T/o2")
[ "$fresh" = 1 ] && [ "$zf2" = 0 ] && [ "$of2" -ge 1 ]
check $? "after nginx -s reload (new workers: $fresh) the zone's breaker is still open: $zf2 of 30 failed (the per-worker upstream starts over: $of2 failed)"

# A worker killed (SIGKILL) mid-traffic: the master starts another, which
# finds the zone as it was; nobody is left waiting on a lock it held.
victim=$(workers | awk '{ print $1 }')
requests 20 $FRONTZ >/dev/null &
kill -9 "$victim"
wait
for _ in $(seq 50); do
  w=$(workers)
  case " $w " in *" $victim "*) ;; *) [ "$(echo $w | wc -w)" = 2 ] && break ;; esac
  sleep 0.1
done
requests 30 $FRONTZ >"$T/z4"
zf4=$(grep -vc '^200' "$T/z4")
[ "$zf4" = 0 ]
check $? "after a worker is killed its replacement finds the zone's breaker open: $zf4 of 30 failed"

backend $B2
sleep 4.5 # past the breakers' timeout: the next try is a half-open probe
requests 60 $FRONT >"$T/r3"
back=$(count "200 $B2" "$T/r3") fails3=$(grep -vc '^200' "$T/r3")
[ "$back" -ge 5 ] && [ "$fails3" = 0 ]
check $? "traffic returns through half-open probes after the restart ($back of 60 to it, $fails3 failed)"

now=$(date +%s) # the zone's breaker opened before zopen, for 10 s
[ "$now" -lt $((zopen + 11)) ] && sleep $((zopen + 11 - now))
requests 60 $FRONTZ >"$T/z3"
zback=$(count "200 $B2" "$T/z3") zf3=$(grep -vc '^200' "$T/z3")
[ "$zback" -ge 5 ] && [ "$zf3" = 0 ]
check $? "with a zone, traffic returns through a half-open probe after the restart ($zback of 60 to it, $zf3 failed)"

stop_backend $B1
stop_backend $B3
requests 40 $FRONT3 >"$T/r4"
ok4=$(count "200 $B2" "$T/r4")
[ "$ok4" = 40 ]
check $? "with two of three dead and tries = 3, every request reaches the live one ($ok4 of 40)"

grep "^$FRONT3 " "$T/access.log" >"$T/tries"
repeats=$(awk -F'"' '{ n = split($2, a, /, /); delete seen; for (i = 1; i <= n; i++) { if (a[i] in seen) { print; break } seen[a[i]] = 1 } }' "$T/tries" | wc -l)
multi=$(awk -F'"' '$2 ~ /, /' "$T/tries" | wc -l)
[ "$repeats" = 0 ] && [ "$multi" -ge 1 ]
check $? "a request's retries never repeat a peer ($multi requests retried, $repeats repeated one)"

m=$(curl -s "http://127.0.0.1:$FRONT/metrics")
echo "$m" | grep -q "fusebox_breaker_state{breaker=\"once/127.0.0.1:$B2\",name=\"127.0.0.1:$B2\",state=\"closed\"} 1" &&
  echo "$m" | grep -q "fusebox_balancer_picks_total{registry=\"once\",service=\"once\",instance=\"127.0.0.1:$B1\"}"
check $? "/metrics serves this worker's breakers and balancer in the Prometheus text"

stop_backend $B2 # all three dead now
requests 40 $FRONT >"$T/r6"
fast=$(tail -n 10 "$T/r6" | grep -c '^500')
[ "$fast" = 10 ] && grep -q "no peer of upstream 'once' left to try" "$T/error.log"
check $? "with every peer's breaker open a request ends at once, with 500, connecting to none (last 10: $fast)"

kill "$(cat "$T/nginx.pid")"
i=0
while [ -f "$T/nginx.pid" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
# (but the worker this test killed)
! grep -v "worker process $victim exited on signal 9" "$T/error.log" |
  grep -E '\[(alert|emerg)\]|lua entry thread aborted|runtime error|Sanitizer' >"$T/bad"
check $? "nginx stops cleanly, no Lua or sanitizer error in its log ($(head -c 300 "$T/bad" | tr '\n' ' '))"

# examples/nginx as shipped, on this test's ports: fusebox.ngx required
# first, from fusebox.so on the cpath alone.
mkdir -p "$T/example/logs"
sed -e "s/8080/$EX/; s/18081/$E1/g; s/18082/$E2/g; s/18083/$E3/g" \
  -e "s|\$prefix/../../build|$ROOT/$B|" examples/nginx/nginx.conf >"$T/example/nginx.conf"
sed -e "s/18081/$E1/; s/18082/$E2/; s/18083/$E3/" examples/nginx/upstream.lua >"$T/example/upstream.lua"
LD_PRELOAD="$FB_PRELOAD" nginx -p "$T/example" -e logs/error.log -c nginx.conf 2>"$T/example.log"
echo "# example nginx started: $? ($(cat "$T/example.log"))"
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$EX/" && break; sleep 0.1; done
EXMASTER=$(cat "$T/example/logs/nginx.pid" 2>/dev/null)
requests 30 $EX >"$T/r5"
e1=$(count "200 $E1" "$T/r5") e2=$(count "200 $E2" "$T/r5") e3=$(count "200 $E3" "$T/r5")
[ "$e1" -ge 1 ] && [ "$e2" -ge 1 ] && [ "$e3" -ge 1 ] && [ $((e1 + e2 + e3)) = 30 ] &&
  ! grep -E '\[(alert|emerg|error)\]|Sanitizer' "$T/example/logs/error.log" >/dev/null
check $? "examples/nginx serves through all three peers ($e1, $e2, $e3; $(head -c 300 "$T/example.log" "$T/example/logs/error.log" | tr '\n' ' '))"
[ -f "$T/example/logs/nginx.pid" ] && kill "$(cat "$T/example/logs/nginx.pid")"

# fusebox on nginx's scheduler: its own nginx, 2 workers, handlers in
# tests/nginx/host_checks.lua. DEAD is a port nobody listens on.
cat >"$T/host.conf" <<EOF
$USER_LINE
load_module $MODS/ndk_http_module.so;
load_module $MODS/ngx_http_lua_module.so;
worker_processes 2;
pid $T/host.pid;
error_log $T/host.log warn;
events { worker_connections 256; }
http {
  $(temp_paths)
  access_log off;
  lua_socket_log_errors off;
  lua_package_path "$ROOT/tests/nginx/?.lua;;";
  lua_package_cpath "$ROOT/$B/?.so;;";
  init_worker_by_lua_block { require("host_checks").init_worker($DEAD, $HOSTF) }
  server {
    listen 127.0.0.1:$HOSTF;
    location = /policy { content_by_lua_block { require("host_checks").policy() } }
    location = /sleep { content_by_lua_block { require("host_checks").sleep() } }
    location = /fast { content_by_lua_block { ngx.say("fast") } }
    location = /sick { return 503; }
    location = /refusals { content_by_lua_block { require("host_checks").refusals() } }
    location = /client { content_by_lua_block { require("host_checks").client() } }
    location = /clock { content_by_lua_block { require("host_checks").clock() } }
    location = /logged { return 200; log_by_lua_block { require("host_checks").log_phase() } }
  }
}
EOF
# Leak checks off for this one: it is stopped gracefully (below), and
# nginx with lua-nginx-module leaks its timers' memory on a graceful stop
# without fusebox loaded at all (a bare ngx.timer.at loop: 27 KB in 3
# ngx_alloc blocks); ASan and UBSan still watch every access.
LD_PRELOAD="$FB_PRELOAD" ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
  nginx -p "$T" -e "$T/host.log" -c "$T/host.conf" 2>"$T/host_start.log"
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$HOSTF/fast" && break; sleep 0.1; done
H="http://127.0.0.1:$HOSTF"

r=$(curl -s -m 10 "$H/policy")
took=$(echo "$r" | sed -n 's/.*took=\([0-9.]*\).*/\1/p')
echo "$r" | grep -q '^ok nil attempts=3 ' && awk "BEGIN { exit !(${took:-9} >= 0.9 && ${took:-9} < 1.4) }"
check $? "content_by_lua: a retry with backoff around fb.timeout answers on the third attempt, the timed-out children killed (${r:-no answer}; expect ~1.0 s: 2 x 0.3 timeout + 2 x 0.2 backoff)"

curl -s -m 10 -o "$T/s1" "$H/sleep" & p1=$!
curl -s -m 10 -o "$T/s2" "$H/sleep" & p2=$!
sleep 0.2
fast=$(curl -s -m 10 -o /dev/null -w '%{time_total}' "$H/fast")
wait $p1 $p2
s1=$(sed -n 's/^slept //p' "$T/s1") s2=$(sed -n 's/^slept //p' "$T/s2")
awk "BEGIN { exit !(${fast:-9} < 0.3 && ${s1:-0} >= 0.99 && ${s1:-9} < 1.3 && ${s2:-0} >= 0.99 && ${s2:-9} < 1.3) }"
check $? "two concurrent 1 s fb.sleep in content_by_lua do not delay an unrelated request (it took ${fast} s; the sleeps ${s1:-?} and ${s2:-?} s)"

curl -s -m 5 "$H/refusals" >"$T/refusals"
grep -q "run: fusebox.ngx runs fusebox on nginx's scheduler, and fb.run would block the nginx worker: call the policy in the handler itself" "$T/refusals" &&
  grep -q "http.request is not available inside nginx: nginx does the I/O" "$T/refusals" &&
  grep -q "^wake a killed waiter: false" "$T/refusals" &&
  grep -q "bad argument #1 to 'sleep' (seconds must be a number in 0..1000000000, got -1)" "$T/refusals" &&
  grep -q "bad argument #2 to 'wait' (timeout must be a number in 0..1000000000, got nan)" "$T/refusals"
check $? "fb.run and fb.http in content_by_lua refuse with an error naming the alternative, and a killed waiter is not woken ($(head -c 400 "$T/refusals" | tr '\n' ' '))"

curl -s -m 5 -o /dev/null "$H/logged"
sleep 0.1
grep -q "fusebox-test phase: .*sleep: nginx cannot suspend Lua in its log phase; wait in a request handler" "$T/host.log"
check $? "fb.sleep in log_by_lua refuses, naming the phase ($(grep -o 'fusebox-test phase: [^,]*' "$T/host.log" | head -c 300))"

r=$(curl -s -m 10 "$H/client")
during=$(echo "$r" | sed -n 's/^during=\([0-9]*\).*/\1/p') after=$(echo "$r" | sed -n 's/.*after=\([0-9]*\)$/\1/p')
[ "$during" = 0 ] && [ "${after:-0}" -ge 1 ]
check $? "fb.client in nginx: an ejected instance gets no call for its breaker's open time, then gets calls again ($r)"

# (luajit under the sanitizers: their runtimes preloaded; luajit itself
# keeps allocations alive at exit, as tests/lua.t says)
clock() { LD_PRELOAD="$FB_PRELOAD" ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" luajit -e "package.cpath = '$ROOT/$B/?.so;' .. package.cpath; io.write(string.format('%.6f', require('fusebox').now()))"; }
t_a=$(clock)
for _ in $(seq 40); do curl -s -m 5 "$H/clock"; done >"$T/clock"
t_b=$(clock)
ids=$(cut -d' ' -f1 "$T/clock" | sort -u | tr '\n' ' ')
outside=$(awk -v a="$t_a" -v b="$t_b" '$2 < a || $2 > b' "$T/clock" | wc -l)
[ "$ids" = "0 1 " ] && [ "$outside" = 0 ]
check $? "both workers' fb.now() is the machine's one monotonic clock: every reading between two taken outside nginx (workers $ids; $outside of 40 outside [$t_a, $t_b])"

sleep 0.6 # a few health check rounds (every 0.2 s)
down0=$(grep -c "fusebox-test health $DEAD false worker 0" "$T/host.log")
down1=$(grep -c "fusebox-test health $DEAD false worker 1" "$T/host.log")
[ "$down0" = 1 ] && [ "$down1" = 0 ]
check $? "fb.health_check in init_worker probes from worker 0 only (marked down by worker 0: $down0, by worker 1: $down1)"
sick=$(grep -c "fusebox-test http health /sick false" "$T/host.log")
fine=$(grep -c "fusebox-test http health /fast" "$T/host.log")
[ "$sick" = 1 ] && [ "$fine" = 0 ]
check $? "an HTTP health check over a cosocket marks a 503 down and leaves a 200 up (/sick down: $sick, /fast changed: $fine)"

# One worker, and requests that end when their client goes away: the
# slot of a bulkhead in which a request waited goes on to the next one.
sed -e "s/worker_processes 2;/worker_processes 1;/; s|$T/host.pid|$T/host1.pid|; s|$T/host.log|$T/host1.log|" \
  -e "s/listen 127.0.0.1:$HOSTF;/listen 127.0.0.1:$HOST1; lua_check_client_abort on;/" \
  -e "s|location = /fast |location = /bulk { content_by_lua_block { require(\"host_checks\").bulkhead() } }\n    location = /fast |" \
  "$T/host.conf" >"$T/host1.conf"
LD_PRELOAD="$FB_PRELOAD" ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
  nginx -p "$T" -e "$T/host1.log" -c "$T/host1.conf" 2>"$T/host1_start.log"
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$HOST1/fast" && break; sleep 0.1; done
curl -s -m 5 -o "$T/bulk_a" "http://127.0.0.1:$HOST1/bulk?hold=1" & pa=$!
sleep 0.1
curl -s -m 0.3 -o /dev/null "http://127.0.0.1:$HOST1/bulk?hold=1" # gives up while queued; would hold 1 s
curl -s -m 5 -o "$T/bulk_c" "http://127.0.0.1:$HOST1/bulk?hold=0.1" & pc=$!
wait $pa $pc
c=$(cat "$T/bulk_c")
echo "$c" | grep -q "^ok nil " && [ "$(cat "$T/bulk_a" | cut -c1-6)" = "ok nil" ]
check $? "a bulkhead's slot passes over a queued request whose client went away to the next (the next got: ${c:-nothing}; the holder: $(cat "$T/bulk_a"))"
kill "$(cat "$T/host1.pid")"

kill -QUIT "$(cat "$T/host.pid")" # graceful: nginx waits for its timers
i=0
while [ -f "$T/host.pid" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
[ ! -f "$T/host.pid" ] && [ $i -le 20 ]
check $? "a graceful stop ends the health checks' timers at once, not at their next round 60 s away (stopped after $i x 0.1 s)"
! grep -E '\[(alert|emerg|error)\]|lua entry thread aborted|runtime error|Sanitizer' "$T/host.log" >"$T/bad"
check $? "the scheduler's nginx stops cleanly, no error in its log ($(head -c 400 "$T/host_start.log" "$T/bad" | tr '\n' ' '))"
