-- embed_policy.lua -- the policy examples/embed_host.c loads: a registry
-- of backends, a round-robin balancer over it, and one breaker per
-- backend slot, published for the C host with fb.export.
local fb = require "fusebox"

local backends = fb.registry { heartbeat_timeout = 30 }
fb.export("backends", backends)
fb.export("lb", fb.balancer(backends, "round_robin"))
for i = 1, 3 do
  fb.export("breaker" .. i, fb.breaker { failure_threshold = 3, timeout = 1, success_threshold = 1 })
end
