-- A full outage from t=10 to t=30, watched through the breaker: while the
-- service is down every HALF_OPEN probe fails and reopens the breaker;
-- once it is back, probes succeed and 3 of them close it.
local fb = require "fusebox"

local svc = fb.sim.service { name = "payments", failure_rate = 0,
  latency = { dist = "uniform", min = 0.01, max = 0.05 },
  outages = { { at = 10, duration = 20 } } }
local cb = fb.breaker { failure_threshold = 3, timeout = 5, success_threshold = 3 }

local changes = {}
cb:on("state_change", function(from, to, t)
  changes[#changes + 1] = { from = from, to = to, t = t }
end)

while fb.now() < 45 do
  fb.sim.call(cb, svc)
  fb.sleep(0.25)
end

local failed_probes, closed_at = 0, nil
for _, c in ipairs(changes) do
  if c.from == "HALF_OPEN" and c.to == "OPEN" then
    fb.expect(c.t >= 10 and c.t < 30, "a probe failed outside the outage, at t=%.2f", c.t)
    failed_probes = failed_probes + 1
  elseif c.to == "CLOSED" then
    closed_at = c.t
  end
end
fb.expect(changes[1] and changes[1].to == "OPEN" and changes[1].t >= 10,
  "the first change is CLOSED -> OPEN in the outage")
fb.expect(failed_probes >= 3, "only %d probes failed during a 20 s outage", failed_probes)
fb.expect(closed_at and closed_at >= 30 and closed_at < 37,
  "the breaker closed at %s, want within 7 s of recovery", tostring(closed_at))
fb.expect(cb.state == "CLOSED", "the breaker ends %s", cb.state)
