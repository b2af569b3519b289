-- The etcd registry backend's throughput and expiry latency (run by
-- tests/bench/etcd.sh with the endpoint of a local etcd and the part to
-- run, each on an etcd of its own). The registry keeps one lease, every
-- own key on it, alive by a keepalive every TTL/3 (lua/fusebox/etcd.lua).
--
-- registrations/s: N registers on one registry until a second registry
--   (its own list + watch, as a remote process has) discovers all N;
--   each is a put, 128 to a txn, on the registry's one lease.
-- heartbeats/s: rounds of one heartbeat per instance for HB_SECONDS (over
--   two TTLs of HB_TTL: only the lease's keepalives hold the keys), each
--   round until nothing is pending; then the check that gives the figure
--   its meaning: all N keys still in etcd, on one lease, alive, holding
--   them all (lease/timetolive). Beside it, what etcd served meanwhile
--   (its /metrics): keepalive requests and renewals, txns, lease grants.
--   And the rate of the first and the last round (the rounds of the
--   per-instance leases slowed down from the first to the third).
-- 10,000 instances heartbeating every 10 s: registered, then PERIODS
--   periods of 10 s in which each instance heartbeats once, at its own
--   moment (BIG / 100 every 0.1 s), on a lease of BIG_TTL (shorter than
--   the run); it keeps up when nothing stays pending longer than a tick,
--   no tick starts a tick late, and every key is in etcd at the end, on
--   its live lease.
-- the gateway's own rates, for scale: lease grants and batched lease
--   keepalives (of KEEPALIVES distinct leases) straight over fb.http, 32
--   and 4 requests in flight, no registry, for SECONDS each; keepalives
--   counted by the results that came back (the gateway may end an answer
--   early).
-- expiry -> gone: K instances with TTL 2 s register one by one and stop
--   heartbeating; for each, the time from the end of its heartbeat
--   timeout (its register + TTL) to the remote view losing it (the
--   writer deletes its key).
-- Medians of RUNS runs; the runtime's real clock (uv_hrtime).
local fb = require "fusebox"
local endpoint, part = arg[1], arg[2]
local N, RUNS, K, TTL = 5000, 3, 5, 2
local HB_TTL, HB_SECONDS = 2, 5
local BIG, BIG_TTL, PERIOD, PERIODS, TICK = 10000, 15, 10, 2, 0.1
local KEEPALIVES, SECONDS = 100, 2

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

local function post(path, req)
  local status, _, body = fb.http.request { method = "POST", url = endpoint .. "/v3/" .. path, body = fb.json_encode(req) }
  assert(status == 200, "benchmark: " .. path .. " failed: " .. tostring(body))
  return fb.json_decode(body)
end

-- Base64 as etcd's gateway wants keys (the benchmark's own encoder).
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local function b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    for j = 3, 0, -1 do
      local k = math.floor(n / 64 ^ j) % 64
      out[#out + 1] = (j >= 2 or (j == 1 and b) or (j == 0 and c)) and B64:sub(k + 1, k + 1) or "="
    end
  end
  return table.concat(out)
end

-- The keys under prefix: all n of them, on one lease that etcd still
-- has with a TTL left and all n keys on it? -> true | false, why.
local function all_held(prefix, n)
  local doc = post("kv/range", { key = b64(prefix), range_end = b64(prefix:sub(1, -2) .. "0"), keys_only = true })
  local kvs, leases = doc.kvs or {}, {}
  for _, kv in ipairs(kvs) do leases[kv.lease or "none"] = true end
  local lease = next(leases)
  if #kvs ~= n or next(leases, lease) ~= nil or lease == "none" then
    return false, string.format("%d keys of %d in etcd, on leases %s", #kvs, n, table.concat((function()
      local t = {}
      for l in pairs(leases) do t[#t + 1] = l end
      return t
    end)(), ","))
  end
  local ttl = post("lease/timetolive", { ID = lease, keys = true })
  local left, on = tonumber(ttl.TTL) or -1, #(ttl.keys or {})
  if left <= 0 or on ~= n then
    return false, string.format("lease %s: TTL left %s, %d keys on it", lease, tostring(ttl.TTL), on)
  end
  return true, string.format("all %d keys in etcd on one live lease (%d s left)", n, left)
end

-- etcd's counters (/metrics): keepalive requests (streams) and renewals,
-- txns, lease grants.
local function counters()
  local _, _, body = fb.http.request { method = "GET", url = endpoint .. "/metrics" }
  local c = { keepalives = 0, renewals = 0, txns = 0, grants = 0 }
  local function sum(pattern)
    local n = 0
    for v in body:gmatch(pattern) do n = n + tonumber(v) end
    return n
  end
  c.keepalives = sum('grpc_server_started_total{grpc_method="LeaseKeepAlive"[^}]*} (%d+)')
  c.txns = sum('grpc_server_started_total{grpc_method="Txn"[^}]*} (%d+)')
  c.grants = sum('grpc_server_started_total{grpc_method="LeaseGrant"[^}]*} (%d+)')
  c.renewals = sum("\netcd_debugging_lease_renewed_total (%d+)")
  return c
end

local parts = {}

