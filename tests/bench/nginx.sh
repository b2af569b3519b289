#!/bin/sh
# fusebox.ngx's cost per request: wrk through one nginx worker on
# loopback, 16 fixed connections, to three backends (one more nginx),
# balanced by nginx's built-in round robin (/rr) or by fusebox.ngx with a
# breaker per peer (/fb: pick, permit, set_current_peer, and log()'s
# done + record), or by a trivial Lua round robin (/lua: the cost of
# entering balancer_by_lua and log_by_lua at all). Alternating runs; medians of RUNS runs of SECONDS each.
# The added cost is 1/rps(fb) - 1/rps(rr): the front worker is the
# bottleneck (wrk and the backends share the other core).
cd "$(dirname "$0")/../.." || exit 1
B="${FB_BUILD:-build}"
ROOT=$(pwd)
RUNS="${RUNS:-5}" SECONDS_EACH="${SECONDS_EACH:-3}"
MODS=/usr/lib/nginx/modules
if ! command -v nginx >/dev/null 2>&1 || [ ! -f "$MODS/ngx_http_lua_module.so" ] || ! command -v wrk >/dev/null 2>&1; then
  echo "nginx: skipped (needs nginx-light, libnginx-mod-http-lua and wrk)"
  exit 0
fi
T=$(mktemp -d)
chmod 755 "$T"
cleanup() { for p in "$T"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done; sleep 0.3; rm -rf "$T"; }
trap cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE
set -- $(FB_BUILD="$B" sh tests/etcd/ctl.sh ports 4)
F=$1 B1=$2 B2=$3 B3=$4
USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root root;"
TEMP="client_body_temp_path $T; proxy_temp_path $T; fastcgi_temp_path $T; uwsgi_temp_path $T; scgi_temp_path $T;"
cat >"$T/back.conf" <<CONF
$USER_LINE
worker_processes 1;
pid $T/back.pid;
events { worker_connections 1024; }
http { access_log off; $TEMP
  server { listen 127.0.0.1:$B1; location / { return 200 "ok\n"; } }
  server { listen 127.0.0.1:$B2; location / { return 200 "ok\n"; } }
  server { listen 127.0.0.1:$B3; location / { return 200 "ok\n"; } }
}
CONF
cat >"$T/front.conf" <<CONF
$USER_LINE
load_module $MODS/ndk_http_module.so;
load_module $MODS/ngx_http_lua_module.so;
worker_processes 1;
pid $T/front.pid;
events { worker_connections 1024; }
http { access_log off; $TEMP
  lua_package_cpath "$ROOT/$B/?.so;;";
  init_worker_by_lua_block {
    fbu = require("fusebox.ngx").upstream{ name = "fb",
      peers = { "127.0.0.1:$B1", "127.0.0.1:$B2", "127.0.0.1:$B3" },
      breaker = { failure_threshold = 5, timeout = 10 }, tries = 1 }
  }
  upstream rr { server 127.0.0.1:$B1; server 127.0.0.1:$B2; server 127.0.0.1:$B3; keepalive 32; }
  upstream fb { server 0.0.0.1; balancer_by_lua_block { fbu:balance() } keepalive 32; }
  upstream lua { server 0.0.0.1; balancer_by_lua_block {
    n = (n or 0) % 3 + 1
    require("ngx.balancer").set_current_peer("127.0.0.1", n == 1 and $B1 or n == 2 and $B2 or $B3)
  } keepalive 32; }
  server { listen 127.0.0.1:$F;
    proxy_http_version 1.1; proxy_set_header Connection "";
    location /rr { proxy_pass http://rr; }
    location /fb { proxy_pass http://fb; log_by_lua_block { fbu:log() } }
    location /lua { proxy_pass http://lua;
      log_by_lua_block { local s, t = ngx.var.upstream_status, ngx.var.upstream_response_time } }
  }
}
CONF
nginx -p "$T" -e "$T/back.err" -c "$T/back.conf" || exit 1
nginx -p "$T" -e "$T/front.err" -c "$T/front.conf" || exit 1
sleep 0.5
rps() { wrk -t1 -c16 -d"${SECONDS_EACH}s" "http://127.0.0.1:$F/$1" | awk '/Requests\/sec/ { print $2 }'; }
rps rr >/dev/null; rps lua >/dev/null; rps fb >/dev/null # warm-up (and the JIT)
i=0
: >"$T/rr" ; : >"$T/lua"; : >"$T/fb"
while [ $i -lt "$RUNS" ]; do
  rps rr >>"$T/rr"
  rps lua >>"$T/lua"
  rps fb >>"$T/fb"
  i=$((i + 1))
done
med() { sort -n "$1" | awk -v n="$RUNS" 'NR == int((n + 1) / 2)'; }
rr=$(med "$T/rr") lua=$(med "$T/lua") fb=$(med "$T/fb")
errs=$(grep -c '\[error\]' "$T/front.err")
echo "nginx round robin:  $rr requests/s (median of $RUNS x ${SECONDS_EACH}s, 1 worker, 16 connections)"
echo "Lua round robin:    $lua requests/s (balancer_by_lua + log_by_lua reading the two variables: any Lua balancer's floor)"
echo "fusebox.ngx:        $fb requests/s (pick + breaker permit + log's done and record)"
awk -v a="$rr" -v l="$lua" -v b="$fb" 'BEGIN {
  printf "added per request:  %.2f us over nginx round robin, of which %.2f us over the Lua floor\n",
    (1 / b - 1 / a) * 1e6, (1 / b - 1 / l) * 1e6 }'
grep -q '\[warn\]' "$T/front.err" && { echo "front nginx warned:"; grep '\[warn\]' "$T/front.err"; exit 1; }
[ "$errs" = 0 ] || { echo "front nginx logged $errs errors"; exit 1; }
