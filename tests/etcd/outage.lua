-- etcd dies and comes back, three ways: with its data, after compacting
-- the revision the watch needs, and with its data lost.
local fb = require "fusebox"
local L = dofile(arg[0]:gsub("[^/]*$", "") .. "lib.lua")
local check, wait_until, etcdctl, ctl = L.check, L.wait_until, L.etcdctl, L.ctl_run
local P = "/outage/"

local reg = L.registry(P, 3)
fb.export("outage", reg)
local function stale_metric()
  return fb.metrics():match('fusebox_registry_stale{registry="outage"} (%d)')
end
wait_until(function() return not reg:stale() end, 5)
local stop = L.heartbeats(reg, "api", "127.0.0.1", 8101, 0.5)
L.put_leased(P .. "api/10.1.0.1:9000", "{}", 60)
check(wait_until(function() return #reg:discover("api") == 2 end, 3), "sees its own and a remote instance")

ctl("stop")
local stale, waited = wait_until(function() return reg:stale() end, 10)
check(stale, "stale once etcd is gone")
print(string.format("# noticed after %.2f s", waited))
local _, why = reg:stale()
check(type(why) == "string" and why:find("etcd", 1, true), "stale() gives the reason", why)
check(stale_metric() == "1", "the metric fusebox_registry_stale says so", stale_metric())
fb.sleep(1)
check(L.members(reg, "api") == "10.1.0.1:9000,127.0.0.1:8101", "serves the last known view meanwhile")

ctl("start")
local fresh
fresh, waited = wait_until(function() return not reg:stale() end, 10)
check(fresh, "fresh again after etcd restarts")
check(stale_metric() == "0", "and so does the metric", stale_metric())
print(string.format("# recovered %.2f s after etcd was up", waited))
L.put_leased(P .. "api/10.1.0.2:9000", "{}", 60)
check(wait_until(function() return #reg:discover("api") == 3 end, 3), "the watch resumed: a new instance appears")
fb.sleep(0.3)
check(L.members(reg, "api") == "10.1.0.1:9000,10.1.0.2:9000,127.0.0.1:8101", "with nothing lost or twice",
  L.members(reg, "api"))
check(etcdctl("get --prefix --keys-only " .. P):find("8101", 1, true), "its own instance is still in etcd")

-- While fusebox cannot reach etcd, etcd changes and compacts away the
-- revisions its watch would resume from.
ctl("stop")
wait_until(function() return reg:stale() end, 10)
ctl("side")
L.put_leased(P .. "api/10.1.0.3:9000", "{}", 60)
etcdctl("del " .. P .. "api/10.1.0.2:9000")
local rev = etcdctl("get -w json " .. P):match('"revision":(%d+)')
etcdctl("compact " .. rev)
ctl("stop")
ctl("start")
check(wait_until(function() return L.members(reg, "api") == "10.1.0.1:9000,10.1.0.3:9000,127.0.0.1:8101" end, 10),
  "after a compaction it lists again: changes made meanwhile are seen", L.members(reg, "api"))

-- etcd comes back empty: a new cluster, every lease gone.
ctl("stop")
wait_until(function() return reg:stale() end, 10)
ctl("wipe")
ctl("start")
check(wait_until(function() return etcdctl("get --prefix --keys-only " .. P):find("8101", 1, true) end, 10),
  "re-registers its own instance in a new cluster")
check(wait_until(function() return L.members(reg, "api") == "127.0.0.1:8101" end, 5),
  "and drops what the old cluster had", L.members(reg, "api"))
-- the part that met the outage last says so until its next success,
-- which may come just after the keys are back (the keeper's keepalive)
check(wait_until(function() return not reg:stale() end, 5), "fresh", select(2, reg:stale()))
stop()
reg:close()
