-- tests/compare.t's scenario: requests through the policy under comparison
-- (fb.sim.policy) to two flaky backends taken in turn, the second one down
-- from t=10 to t=25 (a breaker around both opens then). FB_COMPARE_CALLS requests (4000 by default), one
-- every 10 ms.
local fb = require "fusebox"
local n = tonumber(os.getenv("FB_COMPARE_CALLS") or "") or 4000
local svcs = {
  fb.sim.service { name = "a", failure_rate = 0.2, latency = { dist = "lognormal", p50 = 0.01, p99 = 0.1 } },
  fb.sim.service { name = "b", failure_rate = 0.2, latency = { dist = "lognormal", p50 = 0.01, p99 = 0.1 },
                   outages = { { at = 10, duration = 15 } } },
}
local p = fb.sim.policy {}
local turn = 0
local function call() -- round robin over the two, retries included
  turn = turn % 2 + 1
  return svcs[turn]()
end
for _ = 1, n do
  fb.spawn(function() pcall(p.call, p, call) end) -- an open breaker raises
  fb.sleep(0.01)
end
