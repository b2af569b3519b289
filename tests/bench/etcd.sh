#!/bin/sh
# The etcd registry backend against a local one-member etcd (data on
# this machine's disk, fsync on): registrations/s, heartbeats/s (with
# every key still in etcd on its live lease at the end) and the keepalive
# requests/s sent meanwhile, the time from a heartbeat timeout to the
# instance leaving a remote view's discover(), 10,000 instances
# heartbeating every 10 s, and the gateway's own rates for scale
# (tests/bench/real/etcd.lua), each with its target. Skipped without etcd.
cd "$(dirname "$0")/../.." || exit 1
export FB_BUILD="${FB_BUILD:-build}"
if ! command -v etcd >/dev/null 2>&1; then
  echo "etcd: skipped (etcd-server is not installed: apt-get install etcd-server etcd-client)"
  exit 0
fi
ctl=tests/etcd/ctl.sh
ETCD_DIR=$(mktemp -d)
set -- $($ctl ports)
export ETCD_DIR ETCD_CLIENT=$1 ETCD_SIDE=$2 ETCD_PEER=$3
trap '$ctl stop; rm -rf "$ETCD_DIR"' EXIT
echo "# $(etcd --version | head -1), data in $ETCD_DIR, a new etcd per part"
status=0
for part in expiry gateway throughput big; do
  $ctl stop; $ctl wipe
  $ctl start || exit 1
  timeout 120 "$FB_BUILD/fusebox" run tests/bench/real/etcd.lua "http://127.0.0.1:$ETCD_CLIENT" $part || status=1
done
exit $status
