-- Simulated requests per second of wall time, single core: the document's
-- breaker scenario scaled up. Three instances heartbeating to a registry, round-robin,
-- one breaker (3 failures open it, 5 s timeout), a 70%-failure service
-- with log-normal latency, CLIENTS coroutines each sending requests with
-- a little think time until REQUESTS have been made. Failures are values
-- (nil, err) and the breaker is used through its acquire/record permits
-- (fb.sim.call), so no error is raised in the loop.
--
-- The same without the breaker measures the service models and the
-- scheduler alone: every request sleeps its drawn latency.
--
-- Then a scheduler figure: SLEEPERS coroutines sleeping at once, each
-- sleeping ROUNDS times at random intervals (one heap push and pop, one
-- yield and resume per sleep).
--
--   fusebox run --virtual-time --seed 1 tests/bench/bench_sim.lua [requests] [sleepers]
local fb = require "fusebox"
package.path = "bench/lua/?.lua;" .. package.path -- run from the top
local bench = require "benchlib" -- the monotonic clock every benchmark uses
local function wall() return bench.ns() * 1e-9 end -- CLOCK_MONOTONIC

local REQUESTS = tonumber(arg[1]) or 1000000
local SLEEPERS = tonumber(arg[2]) or 10000
local CLIENTS, ROUNDS = 100, 20

-- guarded: true sends every request through the breaker (most are then
-- rejected: with 70% failures it is open most of the time); false calls
-- the service every time, which measures the model and the scheduler.
local function scenario(guarded)
  local reg = fb.registry { heartbeat_timeout = 30 }
  local lb = fb.balancer(reg, "round_robin")
  local cb = fb.breaker { failure_threshold = 3, timeout = 5 }
  local models = {}
  for i = 10, 12 do
    local host = "192.168.1." .. i
    fb.sim.instance { registry = reg, service = "user-service", host = host, port = 8080, interval = 10 }
    models[host] = fb.sim.service { name = host, failure_rate = 0.7,
      latency = { dist = "lognormal", p50 = 0.02, p99 = 0.3 } }
  end
  local sent, ok, failed, rejected = 0, 0, 0, 0
  local call, pick, sleep, random = fb.sim.call, lb.pick, fb.sleep, fb.random
  local function client()
    while sent < REQUESTS do
      sent = sent + 1
      local inst = pick(lb, "user-service")
      local v, err
      if guarded then v, err = call(cb, models[inst.host]) else v, err = models[inst.host]() end
      if v ~= nil then ok = ok + 1
      elseif err == "circuit open" then rejected = rejected + 1
      else failed = failed + 1 end
      sleep(0.01 * random())
    end
  end
  local t0 = wall()
  for _ = 1, CLIENTS do fb.spawn(client) end
  while sent < REQUESTS do sleep(1) end
  local dt = wall() - t0
  print(string.format("sim %s: %d requests in %.3f s wall (%.1f s virtual): "
    .. "%.0f requests/s, %.0f ns/request (%d ok, %d failed, %d rejected; %d clients)",
    guarded and "breaker scenario" or "unguarded calls", sent, dt, fb.now(), sent / dt, dt / sent * 1e9, ok, failed, rejected, CLIENTS))
end

local function sleepers()
  local done = 0
  local start = fb.now()
  local t0 = wall()
  for _ = 1, SLEEPERS do
    fb.spawn(function()
      for _ = 1, ROUNDS do fb.sleep(fb.random()) end
      done = done + 1
    end)
  end
  while done < SLEEPERS do fb.sleep(1) end
  local dt = wall() - t0
  local n = SLEEPERS * ROUNDS
  print(string.format("scheduler: %d coroutines sleeping at once, %d sleeps in %.3f s wall "
    .. "(%.1f s virtual): %.0f ns per sleep/wake", SLEEPERS, n, dt, fb.now() - start, dt / n * 1e9))
end

scenario(true)
scenario(false)
sleepers()
