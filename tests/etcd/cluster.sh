#!/bin/sh
# Controls the 3-member etcd cluster of tests/etcd/cluster.lua, on loopback:
#   cluster.sh start       starts members 1..3, waits until every one is healthy
#   cluster.sh kill I      kills member I (SIGKILL: a crash), waits until it is gone
#   cluster.sh stop        kills every member still running
#   cluster.sh endpoints   prints the client URLs, comma-separated, member order
#   cluster.sh leader      prints the client URL of the leader (none: nothing)
#   cluster.sh etcdctl ..  runs etcdctl against the members still running
# Settings from the environment: CLUSTER_DIR (data, logs, pids) and
# CLUSTER_PORTS, six free ports: client and peer port of each member.
export ETCDCTL_API=3
d=$CLUSTER_DIR
# port I KIND: member I's client (KIND 1) or peer (KIND 2) port.
port() { echo "$CLUSTER_PORTS" | cut -d' ' -f$((2 * $1 - 2 + $2)); }
url() { echo "http://127.0.0.1:$(port "$1" "$2")"; }
alive() {
  for i in 1 2 3; do [ -f "$d/m$i.pid" ] && printf '%s,' "$(url $i 1)"; done | sed 's/,$//'
}
ctl() { etcdctl --endpoints "$(alive)" --command-timeout=3s "$@"; }
start() {
  cluster="m1=$(url 1 2),m2=$(url 2 2),m3=$(url 3 2)"
  for i in 1 2 3; do
    etcd --name "m$i" --data-dir "$d/m$i" --listen-client-urls "$(url $i 1)" \
      --advertise-client-urls "$(url $i 1)" --listen-peer-urls "$(url $i 2)" \
      --initial-advertise-peer-urls "$(url $i 2)" --initial-cluster "$cluster" \
      --initial-cluster-token fb-test --initial-cluster-state new >> "$d/m$i.log" 2>&1 &
    echo $! > "$d/m$i.pid"
  done
  for _ in $(seq 1 150); do
    ctl endpoint health >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "# the etcd cluster did not start; its logs end:" >&2
  tail -n 3 "$d"/m?.log | sed 's/^/# /' >&2
  return 1
}
kill_member() {
  [ -f "$d/m$1.pid" ] || return 0
  pid=$(cat "$d/m$1.pid")
  rm -f "$d/m$1.pid"
  kill -KILL "$pid" 2>/dev/null
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
}
case "$1" in
start) start ;;
kill) kill_member "$2" ;;
stop) for i in 1 2 3; do kill_member $i; done ;;
endpoints) echo "$(url 1 1),$(url 2 1),$(url 3 1)" ;;
leader) ctl endpoint status 2>/dev/null | awk -F', ' '$5 == "true" {print $1}' ;;
etcdctl) shift; ctl "$@" ;;
*) echo "usage: cluster.sh start|kill I|stop|endpoints|leader|etcdctl ARGS" >&2; exit 2 ;;
esac
