-- bench/lua/simulation.lua -- row 4: the document's breaker scenario
-- scaled up and simulated under virtual time. 1,000 clients each send
-- 1,000 requests, 0.5 s apart (the document's pacing): pick an instance
-- of "user-service" (100 instances, round robin), call it through that
-- instance's breaker (failure_threshold=3, timeout=5 s), and the instance
-- fails 70% of the time (fb.random, seeded). Every instance heartbeats
-- every 10 s, so none expires (timeout 30 s). Reports wall-clock ns per
-- simulated request; its inverse is simulated requests per second. Two
-- rows: fusebox's failures-as-values style (cb:try, the baseline) and the
-- document's raising style (pcall(cb.call)); bench/peers/doc_bench.py
-- simulation runs the same workload with the document's classes.
--   fusebox run --virtual-time --seed 1 bench/lua/simulation.lua
package.path = arg[0]:gsub("[^/]*$", "") .. "?.lua;" .. package.path
local bench = require "benchlib"
local fb = require "fusebox"

local CLIENTS, REQUESTS, INSTANCES, PACE = 1000, 1000, 100, 0.5

local function unreliable_service()
  if fb.random() < 0.7 then error("Service call failed", 0) end
  return "Service call succeeded"
end

-- The same service with failures as values, called with cb:try: a
-- rejection or a failure is returned, not raised (an error caught by
-- pcall costs about a microsecond in LuaJIT, a return nanoseconds).
local function unreliable_value()
  if fb.random() < 0.7 then return nil, "Service call failed" end
  return "Service call succeeded"
end

local function simulate(values)
  local registry = fb.registry { heartbeat_timeout = 30 }
  local lb = fb.balancer(registry, "round_robin")
  local breakers = {}
  for i = 1, INSTANCES do
    registry:register("user-service", "10.0.0." .. i, 8080)
  end
  local outcomes = { ok = 0, failed = 0 }
  local function client()
    for _ = 1, REQUESTS do
      local inst = lb:pick("user-service")
      local cb = breakers[inst]
      if not cb then
        cb = fb.breaker { failure_threshold = 3, timeout = 5 }
        breakers[inst] = cb
      end
      local ok
      if values then
        ok = cb:try(unreliable_value) ~= nil
      else
        ok = pcall(cb.call, cb, unreliable_service)
      end
      outcomes[ok and "ok" or "failed"] = outcomes[ok and "ok" or "failed"] + 1
      fb.sleep(PACE)
    end
  end
  local function heartbeats()
    for _ = 1, REQUESTS * PACE / 10 do
      fb.sleep(10)
      for i = 1, INSTANCES do registry:heartbeat("user-service", "10.0.0." .. i, 8080) end
    end
  end
  local t0 = bench.ns()
  fb.spawn(heartbeats)
  for _ = 1, CLIENTS do fb.spawn(client) end
  fb.sleep(REQUESTS * PACE + 1)
  local wall = bench.ns() - t0
  assert(outcomes.ok + outcomes.failed == CLIENTS * REQUESTS, "requests lost")
  return wall / (CLIENTS * REQUESTS), outcomes.ok / (CLIENTS * REQUESTS)
end

local NAME, CASE = "simulation", "document breaker scenario x1,000,000 requests"
for _, style in ipairs { { true, "fusebox Lua", "cb:try, failures as values" },
  { false, "fusebox Lua (raising, as the document)", "pcall(cb.call), raising" } } do
  local success = 0
  local runs = bench.repeat_runs(function()
    local ns, ok = simulate(style[1])
    success = ok
    return ns
  end, 3)
  bench.emit { bench = NAME, case = CASE, impl = style[2], n = CLIENTS * REQUESTS, runs = runs,
    note = string.format("%s; %.0f simulated s per run; %.1f%% of requests succeeded",
      style[3], REQUESTS * PACE, success * 100) }
end
