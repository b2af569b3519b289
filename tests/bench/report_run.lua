-- A long run for the report benchmark: N requests (default 1,000,000),
-- ten a second of virtual time, each a balancer pick over three
-- instances and a call through a breaker to a service with outages and
-- a slow phase; one instance crashes a third of the way in.
--
--   fusebox run --virtual-time --seed 1 --events big.jsonl tests/bench/report_run.lua 1000000
--   fusebox report big.jsonl -o big.html
local fb = require "fusebox"

local n = tonumber((...)) or 1000000
local span = n / 10
local reg = fb.registry { heartbeat_timeout = 30 }
local lb = fb.balancer(reg, "round_robin")
local svc = fb.sim.service { name = "payments", failure_rate = 0.02,
  latency = { dist = "lognormal", p50 = 0.02, p99 = 0.2 },
  outages = { { at = span * 0.2, duration = span * 0.05 }, { at = span * 0.6, duration = span * 0.02 } },
  degrade = { from = span * 0.7, to = span * 0.8, latency_factor = 8, failure_rate = 0.3 } }
local cb = fb.breaker { failure_threshold = 5, timeout = 30, success_threshold = 2 }
local instances = {}
for i = 1, 3 do
  local host = "10.0.0." .. i
  instances[host] = fb.sim.instance { registry = reg, service = "api", host = host, port = 80, interval = 10 }
end
fb.at(span / 3, function() instances["10.0.0.2"]:crash() end)

for _ = 1, n do
  lb:pick("api")
  fb.sim.call(cb, svc)
  fb.sleep(0.1)
end
