-- The etcd registry backend's throughput and expiry latency (run by
-- tests/bench/etcd.sh with the endpoint of a local etcd).
--
-- registrations/s: N registers on one registry until a second registry
--   (its own list + watch, as a remote process has) discovers all N;
--   each is a lease grant + a put, one request at a time.
-- heartbeats/s: ROUNDS rounds of one heartbeat per instance, each round
--   until nothing is pending; each is one lease keepalive request.
-- expiry -> gone: K instances with TTL 2 s register one by one and stop
--   heartbeating; for each, the time from its lease running out (the
--   put's completion + TTL: the lease was granted just before the put,
--   so this errs low by one request) to the remote view losing it.
-- Medians of RUNS runs; the runtime's real clock (uv_hrtime).
local fb = require "fusebox"
local endpoint = arg[1]
local N, ROUNDS, RUNS, K, TTL = 200, 3, 3, 5, 2

local function median(t)
  table.sort(t)
  return t[math.floor((#t + 1) / 2)]
end

local function wait_until(fn, timeout, step)
  local deadline = fb.now() + timeout
  while not fn() do
    if fb.now() > deadline then error("benchmark: timed out", 2) end
    fb.sleep(step or 0.001)
  end
end

local function registry(prefix, ttl)
  local reg = fb.registry { backend = "etcd", endpoints = { endpoint }, prefix = prefix, heartbeat_timeout = ttl }
  wait_until(function() return not reg:stale() end, 5)
  return reg
end

local regs, beats = {}, {}
for run = 1, RUNS do
  local prefix = "/bench/throughput/" .. run .. "/"
  local w, remote = registry(prefix, 30), registry(prefix, 30)
  local t0 = fb.now()
  for i = 1, N do w:register("svc", "127.0.0.1", 10000 + i) end
  wait_until(function() return #remote:discover("svc") == N end, 60)
  regs[run] = N / (fb.now() - t0)
  t0 = fb.now()
  for _ = 1, ROUNDS do
    for i = 1, N do w:heartbeat("svc", "127.0.0.1", 10000 + i) end
    wait_until(function() return w:pending() == 0 end, 60)
  end
  beats[run] = N * ROUNDS / (fb.now() - t0)
  w:close()
  remote:close()
end
print(string.format("etcd registrations (grant + put, seen by a remote watch): %.0f /s (median of %d runs of %d)",
  median(regs), RUNS, N))
print(string.format("etcd heartbeats (one lease keepalive each): %.0f /s (median of %d runs of %d)",
  median(beats), RUNS, N * ROUNDS))

local w, remote = registry("/bench/expiry/", TTL), registry("/bench/expiry/", TTL)
local expires, gone = {}, {}
for i = 1, K do
  w:register("svc", "127.0.0.1", 20000 + i)
  wait_until(function() return w:pending() == 0 end, 5)
  expires[i] = fb.now() + TTL
  fb.sleep(0.1)
end
wait_until(function()
  local live, n = {}, 0
  for _, v in ipairs(remote:discover("svc")) do live[v.port] = true end
  for i = 1, K do
    if not gone[i] and not live[20000 + i] then gone[i] = fb.now() - expires[i] end
    if gone[i] then n = n + 1 end
  end
  return n == K
end, 10, 0.005)
local lat = {}
for i = 1, K do lat[i] = gone[i] end
print(string.format("etcd lease expiry -> gone from a remote discover(): %.0f ms median (min %.0f, max %.0f; %d instances, TTL %d s)",
  median(lat) * 1000, lat[1] * 1000, lat[#lat] * 1000, K, TTL))
w:close()
remote:close()
