#!/bin/sh
# Graceful shutdown (issue 17, item 4): `fusebox serve` and `fusebox run`
# scripts that serve, sent SIGTERM/SIGINT as an orchestrator would, with
# curl as the clients. Everything started here is stopped here.
cd "$(dirname "$0")/.." || exit 1
B="${FB_BUILD:-build}"
tmp=$(mktemp -d)
pids=""
trap 'for p in $pids; do kill -9 $p 2>/dev/null; done; wait 2>/dev/null; rm -rf "$tmp"' EXIT
echo "1..25"
n=0
check() { # description, expected substring, actual
  n=$((n + 1))
  case "$3" in
    *"$2"*) echo "ok $n - $1" ;;
    *) echo "not ok $n - $1"; echo "# expected '$2' in: $3" ;;
  esac
}
ms() { echo $(($(date +%s%N) / 1000000)); }
wait_for() { # file, pattern: up to 5 s
  for _ in $(seq 1 100); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}
# A script serving / with a handler that says it started, then sleeps
# the time in the query (?0.5), and answers "done".
cat > "$tmp/slow.lua" <<'LUA'
local fb = require "fusebox"
local marker = ...
local srv = assert(fb.http.serve { port = 0, handler = function(req)
  local f = assert(io.open(marker, "a")); f:write("started\n"); f:close()
  fb.sleep(tonumber(req.query) or 0)
  return 200, nil, "done after " .. req.query
end })
print("port " .. srv:port())
io.stdout:flush()
while true do fb.sleep(1) end -- a script that never ends on its own
LUA
start_slow() { # out file, marker, fusebox run options...
  out=$1 marker=$2; shift 2
  "$B/fusebox" run "$@" "$tmp/slow.lua" "$marker" > "$out" 2> "$out.err" &
  pid=$!
  pids="$pids $pid"
  wait_for "$out" "^port "
  port=$(sed -n 's/^port //p' "$out")
}

# 1. fusebox serve: SIGTERM during a blocking query
"$B/fusebox" serve --listen 127.0.0.1:0 > "$tmp/serve.out" 2> "$tmp/serve.err" &
spid=$!
pids="$pids $spid"
wait_for "$tmp/serve.out" "registry API on"
url=$(sed -n 's/.*registry API on \(http[^ ]*\)/\1/p' "$tmp/serve.out")
curl -s -X PUT -d '{"host":"127.0.0.1","port":7001}' "$url/users/instances" > /dev/null
(curl -s -i "$url/users?index=1&wait=60s" > "$tmp/query"; echo "curl rc=$?" >> "$tmp/query") &
qpid=$!
sleep 0.3 # the query is parked by now
t0=$(ms)
kill -TERM $spid
wait $spid
rc=$?
t1=$(ms)
wait $qpid
check "serve: exits 0 on SIGTERM with a blocking query parked" "rc=0" "rc=$rc"
check "serve: ... at once, not after the query's 60 s wait" "fast" "$([ $((t1 - t0)) -lt 2000 ] && echo fast || echo "took $((t1 - t0)) ms")"
check "serve: the parked query is answered 200" "HTTP/1.1 200 OK" "$(cat "$tmp/query")"
check "serve: ... with the current state" '"instances":[{"host":"127.0.0.1","meta":{},"port":7001' "$(cat "$tmp/query")"
check "serve: ... and Connection: close" "Connection: close" "$(cat "$tmp/query")"
check "serve: ... and the client saw a whole answer" "curl rc=0" "$(cat "$tmp/query")"
check "serve: one line on stderr says what happens" \
  "fusebox: SIGTERM: shutting down: no new connections, 1 open, deadline 10s (another signal exits at once)" \
  "$(cat "$tmp/serve.err")"
check "serve: and nothing else" "lines=1" "lines=$(wc -l < "$tmp/serve.err")"

# 2. fusebox run: SIGTERM during a slow request: it completes
start_slow "$tmp/run1" "$tmp/m1"
(curl -s -i "http://127.0.0.1:$port/?0.6" > "$tmp/slow1"; echo "curl rc=$?" >> "$tmp/slow1") &
cpid=$!
wait_for "$tmp/m1" started
kill -TERM $pid
sleep 0.1
check "run: no new connections once shutting down" "refused" \
  "$(curl -s -o /dev/null "http://127.0.0.1:$port/?0" && echo accepted || echo refused)"
wait $pid 2>/dev/null
rc=$?
wait $cpid
check "run: the request in flight completes" "done after 0.6" "$(cat "$tmp/slow1")"
check "run: ... with Connection: close" "Connection: close" "$(cat "$tmp/slow1")"
check "run: then exits 0, though its script loops forever" "rc=0" "rc=$rc"

# 3. a second signal exits at once
start_slow "$tmp/run2" "$tmp/m2"
curl -s "http://127.0.0.1:$port/?30" > /dev/null &
cpid=$!
wait_for "$tmp/m2" started
kill -TERM $pid
sleep 0.2
t0=$(ms)
kill -TERM $pid
wait $pid 2>/dev/null
rc=$?
t1=$(ms)
wait $cpid
check "a second SIGTERM: the process dies of it (128 + 15)" "rc=143" "rc=$rc"
check "... at once" "fast" "$([ $((t1 - t0)) -lt 1000 ] && echo fast || echo "took $((t1 - t0)) ms")"
check "... saying so" "fusebox: second SIGTERM during shutdown: exiting at once" "$(cat "$tmp/run2.err")"

