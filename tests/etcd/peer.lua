-- One of two fusebox processes sharing etcd: registers itself, waits to
-- see the other one. args: ENDPOINT CTL NAME PORT OTHER_PORT
local fb = require "fusebox"
local L = dofile(arg[0]:gsub("[^/]*$", "") .. "lib.lua")
local name, port, other = arg[3], tonumber(arg[4]), tonumber(arg[5])
local reg = L.registry("/peers/", 3)
local stop = L.heartbeats(reg, "peer", "127.0.0.1", port, 0.5)
local lb = fb.balancer(reg, "round_robin")
local want = "127.0.0.1:" .. math.min(port, other) .. ",127.0.0.1:" .. math.max(port, other)
L.check(L.wait_until(function() return L.members(reg, "peer") == want end, 10),
  name .. " sees the other process's instance", L.members(reg, "peer"))
local ports = {}
for _ = 1, 2 do ports[lb:pick("peer").port] = true end
L.check(ports[other] and ports[port], name .. " balances over both processes")
fb.sleep(1) -- let the other one see us too
stop()
reg:close()
