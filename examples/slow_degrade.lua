-- A slow (not failing) instance. Two instances serve orders; from t=10
-- the second one degrades over 20 s until it is 20x slower, but it never
-- fails, so a breaker that counts failures never notices. The per-instance
-- latency percentiles show what a timeout or a latency-aware balancer
-- would have to catch.
--
--   fusebox run --virtual-time --seed 1 examples/slow_degrade.lua
local fb = require "fusebox"

local reg = fb.registry()
local lb = fb.balancer(reg, "round_robin")
local cb = fb.breaker { failure_threshold = 5, timeout = 10 }
local latency = { dist = "lognormal", p50 = 0.02, p99 = 0.08 }
local instances = {
  ["10.0.0.1"] = fb.sim.instance { registry = reg, service = "orders", host = "10.0.0.1",
    port = 9000, model = fb.sim.service { name = "10.0.0.1", latency = latency } },
  ["10.0.0.2"] = fb.sim.instance { registry = reg, service = "orders", host = "10.0.0.2",
    port = 9000, model = fb.sim.service { name = "10.0.0.2", latency = latency,
      degrade = { from = 10, to = 30, latency_factor = 20 } } },
}

local samples = {}
local function percentile(xs, p)
  table.sort(xs)
  return xs[math.max(1, math.ceil(#xs * p))] or 0
end

-- Twenty clients, each calling in a loop with a little think time.
for c = 1, 20 do
  fb.spawn(function()
    while fb.now() < 40 do
      local inst = lb:pick("orders")
      local t0 = fb.now()
      fb.sim.call(cb, instances[inst.host].call, instances[inst.host])
      local bucket = math.floor(t0 / 10) * 10
      local key = inst.host .. "@" .. bucket
      samples[key] = samples[key] or {}
      table.insert(samples[key], fb.now() - t0)
      fb.sleep(0.05 + fb.random() * 0.05)
    end
  end)
end

fb.sleep(41)
print("window   instance   calls    p50      p99")
for bucket = 0, 30, 10 do
  for _, host in ipairs { "10.0.0.1", "10.0.0.2" } do
    local xs = samples[host .. "@" .. bucket] or {}
    print(string.format("%2d-%2ds   %s  %5d  %6.3fs  %6.3fs", bucket, bucket + 10, host, #xs,
      percentile(xs, 0.5), percentile(xs, 0.99)))
  end
end
print("breaker: " .. cb.state .. " (a slow instance is not a failing one)")
