#!/bin/sh
# fb.registry{backend = "etcd"} against a real etcd on loopback: free
# ports, a temporary data dir, every process started here stopped here,
# every wait bounded. The scenarios (tests/etcd/*.lua) print TAP lines
# without numbers; this script numbers them and prints the plan last.
cd "$(dirname "$0")/.." || exit 1
export FB_BUILD="${FB_BUILD:-build}"
if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
  echo "1..0 # SKIP etcd-server and etcd-client are not installed"
  exit 0
fi
ctl=tests/etcd/ctl.sh
ETCD_DIR=$(mktemp -d)
set -- $($ctl ports)
export ETCD_DIR ETCD_CLIENT=$1 ETCD_SIDE=$2 ETCD_PEER=$3
trap '$ctl stop; [ -n "$pids" ] && kill $pids 2>/dev/null; rm -rf "$ETCD_DIR"' EXIT
pids=
$ctl start

# run SCENARIO [args...]: a scenario that dies fails the test.
run() {
  script=$1
  shift
  timeout 60 "$FB_BUILD/fusebox" run "$script" "http://127.0.0.1:$ETCD_CLIENT" "$ctl" "$@" 2>&1 ||
    echo "not ok - $script exited with status $?"
}
{
  run tests/etcd/basic.lua
  run tests/etcd/peer.lua A 8201 8202 > "$ETCD_DIR/a" & pids="$!"
  run tests/etcd/peer.lua B 8202 8201 > "$ETCD_DIR/b" & pids="$pids $!"
  wait $pids
  pids=
  cat "$ETCD_DIR/a" "$ETCD_DIR/b"
  run tests/etcd/outage.lua
} | awk '/^(not )?ok /{n++; sub(/^ok/, "ok " n); sub(/^not ok/, "not ok " n); print; next}
         {print "# " $0} END {print "1.." n}' | sed 's/^# # /# /'
