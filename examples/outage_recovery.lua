-- A full outage and recovery watched through the breaker's HALF_OPEN
-- probes. The payments service is down from t=10 to t=40. The breaker
-- opens after 3 failures; every 5 s it lets one probe through (HALF_OPEN),
-- which fails and reopens it, until the service is back: then 3
-- successful probes close it.
--
--   fusebox run --virtual-time --seed 1 examples/outage_recovery.lua
--   fusebox run --virtual-time --seed 1 --events outage.jsonl examples/outage_recovery.lua
local fb = require "fusebox"

local svc = fb.sim.service { name = "payments", failure_rate = 0.02,
  latency = { dist = "lognormal", p50 = 0.03, p99 = 0.2 },
  outages = { { at = 10, duration = 30 } } }
local cb = fb.breaker { failure_threshold = 3, timeout = 5, success_threshold = 3 }

cb:on("state_change", function(from, to, t)
  local note = ""
  if from == "HALF_OPEN" then
    note = to == "OPEN" and "  (the probe failed: still down)" or "  (probes succeeded: recovered)"
  elseif to == "HALF_OPEN" then
    note = "  (timeout passed: letting a probe through)"
  end
  print(string.format("[t=%6.2fs] %-9s -> %-9s%s", t, from, to, note))
end)

local counts = { ok = 0, failed = 0, rejected = 0 }
while fb.now() < 60 do
  local _, err = fb.sim.call(cb, svc)
  if err == "circuit open" then counts.rejected = counts.rejected + 1
  elseif err then counts.failed = counts.failed + 1
  else counts.ok = counts.ok + 1 end
  fb.sleep(0.2)
end
print(string.format("\n%d succeeded, %d failed, %d rejected without calling payments",
  counts.ok, counts.failed, counts.rejected))
