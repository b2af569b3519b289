-- An instance crash seen through heartbeat expiry. Three instances of
-- user-service heartbeat every 10 s to a registry with the document's
-- 30 s timeout; .11 crashes at t=12 (no deregistration: it just goes
-- quiet). Round-robin keeps sending it a third of the traffic until its
-- last heartbeat (t=10) is 30 s old, then only the two survivors are used.
--
--   fusebox run --virtual-time --seed 1 examples/instance_crash.lua
--   fusebox run --virtual-time --seed 1 --events crash.jsonl examples/instance_crash.lua
local fb = require "fusebox"

local reg = fb.registry { heartbeat_timeout = 30 }
local lb = fb.balancer(reg, "round_robin")
local instances = {}
for i = 10, 12 do
  local host = "192.168.1." .. i
  instances[host] = fb.sim.instance { registry = reg, service = "user-service",
    host = host, port = 8080, interval = 10,
    model = fb.sim.service { name = host, latency = { dist = "lognormal", p50 = 0.02, p99 = 0.1 } } }
end

fb.at(12, function()
  print(string.format("[t=%5.1fs] 192.168.1.11 crashes", fb.now()))
  instances["192.168.1.11"]:crash()
end)

local window = {}
local function report()
  local hosts = {}
  for host, n in pairs(window) do hosts[#hosts + 1] = string.format("%s: %d ok, %d failed", host, n.ok, n.failed) end
  table.sort(hosts)
  local live = #reg:discover("user-service")
  print(string.format("[t=%5.1fs] %d live | %s", fb.now(), live, table.concat(hosts, " | ")))
  window = {}
end

for i = 1, 600 do -- about ten requests a second
  local inst = lb:pick("user-service")
  local _, err = instances[inst.host]:call()
  local n = window[inst.host] or { ok = 0, failed = 0 }
  if err then n.failed = n.failed + 1 else n.ok = n.ok + 1 end
  window[inst.host] = n
  fb.sleep(0.1)
  if i % 50 == 0 then report() end
end
