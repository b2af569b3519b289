-- The document's circuit-breaker demo: a service that fails 70% of the
-- time, guarded by a breaker that opens after 3 consecutive failures and
-- lets a probe through 5 s later; ten calls, 0.5 s apart.
--
--   fusebox run examples/circuit_breaker.lua                 (about 5 s)
--   fusebox run --virtual-time --seed 1 examples/circuit_breaker.lua
local fb = require "fusebox"

local function unreliable_service()
  if fb.random() < 0.7 then
    error("Service call failed", 0)
  end
  return "Service call succeeded"
end

local cb = fb.breaker { failure_threshold = 3, timeout = 5 }
cb:on("state_change", function(from, to, now)
  print(string.format("  [t=%.1fs] breaker %s -> %s", now, from, to))
end)

print(string.format("Testing the circuit breaker (replay: --seed %s):", fb.seed()))
for i = 1, 10 do
  local ok, result = pcall(cb.call, cb, unreliable_service)
  print(string.format("Call %d: %s", i, result))
  fb.sleep(0.5)
end

print("\nCurrent breaker state: " .. cb.state)
