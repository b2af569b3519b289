#!/bin/sh
# fb.registry{backend = "etcd"} against a real etcd on loopback: free
# ports, a temporary data dir, every process started here stopped here,
# every wait bounded. The scenarios (tests/etcd/*.lua) print TAP lines
# without numbers; this script numbers them and prints the plan last.
cd "$(dirname "$0")/.." || exit 1
B="${FB_BUILD:-build}"
if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
  echo "1..0 # SKIP etcd-server and etcd-client are not installed"
  exit 0
fi
tmp=$(mktemp -d)
trap '"$tmp/ctl" stop; for p in $pids; do kill $p 2>/dev/null; done; rm -rf "$tmp"' EXIT
pids=

# Three free loopback ports: etcd's client port (fusebox), a second client
# port (etcdctl; the only one open in "side" mode), its peer port.
set -- $("$B/fusebox" run /dev/stdin <<'LUA'
local fb = require "fusebox"
local ports, socks = {}, {}
for i = 1, 3 do
  socks[i] = fb.tcp.listen { port = 0, handler = function() end }
  ports[i] = socks[i]:port()
end
for _, s in ipairs(socks) do s:close() end
print(table.concat(ports, " "))
LUA
)
client=$1 side=$2 peer=$3
endpoint="http://127.0.0.1:$client"

cat > "$tmp/ctl" <<SH
#!/bin/sh
# start | side (only the etcdctl port) | stop (SIGKILL) | wipe | etcdctl ARGS
export ETCDCTL_API=3
ctl() { etcdctl --endpoints http://127.0.0.1:$side --command-timeout=3s "\$@"; }
run() {
  etcd --name fb --data-dir "$tmp/data" --listen-client-urls "\$1" \
    --advertise-client-urls http://127.0.0.1:$side \
    --listen-peer-urls http://127.0.0.1:$peer \
    --initial-advertise-peer-urls http://127.0.0.1:$peer \
    --initial-cluster fb=http://127.0.0.1:$peer >> "$tmp/etcd.log" 2>&1 &
  echo \$! > "$tmp/etcd.pid"
  for _ in \$(seq 1 100); do
    ctl endpoint health >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "# etcd did not start: see the log below" >&2; tail -5 "$tmp/etcd.log" >&2
}
case "\$1" in
start) run http://127.0.0.1:$client,http://127.0.0.1:$side ;;
side) run http://127.0.0.1:$side ;;
stop)
  [ -f "$tmp/etcd.pid" ] || exit 0
  pid=\$(cat "$tmp/etcd.pid"); rm -f "$tmp/etcd.pid"
  kill -KILL \$pid 2>/dev/null
  for _ in \$(seq 1 50); do kill -0 \$pid 2>/dev/null || exit 0; sleep 0.1; done ;;
wipe) rm -rf "$tmp/data" ;;
etcdctl) shift; ctl "\$@" ;;
esac
SH
chmod +x "$tmp/ctl"
"$tmp/ctl" start

# run SCENARIO [args...]: a scenario that dies fails the test.
run() {
  script=$1; shift
  timeout 60 "$B/fusebox" run "$script" "$endpoint" "$tmp/ctl" "$@" 2>&1 ||
    echo "not ok - $script exited with status $?"
}
{
  run tests/etcd/basic.lua
  run tests/etcd/peer.lua A 8201 8202 > "$tmp/a" & pids="$!"
  run tests/etcd/peer.lua B 8202 8201 > "$tmp/b" & pids="$pids $!"
  wait $pids
  pids=
  cat "$tmp/a" "$tmp/b"
  run tests/etcd/outage.lua
} | awk '/^(not )?ok /{n++; sub(/^ok/, "ok " n); sub(/^not ok/, "not ok " n); print; next}
         {print "# " $0} END {print "1.." n}' | sed 's/^# # /# /'
