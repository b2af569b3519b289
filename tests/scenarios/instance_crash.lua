-- Instance .11 stops heartbeating at t=10 (a crash: no deregistration).
-- The registry must stop handing it out by t=40 (last heartbeat at t=10
-- plus the 30 s timeout), and until then round-robin keeps sending it
-- about a third of the traffic: at most K requests, none after t=40.
local fb = require "fusebox"

local K = 21 -- 30 s x 2 requests/s / 3 instances, plus one for the boundary

local reg = fb.registry { heartbeat_timeout = 30 }
local lb = fb.balancer(reg, "round_robin")
local instances = {}
for i = 10, 12 do
  local host = "192.168.1." .. i
  instances[host] = fb.sim.instance { registry = reg, service = "user-service",
    host = host, port = 8080, interval = 10 }
end

fb.at(10, function() instances["192.168.1.11"]:crash() end)

local to_crashed, after_expiry = 0, 0
for _ = 1, 120 do -- one request every 0.5 s until t=60
  local inst = lb:pick("user-service")
  local t = fb.now()
  if inst.host == "192.168.1.11" and t >= 10 then
    if t < 40 then to_crashed = to_crashed + 1 else after_expiry = after_expiry + 1 end
  end
  instances[inst.host]:call()
  fb.sleep(0.5)
  if fb.now() == 40 then
    for _, live in ipairs(reg:discover("user-service")) do
      fb.expect(live.host ~= "192.168.1.11", "discover() still returns .11 at t=40")
    end
    fb.expect(#reg:discover("user-service") == 2, "2 instances left at t=40")
  end
end

fb.expect(to_crashed > 0, "the crashed instance was picked before it expired")
fb.expect(to_crashed <= K, "%d requests reached .11 between t=10 and t=40 (at most %d)", to_crashed, K)
fb.expect(after_expiry == 0, "%d requests reached .11 after it expired", after_expiry)
