-- A 3-member etcd cluster loses the member a registry talks to, its
-- leader: the registry moves to another endpoint, its lease lives on, new
-- registrations and the watch carry on, nothing lost or twice.
-- args: ENDPOINTS (comma-separated, member order) CTL (cluster.sh)
local fb = require "fusebox"
local L = dofile(arg[0]:gsub("[^/]*$", "") .. "lib.lua")
local check, wait_until, etcdctl, ctl, members = L.check, L.wait_until, L.etcdctl, L.ctl_run, L.members
local P, TTL = "/cluster/", 2

local eps = {}
for ep in arg[1]:gmatch("[^,]+") do eps[#eps + 1] = ep end
local leader = wait_until(function() return ctl("leader"):match("http://[%d.]+:%d+") end, 5)
check(leader, "the cluster has a leader")
-- A talks to the leader first, B to the two others.
local first, others = nil, {}
for i, ep in ipairs(eps) do
  if ep == leader then first = i else others[#others + 1] = ep end
end
local function registry(endpoints)
  return fb.registry { backend = "etcd", endpoints = endpoints, prefix = P, heartbeat_timeout = TTL }
end
local a = registry { leader, others[1], others[2] }
local b = registry { others[1], others[2], leader }
check(wait_until(function() return not a:stale() and not b:stale() end, 5), "both registries list and watch")
local stop_a = L.heartbeats(a, "api", "127.0.0.1", 8301, 0.5)
local stop_b = L.heartbeats(b, "api", "127.0.0.1", 8302, 0.5)
local both = "127.0.0.1:8301,127.0.0.1:8302"
check(wait_until(function() return members(a, "api") == both and members(b, "api") == both end, 5),
  "each sees the other's instance", members(a, "api") .. " / " .. members(b, "api"))
local key = P .. "api/127.0.0.1:8301"
local function lease_of(k) return etcdctl("get -w json " .. k):match('"lease":(%d+)') end
local lease = lease_of(key)
-- B's instance as A's cache holds it
local function id_of_b()
  for _, v in ipairs(a:discover("api")) do
    if v.port == 8302 then return v.id end
  end
end
local id_b = id_of_b()

-- A's staleness, sampled every 10 ms: when it started and ended.
local sampling, stale_first, stale_last = true, nil, nil
fb.spawn(function()
  while sampling do
    if a:stale() then
      stale_first, stale_last = stale_first or fb.now(), fb.now()
    end
    fb.sleep(0.01)
  end
end)

-- Around the kill B registers a churn instance every 0.1 s, keeping the
-- odd ports and deregistering each even one 0.1 s later; A counts how
-- often each appears in its view.
local appeared, shown, churn_done = {}, {}, false
fb.spawn(function()
  while not churn_done do
    local now_in = {}
    for _, v in ipairs(a:discover("churn")) do
      now_in[v.port] = true
      if not shown[v.port] then appeared[v.port] = (appeared[v.port] or 0) + 1 end
    end
    shown = now_in
    fb.sleep(0.01)
  end
end)
local kept = {}
fb.spawn(function()
  for port = 9001, 9017 do
    if port % 2 == 1 then kept[#kept + 1] = port end
    if port % 2 == 1 and port > 9001 then b:deregister("churn", "127.0.0.1", port - 1) end
    b:register("churn", "127.0.0.1", port)
    for _, p in ipairs(kept) do b:heartbeat("churn", "127.0.0.1", p) end
    fb.sleep(0.1)
  end
  while not churn_done do
    for _, p in ipairs(kept) do b:heartbeat("churn", "127.0.0.1", p) end
    fb.sleep(0.5)
  end
end)

fb.sleep(0.5)
-- In the background: a SIGKILL closes the member's sockets at once, but
-- its pid may linger until init reaps it, and io.popen stops the loop.
ctl("kill " .. first .. " >/dev/null 2>&1 &")
local t_kill = fb.now()
print(string.format("# killed member %d: the leader, A's first endpoint", first))
check(wait_until(function() return stale_first end, 5), "A notices: its watch on that member broke")
a:heartbeat("api", "127.0.0.1", 8301)
local t_beat = fb.now()
check(wait_until(function() return not a:stale() and a:pending() == 0 end, 8),
  "A moves to another endpoint: fresh, and a heartbeat after the kill reached etcd")
print(string.format("# A was stale from %.2f s to %.2f s after the kill; the heartbeat sent at %.2f s"
  .. " was in etcd at %.2f s", stale_first - t_kill, stale_last - t_kill, t_beat - t_kill,
  fb.now() - t_kill))
fb.sleep(math.max(0, t_kill + TTL + 1 - fb.now())) -- past the TTL: only keepalives hold the leases
churn_done = true
check(lease_of(key) == lease, "the heartbeats kept the same lease alive past its TTL", tostring(lease_of(key)))
check(etcdctl("get --prefix --keys-only " .. P .. "api/"):find("8302", 1, true), "and B's instance too")

a:register("api", "127.0.0.1", 8303)
b:register("api", "127.0.0.1", 8304)
local all = "127.0.0.1:8301,127.0.0.1:8302,127.0.0.1:8303,127.0.0.1:8304"
check(wait_until(function() return members(a, "api") == all and members(b, "api") == all end, 5),
  "registrations after the kill reach the other registry", members(a, "api") .. " / " .. members(b, "api"))
local in_etcd = etcdctl("get --prefix --keys-only " .. P .. "api/")
check(in_etcd:find("8303", 1, true) and in_etcd:find("8304", 1, true), "and etcd", in_etcd)

local twice = {}
for port = 9001, 9017 do
  local n = appeared[port] or 0
  if port % 2 == 1 and n ~= 1 or n > 1 then twice[#twice + 1] = port .. "x" .. n end
end
local want = {}
for _, p in ipairs(kept) do want[#want + 1] = "127.0.0.1:" .. p end
local churn = members(a, "churn")
check(churn == table.concat(want, ","), "the watch resumed with nothing lost", churn)
check(#twice == 0, "and nothing twice: each kept instance appeared once, none came back",
  table.concat(twice, " "))
check(id_of_b() == id_b, "B's instance stayed in A's cache throughout (same id)")
sampling = false
stop_a()
stop_b()
a:close()
b:close()
