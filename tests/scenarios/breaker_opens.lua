-- A healthy service goes down at t=10 for 20 s. A breaker that opens
-- after 5 consecutive failures must open within 5 calls of the outage's
-- start, and reject (not call the service) while open.
local fb = require "fusebox"

local N = 5
local svc = fb.sim.service { name = "orders", latency = 0.05,
  outages = { { at = 10, duration = 20 } } }
local cb = fb.breaker { failure_threshold = N, timeout = 5 }

local opened_at
cb:on("state_change", function(_, to, t)
  if to == "OPEN" and not opened_at then opened_at = t end
end)

local calls_in_outage, rejected = 0, 0
while fb.now() < 20 do
  local before = svc.calls
  local _, err = fb.sim.call(cb, svc)
  if err == "circuit open" then
    rejected = rejected + 1
    fb.expect(svc.calls == before, "a rejected call reached the service")
  elseif fb.now() >= 10 and not opened_at then
    calls_in_outage = calls_in_outage + 1
  end
  fb.sleep(0.1)
end

fb.expect(opened_at, "the breaker never opened")
fb.expect(opened_at >= 10, "the breaker opened before the outage, at t=%.2f", opened_at)
fb.expect(calls_in_outage <= N, "%d calls failed in the outage before it opened (at most %d)",
  calls_in_outage, N)
fb.expect(rejected > 0, "nothing was rejected while the breaker was open")