function parts.expiry()
  local w, remote = registry("/bench/expiry/", TTL), registry("/bench/expiry/", TTL)
  local expires, gone = {}, {}
  for i = 1, K do
    expires[i] = fb.now() + TTL
    w:register("svc", "127.0.0.1", 20000 + i)
    wait_until(function() return w:pending() == 0 end, 5)
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
  print(string.format("etcd heartbeat timeout -> gone from a remote discover(): %.0f ms median (min %.0f, max %.0f; %d instances, TTL %d s; the writer deletes the key)",
    median(lat) * 1000, lat[1] * 1000, lat[#lat] * 1000, K, TTL))
  w:close()
  remote:close()
end

function parts.throughput()
  local regs, beats, sent, first, last, held = {}, {}, {}, {}, {}, {}
  local during, all_held_ok = nil, true
  for run = 1, RUNS do
    local prefix = "/bench/throughput/" .. run .. "/"
    local w, remote = registry(prefix, HB_TTL), registry(prefix, HB_TTL)
    local t0 = fb.now()
    for i = 1, N do w:register("svc", "127.0.0.1", 10000 + i) end
    wait_until(function() return #remote:discover("svc") == N end, 60)
    regs[run] = N / (fb.now() - t0)
    local c0 = counters()
    t0 = fb.now()
    local rounds, round_rates = 0, {}
    while fb.now() - t0 < HB_SECONDS do
      local r0 = fb.now()
      for i = 1, N do w:heartbeat("svc", "127.0.0.1", 10000 + i) end
      wait_until(function() return w:pending() == 0 end, 60)
      -- A moment idle between rounds, as a process has between requests:
      -- a loop whose coroutines are always overdue never polls its
      -- sockets (libuv 1.44 runs a 0 ms timer armed in its own callback
      -- again at once), and the keeper's keepalive would starve.
      fb.sleep(0.001)
      rounds = rounds + 1
      round_rates[rounds] = N / (fb.now() - r0)
    end
    local elapsed = fb.now() - t0
    local c1 = counters()
    beats[run] = N * rounds / elapsed
    sent[run] = (c1.keepalives - c0.keepalives) / elapsed
    first[run], last[run] = round_rates[1], round_rates[rounds]
    during = string.format("%d keepalive requests (%d renewals), %d txns, %d lease grants in %.1f s",
      c1.keepalives - c0.keepalives, c1.renewals - c0.renewals, c1.txns - c0.txns, c1.grants - c0.grants, elapsed)
    local ok, why = all_held(prefix, N)
    held[run] = why
    if not ok then
      print("etcd heartbeats: NOT HELD: " .. why)
      all_held_ok = false
    end
    w:close()
    remote:close()
  end
  print(string.format("etcd registrations (puts in txns on one lease, seen by a remote watch): %.0f /s (median of %d runs of %d; target 5,000)",
    median(regs), RUNS, N))
  print(string.format("etcd heartbeats absorbed while every key stays in etcd: %.0f /s (median of %d runs of %.0f s, %d instances, TTL %d s; target 20,000)",
    median(beats), RUNS, HB_SECONDS, N, HB_TTL))
  print(string.format("  first round %.0f /s, last round %.0f /s (medians); at the end of the last run: %s", median(first), median(last), held[RUNS]))
  print(string.format("etcd keepalive requests sent meanwhile: %.2f /s (median; target: one per TTL/3 = %.2f /s); last run: %s",
    median(sent), 3 / HB_TTL, during))
  -- a heartbeat figure without its keys in etcd means nothing: fail
  assert(all_held_ok, "etcd benchmark: keys were lost while heartbeating")
end

function parts.big()
  local w = registry("/bench/big/", BIG_TTL)
  local t0 = fb.now()
  for i = 1, BIG do w:register("svc", "127.0.0.1", 30000 + i) end
  wait_until(function() return w:pending() == 0 end, 60)
  local reg_s = fb.now() - t0
  local per_tick, ticks = BIG * TICK / PERIOD, PERIOD / TICK
  local c0, cpu0 = counters(), os.clock()
  t0 = fb.now()
  local worst, late = 0, 0
  for tick = 0, PERIODS * ticks - 1 do
    local at = t0 + tick * TICK
    if fb.now() < at then fb.sleep(at - fb.now()) elseif fb.now() > at + TICK then late = late + 1 end
    local from = (tick % ticks) * per_tick
    for i = from + 1, from + per_tick do w:heartbeat("svc", "127.0.0.1", 30000 + i) end
    local b0 = fb.now()
    wait_until(function() return w:pending() == 0 end, PERIOD)
    worst = math.max(worst, fb.now() - b0)
  end
  local elapsed, cpu, c1 = fb.now() - t0, os.clock() - cpu0, counters()
  local ok, why = all_held("/bench/big/", BIG)
  print(string.format("etcd %d instances, a heartbeat each every %d s (%d every %.1f s, %.0f s, TTL %d s): registered in %.2f s; "
    .. "a tick's heartbeats absorbed within %.1f ms (worst), %d ticks over %.1f s late; CPU %.1f%% of a core; %d keepalive requests, %d txns; %s (target: keeps up)%s",
    BIG, PERIOD, per_tick, TICK, elapsed, BIG_TTL, reg_s, worst * 1000, late, TICK, cpu / elapsed * 100,
    c1.keepalives - c0.keepalives, c1.txns - c0.txns, why, (ok and worst < TICK and late == 0) and "" or "  FALLS BEHIND"))
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
    batch[i] = '{"ID":"' .. post("lease/grant", { TTL = 60 }).ID .. '"}'
  end
  print(string.format("etcd gateway alone: %.0f lease grants/s (32 in flight), %.0f lease keepalives/s (4 requests of %d in flight), %d s each",
    gateway_rate("lease/grant", '{"TTL":60}', 32, function() return 1 end),
    gateway_rate("lease/keepalive", table.concat(batch, "\n"), 4, results), KEEPALIVES, SECONDS))
end

assert(parts[part], "etcd benchmark: no part '" .. tostring(part) .. "'")()
