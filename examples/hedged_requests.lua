-- Tail latency set by one slow replica, and the hedged requests that cut
-- it. Ten replicas of a service answer in 10 ms at the median (30 ms at
-- p99, lognormal); one of them is ten times slower (100 ms / 300 ms).
-- Round robin sends it a tenth of the calls, so a tenth of the calls are
-- slow and the service's p99 is that replica's p90.
--
-- With fb.hedge{ delay = { percentile = 0.9 } } a call that has not
-- answered by the 90th percentile of recent latencies is sent again, to
-- another replica (the client prefers one not tried); the first answer
-- wins and the other is cancelled. The percentile must sit below the
-- slow share: with a tenth of the calls slow, p95 is the slow replica's
-- median, and a hedge at p95 comes too late to help much (p99 119 ms). Hedges draw from a retry budget
-- (ratio 0.2), so however slow the replicas get, hedging adds at most 20%
-- of the load plus the reserve.
--
--   fusebox run --virtual-time --seed 1 examples/hedged_requests.lua
local fb = require "fusebox"

local CALLERS, CALLS = 20, 1000

local function percentile(sorted, p) return sorted[math.ceil(p * #sorted)] end

local function scenario(hedge, label)
  local reg = fb.registry {}
  local models, served = {}, 0
  for i = 1, 10 do
    local slow = i == 10
    models[7000 + i] = fb.sim.service { name = "replica" .. i,
      latency = { dist = "lognormal", p50 = slow and 0.1 or 0.01, p99 = slow and 0.3 or 0.03 } }
    reg:register("api", "10.0.0." .. i, 7000 + i)
  end
  local policy = { retry = { attempts = 1, budget = fb.retry_budget { ratio = 0.2 } } }
  policy.hedge = hedge
  local c = fb.client { registry = reg, balancer = "round_robin", policy = policy,
    per_instance_breaker = false }
  local lat, done = {}, 0
  for _ = 1, CALLERS do
    fb.spawn(function()
      for _ = 1, CALLS do
        local t0 = fb.now()
        assert(c:call("api", function(inst)
          served = served + 1
          return models[inst.port]()
        end))
        lat[#lat + 1] = fb.now() - t0
      end
      done = done + 1
    end)
  end
  while done < CALLERS do fb.sleep(1) end
  table.sort(lat)
  print(string.format("%-26s p50 %5.1f ms  p99 %5.1f ms  p99.9 %5.1f ms  requests sent %d for %d calls (+%.1f%%)",
    label, percentile(lat, 0.5) * 1e3, percentile(lat, 0.99) * 1e3,
    percentile(lat, 0.999) * 1e3, served, #lat, (served / #lat - 1) * 100))
end

scenario(nil, "no hedging")
scenario({ delay = { percentile = 0.95 } }, "hedge at p95")
scenario({ delay = { percentile = 0.9 } }, "hedge at p90")
scenario({ delay = { percentile = 0.9 }, max_attempts = 3 }, "hedge at p90, 3 attempts")
