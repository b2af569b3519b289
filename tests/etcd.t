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
ctl=tests/etcd/ctl.sh cluster=tests/etcd/cluster.sh
ETCD_DIR=$(mktemp -d)
set -- $($ctl ports)
export ETCD_DIR ETCD_CLIENT=$1 ETCD_SIDE=$2 ETCD_PEER=$3
export CLUSTER_DIR="$ETCD_DIR/cluster" CLUSTER_PORTS="$($ctl ports 6)"
trap '$ctl stop; $cluster stop; [ -n "$pids" ] && kill $pids 2>/dev/null; rm -rf "$ETCD_DIR"' EXIT
pids=
$ctl start

# run_at ENDPOINTS CONTROL SCENARIO [args...]: a scenario that dies fails
# the test. run SCENARIO [args...]: against the one-member etcd.
run_at() {
  endpoints=$1 control=$2 script=$3
  shift 3
  timeout 60 "$FB_BUILD/fusebox" run "$script" "$endpoints" "$control" "$@" 2>&1 ||
    echo "not ok - $script exited with status $?"
}
run() { run_at "http://127.0.0.1:$ETCD_CLIENT" "$ctl" "$@"; }
{
  run tests/etcd/basic.lua
  run tests/etcd/lease.lua
  run tests/etcd/peer.lua A 8201 8202 > "$ETCD_DIR/a" & pids="$!"
  run tests/etcd/peer.lua B 8202 8201 > "$ETCD_DIR/b" & pids="$pids $!"
  wait $pids
  pids=
  cat "$ETCD_DIR/a" "$ETCD_DIR/b"
  run tests/etcd/outage.lua
  $ctl stop
  mkdir "$CLUSTER_DIR"
  if $cluster start; then
    run_at "$($cluster endpoints)" "$cluster" tests/etcd/cluster.lua
  else
    echo "not ok - a 3-member etcd cluster starts"
  fi
} | awk '/^(not )?ok /{n++; sub(/^ok/, "ok " n); sub(/^not ok/, "not ok " n); print; next}
         {print "# " $0} END {print "1.." n}' | sed 's/^# # /# /'