# 4. the deadline passes: the request is cut off, exit 1, one line
start_slow "$tmp/run3" "$tmp/m3" --shutdown-timeout 0.3
curl -s "http://127.0.0.1:$port/?30" > /dev/null &
cpid=$!
wait_for "$tmp/m3" started
t0=$(ms)
kill -INT $pid
wait $pid 2>/dev/null
rc=$?
t1=$(ms)
wait $cpid
check "--shutdown-timeout passed: exit 1" "rc=1" "rc=$rc"
check "... after the deadline, not the request's 30 s" "fast" "$([ $((t1 - t0)) -lt 2000 ] && echo fast || echo "took $((t1 - t0)) ms")"
check "... saying what was cut off (SIGINT shuts down too)" \
  "fusebox: SIGINT: shutting down: no new connections, 1 open, deadline 0.3s (another signal exits at once)
fusebox: shutdown: deadline of 0.3s passed with 1 connection(s) still open; closed them" "$(cat "$tmp/run3.err")"

# 5. a script that serves nothing keeps the default: SIGTERM kills it
printf 'local fb = require "fusebox"\nprint("up") io.stdout:flush()\nfb.sleep(30)\n' > "$tmp/plain.lua"
"$B/fusebox" run "$tmp/plain.lua" > "$tmp/plain.out" 2>&1 &
pid=$!
pids="$pids $pid"
wait_for "$tmp/plain.out" up
kill -TERM $pid
wait $pid 2>/dev/null
check "a script that serves nothing dies of SIGTERM as any process" "rc=143" "rc=$?"

# 6. fb.on_signal: the script's own handler replaces the shutdown
cat > "$tmp/own.lua" <<'LUA'
local fb = require "fusebox"
local srv = assert(fb.http.serve { port = 0, handler = function() return 200, nil, "ok" end })
fb.on_signal("SIGUSR1", function(name) print("got " .. name); io.stdout:flush() end)
fb.on_signal("SIGTERM", function(name)
  print("cleaning up after " .. name); io.stdout:flush()
  fb.shutdown { timeout = 1 }
end)
print("ready"); io.stdout:flush()
while true do fb.sleep(1) end
LUA
"$B/fusebox" run "$tmp/own.lua" > "$tmp/own.out" 2> "$tmp/own.err" &
pid=$!
pids="$pids $pid"
wait_for "$tmp/own.out" ready
kill -USR1 $pid
wait_for "$tmp/own.out" "got SIGUSR1"
kill -TERM $pid
wait $pid 2>/dev/null
rc=$?
check "fb.on_signal: the script's handlers ran, in order" "ready
got SIGUSR1
cleaning up after SIGTERM" "$(cat "$tmp/own.out")"
check "fb.on_signal: its fb.shutdown ended the run, exit 0, quietly" "rc=0 err=" "rc=$rc err=$(cat "$tmp/own.err")"

# 7. fb.run in a plain luajit: signals keep their defaults unless the run
# asks (a harness's SIGTERM must end the harness, not one run of it)
cat > "$tmp/plain_run.lua" <<'LUA'
package.cpath = arg[1] .. "/?.so;" .. package.cpath
local fb = require "fusebox"
fb.run(function()
  local srv = assert(fb.http.serve { port = 0, handler = function() return 200 end })
  print("ready"); io.stdout:flush()
  fb.sleep(30)
  srv:close()
end, { shutdown_on_signals = arg[2] == "yes" })
print("run returned")
LUA
plain_run() { # yes|no -> rc=N and what it printed
  (
    [ -n "$FB_PRELOAD" ] && export LD_PRELOAD="$FB_PRELOAD" ASAN_OPTIONS=detect_leaks=0
    exec luajit "$tmp/plain_run.lua" "$B" "$1"
  ) > "$tmp/plain_run.$1" 2>&1 &
  lpid=$!
  pids="$pids $lpid"
  wait_for "$tmp/plain_run.$1" ready
  kill -TERM $lpid
  wait $lpid 2>/dev/null
  echo "rc=$? $(tr '\n' ' ' < "$tmp/plain_run.$1")"
}
check "fb.run without shutdown_on_signals: SIGTERM kills as usual" "rc=143 ready" "$(plain_run no)"
check "fb.run{shutdown_on_signals = true}: SIGTERM ends the run, fb.run returns" \
  "rc=0 ready fusebox: SIGTERM: shutting down" "$(plain_run yes)"

# 8. the flag's bad values: one line, exit 2
bad_flag() { "$B/fusebox" "$@" > /dev/null 2> "$tmp/flag.err"; echo "rc=$? $(cat "$tmp/flag.err")"; }
check "serve --shutdown-timeout -1 is a usage error" \
  "rc=2 fusebox: bad --shutdown-timeout '-1': want a number of seconds in 0..1e9 (see fusebox --help)" \
  "$(bad_flag serve --shutdown-timeout -1)"
check "run --shutdown-timeout needs a value" \
  "rc=2 fusebox: --shutdown-timeout needs a number of seconds (see fusebox --help)" \
  "$(bad_flag run --shutdown-timeout)"
