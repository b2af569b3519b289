-- A process that registers N instances of "child" (ports 8501..) on one
-- etcd registry and heartbeats them every 0.5 s, for 40 s at most (so a
-- scenario that died leaves nothing behind for long); lease.lua stops
-- and kills it. args: ENDPOINT CTL N TTL
local fb = require "fusebox"
local L = dofile(arg[0]:gsub("[^/]*$", "") .. "lib.lua")
local n, ttl = tonumber(arg[3]), tonumber(arg[4])
local reg = L.registry("/lease/", ttl)
local deadline = fb.now() + 40
while fb.now() < deadline do
  for i = 1, n do reg:heartbeat("child", "127.0.0.1", 8500 + i) end
  fb.sleep(0.5)
end
reg:close()
