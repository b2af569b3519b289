#!/bin/sh
# `fusebox serve` as another process sees it: curl against the CLI on an
# ephemeral loopback port, with a script that pre-registers an instance.
# Everything started here is stopped here.
cd "$(dirname "$0")/.." || exit 1
B="${FB_BUILD:-build}"
tmp=$(mktemp -d)
cat > "$tmp/seed.lua" <<'LUA'
local registry = ...
registry:register("billing", "10.9.9.9", 9000)
require("fusebox").export("main", registry)
LUA
cat > "$tmp/short.lua" <<'LUA'
local fb = require "fusebox"
fb.export("cb", fb.breaker {})
fb.sleep(0.05)
LUA
"$B/fusebox" serve --listen 127.0.0.1:0 --metrics 127.0.0.1:0 "$tmp/seed.lua" > "$tmp/out" 2> "$tmp/err" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 1 100); do
  grep -q "registry API on" "$tmp/out" 2>/dev/null && break
  sleep 0.05
done
url=$(sed -n 's/.*registry API on \(http[^ ]*\)/\1/p' "$tmp/out")
metrics=$(sed -n 's/.*metrics on \(http[^ ]*\)/\1/p' "$tmp/out")
echo "1..26"
n=0
check() { # description, expected substring, actual
  n=$((n + 1))
  case "$3" in
    *"$2"*) echo "ok $n - $1" ;;
    *) echo "not ok $n - $1"; echo "# expected '$2' in: $3" ;;
  esac
}
check "prints the address it listens on" "http://127.0.0.1:" "$url"
check "the script's registration is visible" '"host":"10.9.9.9"' "$(curl -s "$url/billing")"
check "PUT registers" '"added":true' \
  "$(curl -s -X PUT -d '{"host":"127.0.0.1","port":7001}' "$url/users/instances")"
check "heartbeat answers" '"added":false' \
  "$(curl -s -X PUT "$url/users/instances/127.0.0.1:7001/heartbeat")"
check "metrics show the served registry as 'serve' (issue 14, item 5)" \
  'fusebox_registry_instances{registry="serve",service="users"} 1' "$(curl -s "$metrics")"
check "malformed JSON is a 400 with a JSON error" '400 {"error":"invalid JSON' \
  "$(curl -s -w '%{http_code} ' -o "$tmp/body" -X PUT -d '{"host"' "$url/users/instances"; cat "$tmp/body")"
check "DELETE deregisters" '"removed":true' \
  "$(curl -s -X DELETE "$url/users/instances/127.0.0.1:7001")"
check "still alive after all that" '"services":[' "$(curl -s "$url")"
curl -s "$metrics" > "$tmp/metrics"
check "metrics pass promtool" "rc=0" "$(promtool check metrics < "$tmp/metrics" 2>&1; echo rc=$?)"
check "metrics count the registry" 'fusebox_registry_instances{registry="main",service="billing"} 1' "$(cat "$tmp/metrics")"
check "run --metrics ends with its script" "rc=0" \
  "$(timeout 10 "$B/fusebox" run --metrics 127.0.0.1:0 "$tmp/short.lua" >/dev/null 2>&1; echo rc=$?)"

# Bearer tokens (issue 13, finding 6): a second server with --token-file.
printf 's3cret\n' > "$tmp/token"
"$B/fusebox" serve --listen 127.0.0.1:0 --token-file "$tmp/token" > "$tmp/out2" 2> "$tmp/err2" &
pid2=$!
trap 'kill $pid $pid2 2>/dev/null; wait $pid $pid2 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 1 100); do
  grep -q "registry API on" "$tmp/out2" 2>/dev/null && break
  sleep 0.05
done
url2=$(sed -n 's/.*registry API on \(http[^ ]*\)/\1/p' "$tmp/out2")
reg='{"host":"127.0.0.1","port":7001}'
check "a write without the token is a 401" '401 {"error":"a write needs a bearer token' \
  "$(curl -s -w '%{http_code} ' -o "$tmp/body" -X PUT -d "$reg" "$url2/users/instances"; cat "$tmp/body")"
