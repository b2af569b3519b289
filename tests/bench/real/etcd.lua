-- The etcd registry backend's throughput and expiry latency (run by
-- tests/bench/etcd.sh with the endpoint of a local etcd and the part to
-- run, each on an etcd of its own: thousands of leases a part leaves
-- behind expire later, and etcd revokes at most 1,000 a second).
--
-- registrations/s: N registers on one registry until a second registry
--   (its own list + watch, as a remote process has) discovers all N;
--   each is a lease grant (PARALLEL in flight) + a put (batched in txns).
-- heartbeats/s: ROUNDS rounds of one heartbeat per instance, each round
--   until nothing is pending; lease keepalives batched, many a request.
-- 10,000 instances heartbeating every 10 s: registered, then PERIODS
--   rounds 10 s apart of one heartbeat each; for each round, the time
--   until all of it is in etcd (it keeps up while that stays under 10 s).
-- the gateway's own rates, for scale: lease grants and batched lease
--   keepalives (of KEEPALIVES distinct leases) straight over fb.http,
--   with the registry's batch size and requests in flight, no registry,
--   for SECONDS each; keepalives counted by the results that came back
--   (the gateway may end an answer early).
-- expiry -> gone: K instances with TTL 2 s register one by one and stop
--   heartbeating; for each, the time from its lease running out (the
--   put's completion + TTL: the lease was granted just before the put,
--   so this errs low by one request) to the remote view losing it.
-- Medians of RUNS runs; the runtime's real clock (uv_hrtime).
local fb = require "fusebox"
local endpoint, part = arg[1], arg[2]
local N, ROUNDS, RUNS, K, TTL = 5000, 3, 3, 5, 2
local BIG, PERIOD, PERIODS = 10000, 10, 2
local PARALLEL, KEEPALIVES, STREAMS, SECONDS = 32, 100, 4, 2 -- as fusebox/etcd.lua

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

local parts = {}

function parts.expiry()
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
end

function parts.throughput()
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
print(string.format("etcd heartbeats (batched lease keepalives): %.0f /s (median of %d runs of %d)",
  median(beats), RUNS, N * ROUNDS))
end

function parts.big()
  local w = registry("/bench/big/", 30)
  local t0 = fb.now()
  for i = 1, BIG do w:register("svc", "127.0.0.1", 30000 + i) end
  wait_until(function() return w:pending() == 0 end, 60)
  local reg_s = fb.now() - t0
  local lags = {}
  for r = 1, PERIODS do
    local start = t0 + r * PERIOD
    if fb.now() < start then fb.sleep(start - fb.now()) end
    for i = 1, BIG do w:heartbeat("svc", "127.0.0.1", 30000 + i) end
    wait_until(function() return w:pending() == 0 end, PERIOD * 2)
    lags[r] = fb.now() - start
  end
  table.sort(lags)
  print(string.format("etcd %d instances, a heartbeat each every %d s: registered in %.2f s; each round in etcd within %.0f ms (max of %d rounds)%s",
    BIG, PERIOD, reg_s, lags[#lags] * 1000, PERIODS, lags[#lags] < PERIOD and "" or "  FALLS BEHIND"))
  w:close()
end

-- c coroutines POSTing body to /v3/path for SECONDS -> results/s, each
-- response counting count(body) results
local function gateway_rate(path, body, c, count)
  local pool = fb.http.pool { max_idle_per_host = c }
  local n, stop, left, me = 0, fb.now() + SECONDS, c, coroutine.running()
  for _ = 1, c do
    fb.spawn(function()
      while fb.now() < stop do
        local status, _, rbody = fb.http.request { method = "POST", url = endpoint .. "/v3/" .. path, body = body, pool = pool }
        assert(status == 200, "gateway benchmark: " .. path .. " failed")
        n = n + count(rbody)
      end
      left = left - 1
      if left == 0 then fb.wake(me) end
    end)
  end
  fb.wait("gateway benchmark", SECONDS + 10)
  pool:close()
  return n / SECONDS
end

-- The gateway may end a keepalive answer early: only the results count.
local function results(body)
  local n = 0
  for _ in body:gmatch('"TTL"') do n = n + 1 end
  return n
end

function parts.gateway()
  local batch = {}
  for i = 1, KEEPALIVES do
    local _, _, body = fb.http.request { method = "POST", url = endpoint .. "/v3/lease/grant", body = '{"TTL":60}' }
    batch[i] = '{"ID":"' .. fb.json_decode(body).ID .. '"}'
  end
  print(string.format("etcd gateway alone: %.0f lease grants/s (%d in flight), %.0f lease keepalives/s (%d requests of %d in flight), %d s each",
    gateway_rate("lease/grant", '{"TTL":60}', PARALLEL, function() return 1 end), PARALLEL,
    gateway_rate("lease/keepalive", table.concat(batch, "\n"), STREAMS, results), STREAMS, KEEPALIVES, SECONDS))
end

assert(parts[part], "etcd benchmark: no part '" .. tostring(part) .. "'")()
