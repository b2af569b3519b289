#!/bin/sh
# Controls the one-member etcd of the tests and benchmarks, on loopback:
#   ctl.sh ports [N]  prints N free ports (default 3: client, side, peer)
#   ctl.sh start      starts it (client and side ports), waits until healthy
#   ctl.sh side       starts it on the side port only (fusebox cannot reach it)
#   ctl.sh stop       kills it (SIGKILL: a crash) and waits until it is gone
#   ctl.sh wipe       deletes its data (it comes back as a new cluster)
#   ctl.sh etcdctl .. runs etcdctl against the side port
# Settings from the environment: ETCD_DIR (data, log, pid), ETCD_CLIENT,
# ETCD_SIDE, ETCD_PEER (ports); FB_BUILD for `ports`.
export ETCDCTL_API=3
d=$ETCD_DIR
ctl() { etcdctl --endpoints "http://127.0.0.1:$ETCD_SIDE" --command-timeout=3s "$@"; }
run() {
  etcd --name fb --data-dir "$d/data" --listen-client-urls "$1" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_SIDE" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-cluster "fb=http://127.0.0.1:$ETCD_PEER" >> "$d/etcd.log" 2>&1 &
  echo $! > "$d/etcd.pid"
  for _ in $(seq 1 100); do
    ctl endpoint health >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "# etcd did not start; its log ends:" >&2
  tail -5 "$d/etcd.log" | sed 's/^/# /' >&2
  return 1
}
case "$1" in
ports)
  "${FB_BUILD:-build}/fusebox" run /dev/stdin "${2:-3}" <<'LUA'
local fb = require "fusebox"
local ports, socks = {}, {}
for i = 1, tonumber(arg[1]) do
  socks[i] = fb.tcp.listen { port = 0, handler = function() end }
  ports[i] = socks[i]:port()
end
for _, s in ipairs(socks) do s:close() end
print(table.concat(ports, " "))
LUA
  ;;
start) run "http://127.0.0.1:$ETCD_CLIENT,http://127.0.0.1:$ETCD_SIDE" ;;
side) run "http://127.0.0.1:$ETCD_SIDE" ;;
stop)
  [ -f "$d/etcd.pid" ] || exit 0
  pid=$(cat "$d/etcd.pid")
  rm -f "$d/etcd.pid"
  kill -KILL "$pid" 2>/dev/null
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || exit 0
    sleep 0.1
  done ;;
wipe) rm -rf "$d/data" ;;
etcdctl) shift; ctl "$@" ;;
*) echo "usage: ctl.sh ports [N]|start|side|stop|wipe|etcdctl ARGS" >&2; exit 2 ;;
esac
