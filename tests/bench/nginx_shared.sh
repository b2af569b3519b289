#!/bin/sh
# A breaker shared by nginx workers, per request, measured inside nginx:
# what fusebox.ngx does with a zone (cb:permit() + cb:record(token, ok) on
# a breaker in a fusebox zone) against what APISIX's api-breaker does with
# a lua_shared_dict (ngx.shared.DICT:get + :incr). A content_by_lua loop of
# N iterations timed with ngx.update_time() + ngx.now() (a millisecond
# clock: N is large enough for runs of 100 ms and more); alternating runs,
# medians of RUNS. Also, for scale, the same permit + record on a breaker
# of the worker's own (no zone). One nginx worker; the figure is ns per
# acquire + record (resp. get + incr).
cd "$(dirname "$0")/../.." || exit 1
B="${FB_BUILD:-build}"
ROOT=$(pwd)
RUNS="${RUNS:-7}" N="${N:-2000000}"
MODS=/usr/lib/nginx/modules
if ! command -v nginx >/dev/null 2>&1 || [ ! -f "$MODS/ngx_http_lua_module.so" ] || ! command -v curl >/dev/null 2>&1; then
  echo "nginx_shared: skipped (needs nginx-light, libnginx-mod-http-lua and curl)"
  exit 0
fi
T=$(mktemp -d)
chmod 755 "$T"
MASTER=""
cleanup() {
  [ -f "$T/front.pid" ] && kill "$(cat "$T/front.pid")" 2>/dev/null
  sleep 0.3
  [ -n "$MASTER" ] && rm -f /dev/shm/fusebox-zone.*."$MASTER"
  rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE
set -- $(FB_BUILD="$B" sh tests/etcd/ctl.sh ports 1)
F=$1
USER_LINE=""
[ "$(id -u)" = 0 ] && USER_LINE="user root root;"
TEMP="client_body_temp_path $T; proxy_temp_path $T; fastcgi_temp_path $T; uwsgi_temp_path $T; scgi_temp_path $T;"
cat >"$T/front.conf" <<CONF
$USER_LINE
load_module $MODS/ndk_http_module.so;
load_module $MODS/ngx_http_lua_module.so;
worker_processes 1;
pid $T/front.pid;
events { worker_connections 64; }
http { access_log off; $TEMP
  lua_package_cpath "$ROOT/$B/?.so;;";
  lua_shared_dict bench 1m;
  init_worker_by_lua_block {
    local fb = require "fusebox"
    zone = fb.zone { name = "fbbench", size = 65536, owner = require("ngx.process").get_master_pid() }
    shared_cb = fb.breaker { name = "bench", zone = zone, failure_threshold = 5, timeout = 10 }
    local_cb = fb.breaker { name = "bench", failure_threshold = 5, timeout = 10 }
    -- each loop: the clock read, n iterations, the clock read; ns per one
    function timed(n, body)
      ngx.update_time()
      local t0 = ngx.now()
      body(n)
      ngx.update_time()
      ngx.say(string.format("%.1f", (ngx.now() - t0) / n * 1e9))
    end
    function breaker_loop(cb)
      return function(n)
        for _ = 1, n do
          local token = cb:permit()
          cb:record(token, true)
        end
      end
    end
    function dict_loop(n)
      local d = ngx.shared.bench
      d:set("failures", 0)
      for _ = 1, n do
        local v = d:get("failures")
        d:incr("failures", 1)
      end
    end
  }
  server { listen 127.0.0.1:$F;
    location = /shared { content_by_lua_block { timed(tonumber(ngx.var.arg_n), breaker_loop(shared_cb)) } }
    location = /local { content_by_lua_block { timed(tonumber(ngx.var.arg_n), breaker_loop(local_cb)) } }
    location = /dict { content_by_lua_block { timed(tonumber(ngx.var.arg_n), dict_loop) } }
  }
}
CONF
nginx -p "$T" -e "$T/front.err" -c "$T/front.conf" || exit 1
for _ in $(seq 50); do [ -f "$T/front.pid" ] && break; sleep 0.1; done
MASTER=$(cat "$T/front.pid")
sleep 0.3
ns() { curl -s -m 120 "http://127.0.0.1:$F/$1?n=$N"; }
ns shared >/dev/null; ns dict >/dev/null; ns local >/dev/null # warm-up (and the JIT)
: >"$T/shared"; : >"$T/dict"; : >"$T/local"
i=0
while [ $i -lt "$RUNS" ]; do
  ns shared >>"$T/shared"
  ns dict >>"$T/dict"
  ns local >>"$T/local"
  i=$((i + 1))
done
med() { sort -n "$1" | awk -v n="$RUNS" 'NR == int((n + 1) / 2)'; }
sh=$(med "$T/shared") di=$(med "$T/dict") lo=$(med "$T/local")
[ -n "$sh" ] && [ -n "$di" ] && [ -n "$lo" ] || { echo "nginx_shared: no figures ($(head -c 300 "$T/front.err"))"; exit 1; }
echo "zone breaker permit+record:  $sh ns (median of $RUNS x $N, 1 worker; runs: $(sort -n "$T/shared" | tr '\n' ' '))"
echo "shared dict get+incr:        $di ns (runs: $(sort -n "$T/dict" | tr '\n' ' '))"
echo "worker's own breaker:        $lo ns (no zone, for scale)"
awk -v s="$sh" -v d="$di" 'BEGIN { printf "zone breaker vs shared dict: %.1fx cheaper (target: 5x)\n", d / s }'
if grep -E '\[(error|alert|emerg)\]' "$T/front.err" >/dev/null; then
  echo "nginx logged errors:"; grep -E '\[(error|alert|emerg)\]' "$T/front.err"; exit 1
fi
