#!/bin/sh
# TLS as other processes see it, on loopback, with a test PKI made here
# (tests/tls/mkcerts.sh): `fusebox serve` over HTTPS with client
# certificates against curl and fb.http, then the etcd backend against an
# etcd that requires client certificates. Everything started here is
# stopped here; every wait is bounded.
cd "$(dirname "$0")/.." || exit 1
B="${FB_BUILD:-build}"
export FB_BUILD="$B"
tmp=$(mktemp -d)
pid= etcd_pid=
trap 'kill $pid $etcd_pid 2>/dev/null; wait $pid $etcd_pid 2>/dev/null; rm -rf "$tmp"' EXIT
sh tests/tls/mkcerts.sh "$tmp/pki" || { echo "1..0 # SKIP cannot make the test PKI"; exit 0; }
P=$tmp/pki
n=0
check() { # description, expected substring, actual
  n=$((n + 1))
  case "$3" in
    *"$2"*) echo "ok $n - $1" ;;
    *) echo "not ok $n - $1"; echo "# expected '$2' in: $3" ;;
  esac
}

# ---------------------------------------------------- fusebox serve over TLS
"$B/fusebox" serve --listen 127.0.0.1:0 --tls-cert "$P/server.pem" --tls-key "$P/server.key" \
  --tls-client-ca "$P/ca.pem" > "$tmp/out" 2> "$tmp/err" &
pid=$!
for _ in $(seq 1 100); do
  grep -q "registry API on" "$tmp/out" 2>/dev/null && break
  sleep 0.05
done
url=$(sed -n 's/.*registry API on \(https[^ ]*\)/\1/p' "$tmp/out")
port=$(echo "$url" | sed -n 's/.*:\([0-9]*\)\/v1.*/\1/p')
check "serve --tls-cert prints an https:// address" "https://127.0.0.1:" "$url"
mtls="--cacert $P/ca.pem --cert $P/client.pem --key $P/client.key"
check "curl with a client certificate registers" '"added":true' \
  "$(curl -s $mtls -X PUT -d '{"host":"127.0.0.1","port":7001}' "$url/users/instances")"
check "and discovers, by name too (localhost)" '"port":7001' \
  "$(curl -s $mtls "https://localhost:$port/v1/services/users")"
check "curl without a client certificate is refused, with no answer" "refused, 0 lines" \
  "$(curl -s --cacert "$P/ca.pem" "$url/users" > "$tmp/body" 2>&1 || echo "refused, $(wc -l < "$tmp/body") lines")"
check "curl trusting another CA refuses the server" "rc=60" \
  "$(curl -s --cacert "$P/other-ca.pem" --cert "$P/client.pem" --key "$P/client.key" "$url/users" >/dev/null 2>&1; echo rc=$?)"
check "plain http to the TLS port gets nothing" "000" \
  "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$port/v1/services" 2>/dev/null)"
cat > "$tmp/client.lua" <<LUA
local fb = require "fusebox"
local tls = { ca_file = "$P/ca.pem", cert_file = "$P/client.pem", key_file = "$P/client.key" }
local status, _, body = fb.http.request { url = "https://localhost:$port/v1/services/users", tls = tls }
print(status, body)
print(fb.http.request { url = "https://localhost:$port/v1/services/users", tls = { ca_file = tls.ca_file } })
LUA
out=$(timeout 20 "$B/fusebox" run "$tmp/client.lua" 2>&1)
check "fb.http.request with a client certificate reads it back" '200	{"index":1,"instances":[{"host":"127.0.0.1"' "$out"
check "without one it fails saying why" "nil	tls: tlsv13 alert certificate required" "$out"
check "the server is still serving after refused handshakes" '"port":7001' \
  "$(curl -s $mtls "$url/users")"
timeout 10 "$B/fusebox" serve --listen 127.0.0.1:0 --tls-cert "$P/server.pem" --tls-key /nonexistent \
  > /dev/null 2> "$tmp/err2"
check "a TLS file it cannot use: one line, exit 2" \
  "rc=2 lines=1: fusebox: tls: cannot read key_file '/nonexistent': No such file or directory" \
  "rc=$? lines=$(wc -l < "$tmp/err2"): $(cat "$tmp/err2")"
check "openssl s_client speaks TLS 1.2 to it too" "Protocol  : TLSv1.2" \
  "$(echo Q | timeout 10 openssl s_client -tls1_2 -connect "127.0.0.1:$port" -CAfile "$P/ca.pem" \
       -cert "$P/client.pem" -key "$P/client.key" 2>/dev/null | grep 'Protocol  :')"
kill $pid 2>/dev/null
wait $pid 2>/dev/null
pid=

# ------------------------------------- fusebox against another TLS server
set -- $(sh tests/etcd/ctl.sh ports 1)
openssl s_server -quiet -tls1_2 -accept "127.0.0.1:$1" -cert "$P/server.pem" -key "$P/server.key" -www \
  > /dev/null 2>&1 &
pid=$!
cat > "$tmp/s_server.lua" <<LUA
local fb = require "fusebox"
local status
for _ = 1, 50 do -- until s_server listens
  local err
  status, err = fb.http.request { url = "https://localhost:$1/", tls = { ca_file = "$P/ca.pem" } }
  if status or err ~= "connection refused" then print(status, err) break end
  fb.sleep(0.1)
end
LUA
check "fb.http.request to openssl s_server -tls1_2 -www" "200" \
  "$(timeout 20 "$B/fusebox" run "$tmp/s_server.lua" 2>&1)"
kill $pid 2>/dev/null
wait $pid 2>/dev/null
pid=

# ------------------------------------------------ etcd with client certificates
if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
  echo "# SKIP etcd over TLS: etcd-server and etcd-client are not installed"
else
  set -- $(sh tests/etcd/ctl.sh ports 2)
  client=$1 peer=$2
  etcd --name fbtls --data-dir "$tmp/etcd" \
    --listen-client-urls "https://127.0.0.1:$client" --advertise-client-urls "https://127.0.0.1:$client" \
    --cert-file "$P/server.pem" --key-file "$P/server.key" --client-cert-auth \
    --trusted-ca-file "$P/ca.pem" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "fbtls=http://127.0.0.1:$peer" > "$tmp/etcd.log" 2>&1 &
  etcd_pid=$!
  ctl="etcdctl --endpoints https://127.0.0.1:$client --cacert $P/ca.pem --cert $P/client.pem --key $P/client.key --command-timeout=3s"
  for _ in $(seq 1 100); do
    ETCDCTL_API=3 $ctl endpoint health >/dev/null 2>&1 && break
    sleep 0.1
  done
  timeout 60 "$B/fusebox" run tests/tls/etcd.lua "https://127.0.0.1:$client" "$P" > "$tmp/etcd.out" 2>&1
  echo "rc=$?" >> "$tmp/etcd.out"
  while IFS= read -r line; do
    case "$line" in
      "ok "*) check "${line#*- }" "" "" ;;
      "not ok "*) check "${line#*- }" "(it printed not ok)" "$line" ;;
      rc=0) ;;
      rc=*) check "tests/tls/etcd.lua exits 0" "rc=0" "$line" ;;
      *) echo "# $line" ;;
    esac
  done < "$tmp/etcd.out"
  check "etcdctl over TLS sees what fusebox put" "/tls/api/127.0.0.1:9001" \
    "$(ETCDCTL_API=3 $ctl get --prefix /tls/ --keys-only 2>&1)"
fi
echo "1..$n"
