-- One fusebox process and etcdctl: registration, heartbeats held by the
-- registry's lease, expiry when they stop (the writer deletes the key),
-- deregistration, interop both ways.
local fb = require "fusebox"
local L = dofile(arg[0]:gsub("[^/]*$", "") .. "lib.lua")
local check, wait_until, etcdctl = L.check, L.wait_until, L.etcdctl
local P = "/basic/"

local reg = L.registry(P, 2)
check(reg:stale(), "stale until etcd was listed")
check(wait_until(function() return not reg:stale() end, 5), "lists the prefix and watches it")

check(reg:register("api", "127.0.0.1", 8001) == true, "register reports an added instance")
check(L.members(reg, "api") == "127.0.0.1:8001", "discover sees its own registration at once")
check(reg:pending() >= 1, "while the write to etcd is pending")
check(wait_until(function() return reg:pending() == 0 end, 3), "until the writer has put it")
local key = P .. "api/127.0.0.1:8001"
local got = wait_until(function() return etcdctl("get --prefix " .. P):find(key, 1, true) end, 3)
check(got, "the instance is visible to etcdctl get --prefix")
local value = etcdctl("get --print-value-only " .. key)
check(value:find('"host":"127.0.0.1"', 1, true) and value:find('"port":8001', 1, true)
  and value:find('"weight":1', 1, true), "its value is the instance as JSON", value)
local lease_of = function() return etcdctl("get -w json " .. key):match('"lease":(%d+)') end
local lease = lease_of()
check(lease ~= nil and #lease >= 16, "it is attached to a lease (an int64 beyond 2^53)", lease)

local stop = L.heartbeats(reg, "api", "127.0.0.1", 8001, 0.5)
fb.sleep(3) -- past the 2 s TTL: only keepalives hold it
check(lease_of() == lease, "heartbeats keep the same lease alive past its TTL (ids kept as strings)",
  tostring(lease_of()) .. " vs " .. lease)
stop()
reg:heartbeat("api", "127.0.0.1", 8001) -- the last one
local t0 = fb.now()
local gone, after = wait_until(function() return not etcdctl("get --prefix " .. P):find(key, 1, true) end, 6)
check(gone and after >= 1.9 and after <= 3, "without heartbeats it leaves etcd one TTL after the last",
  string.format("%s after %.2f s", gone and "gone" or "still there", after))
check(L.members(reg, "api") == "", "and discover", L.members(reg, "api"))
print(string.format("# deleted %.2f s after the last heartbeat (TTL 2 s)", after))

L.put_leased(P .. "api/10.0.0.5:9000", '{"host":"10.0.0.5","port":9000}', 30)
check(wait_until(function() return L.members(reg, "api") == "10.0.0.5:9000" end, 3),
  "an instance put by etcdctl with a lease appears in discover")
local other = L.put_leased(P .. "api/10.0.0.6:9000", "not json", 30)
check(wait_until(function() return #reg:discover("api") == 2 end, 3), "whatever its value")
etcdctl("lease revoke " .. other)
check(wait_until(function() return L.members(reg, "api") == "10.0.0.5:9000" end, 3),
  "revoking its lease removes it")

reg:register("api", "127.0.0.1", 8002)
local lb = fb.balancer(reg, "round_robin")
local seen = {}
for _ = 1, 4 do local i = lb:pick("api"); seen[i.port] = (seen[i.port] or 0) + 1 end
check(seen[8002] == 2 and seen[9000] == 2, "a balancer picks over etcd's and its own instances")
wait_until(function() return etcdctl("get --prefix " .. P):find("8002", 1, true) end, 3)
check(reg:deregister("api", "127.0.0.1", 8002) == true, "deregister reports it was there")
check(wait_until(function() return not etcdctl("get --prefix " .. P):find("8002", 1, true) end, 3),
  "deregister deletes the key in etcd")
check(L.members(reg, "api") == "10.0.0.5:9000", "and discover no longer has it")
check(reg:heartbeat_timeout() == 2, "heartbeat_timeout is the lease TTL")

reg:register("meta", "127.0.0.1", 8003, { weight = 3, zone = "eu-1a", meta = { version = "v2" } })
local mkey = P .. "meta/127.0.0.1:8003"
local mvalue = wait_until(function()
  local v = etcdctl("get --print-value-only " .. mkey)
  return v:find("weight", 1, true) and v
end, 3) or ""
check(mvalue:find('"weight":3', 1, true) and mvalue:find('"zone":"eu-1a"', 1, true)
  and mvalue:find('"version":"v2"', 1, true), "weight, zone and meta go to etcd", mvalue)
L.put_leased(P .. "meta/10.0.0.7:9000",
  '{"host":"10.0.0.7","port":9000,"weight":5,"zone":"us-2b","meta":{"tier":"gold"}}', 30)
local remote = wait_until(function()
  for _, i in ipairs(reg:discover("meta")) do if i.port == 9000 then return i end end
end, 3)
check(remote and remote.weight == 5 and remote.zone == "us-2b" and remote.meta
  and remote.meta.tier == "gold", "and come back from etcd into the instance views",
  remote and string.format("%s %s %s", tostring(remote.weight), tostring(remote.zone),
    tostring(remote.meta and remote.meta.tier)) or "not seen")
reg:close()