check "a wrong token is a 403" '403 {"error":"wrong token"}' \
  "$(curl -s -w '%{http_code} ' -o "$tmp/body" -H 'Authorization: Bearer s3cre' -X PUT -d "$reg" "$url2/users/instances"; cat "$tmp/body")"
check "the token (the file's line) lets it through" '201 {"added":true}' \
  "$(curl -s -w '%{http_code} ' -o "$tmp/body" -H 'Authorization: Bearer s3cret' -X PUT -d "$reg" "$url2/users/instances"; cat "$tmp/body")"
check "reads need no token without --auth-reads" '200' \
  "$(curl -s -w '%{http_code}' -o /dev/null "$url2/users")"
run2() { # args... -> "rc=N lines=N: stderr"
  timeout 10 "$B/fusebox" serve "$@" > /dev/null 2> "$tmp/err3"
  echo "rc=$? lines=$(wc -l < "$tmp/err3"): $(cat "$tmp/err3")"
}
check "no token beyond loopback: refused in one line, exit 2" \
  "rc=2 lines=1: fusebox: refusing to serve the registry on 0.0.0.0 without a token: give --token-file FILE, or --insecure" \
  "$(run2 --listen 0.0.0.0:0)"
# 192.0.2.1 (TEST-NET-1) is on no interface here: the warning, then bind fails
check "--insecure warns in one line" \
  "fusebox: warning: serving the registry on 192.0.2.1 without a token (--insecure)" \
  "$(run2 --listen 192.0.2.1:0 --insecure; head -1 "$tmp/err3")"
check "--insecure warns once" "warnings=1" "warnings=$(grep -c warning "$tmp/err3")"
: > "$tmp/empty"
check "an empty token file is refused" "rc=2 lines=1: fusebox: token file '$tmp/empty' is empty" \
  "$(run2 --token-file "$tmp/empty")"
check "a missing token file is refused" "rc=2 lines=1: fusebox: cannot read token file '$tmp/nope'" \
  "$(run2 --token-file "$tmp/nope")"
check "--auth-reads needs a token file" "rc=2 lines=1: fusebox: --auth-reads needs --token-file" \
  "$(run2 --auth-reads)"
hostport() { echo "$1" | sed 's|^http://\([^/]*\)/.*|\1|'; }
check "--metrics on a port in use: one line, exit 2" \
  "rc=2 lines=1: fusebox: cannot serve metrics on $(hostport "$metrics"): address already in use" \
  "$(run2 --listen 127.0.0.1:0 --metrics "$(hostport "$metrics")")"
check "--listen on a port in use: one line, exit 2" \
  "rc=2 lines=1: fusebox: cannot listen on $(hostport "$url"): address already in use" \
  "$(run2 --listen "$(hostport "$url")")"
check "a bad --heartbeat-timeout is refused" "rc=2 lines=1: fusebox: bad --heartbeat-timeout 'inf'" \
  "$(run2 --heartbeat-timeout inf)"
# --heartbeat-timeout: an instance not heard from for that long is gone
"$B/fusebox" serve --listen 127.0.0.1:0 --heartbeat-timeout 0.3 > "$tmp/out4" 2>&1 &
pid4=$!
trap 'kill $pid $pid2 $pid4 2>/dev/null; wait $pid $pid2 $pid4 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 1 100); do
  grep -q "registry API on" "$tmp/out4" 2>/dev/null && break
  sleep 0.05
done
url4=$(sed -n 's/.*registry API on \(http[^ ]*\)/\1/p' "$tmp/out4")
curl -s -X PUT -d "$reg" "$url4/short/instances" > /dev/null
check "--heartbeat-timeout: live at first" '"host":"127.0.0.1"' "$(curl -s "$url4/short")"
sleep 0.6
check "--heartbeat-timeout: expired after it" '"instances":[]' "$(curl -s "$url4/short")"
