-- tests/bench/compare.sh's trace scenario: the calls of the trace file
-- FB_COMPARE_TRACE (tests/bench/trace_write.lua makes one) replayed
-- open-loop through the policy under comparison (fb.sim.policy), each
-- to the instance the trace sent it to.
local fb = require "fusebox"
local path = assert(os.getenv("FB_COMPARE_TRACE"), "FB_COMPARE_TRACE must name a trace file")
local rp = fb.sim.replay { trace = path }
local p = fb.sim.policy {}
rp:arrivals(function(call)
  pcall(p.call, p, rp:model(call.instance)) -- an open breaker raises
end)
