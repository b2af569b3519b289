-- The registry's one lease: every own key on it, the lease revoked
-- behind the registry's back (everything comes back on a new one),
-- close() revoking it, and a process that stops keeping it alive
-- (SIGSTOP) or dies (SIGKILL): its keys go with the lease, within a TTL.
local fb = require "fusebox"
local L = dofile(arg[0]:gsub("[^/]*$", "") .. "lib.lua")
local check, wait_until, etcdctl = L.check, L.wait_until, L.etcdctl
local P, TTL, N = "/lease/", 3, 20

local reg = L.registry(P, TTL)
wait_until(function() return not reg:stale() end, 5)
local ports = {}
for i = 1, N do ports[i] = 8400 + i end
local running = true
fb.spawn(function()
  while running do
    for _, p in ipairs(ports) do reg:heartbeat("own", "127.0.0.1", p) end
    fb.sleep(0.5)
  end
end)
local function own_in_etcd()
  local n, leases = L.leases(P .. "own/")
  return n == N and L.only(leases)
end
local lease = wait_until(own_in_etcd, 5)
check(lease, "every own key is in etcd, all on one lease", select(2, L.leases(P .. "own/")))

-- The keys may be gone only briefly: the keeper's next keepalive finds
-- the lease gone and puts them all again, a few round trips later (and
-- etcdctl blocks the loop while it runs, so that keepalive may be due at
-- once). A 50 ms poll missed the gap once on a loaded machine; this one
-- looks every millisecond from before the revoke.
local saw_gap, watching = false, true
fb.spawn(function()
  while watching and not saw_gap do
    saw_gap = #reg:discover("own") < N
    fb.sleep(0.001)
  end
end)
etcdctl("lease revoke " .. L.hex(lease or "0"))
check(wait_until(function() return saw_gap end, 3),
  "the lease revoked behind the registry's back: the watch sees the keys go")
watching = false
local again, waited = wait_until(function()
  local l = own_in_etcd()
  return l and l ~= lease and #reg:discover("own") == N and l
end, 2 * TTL)
check(again, "every key comes back on a new lease, and into discover", select(2, L.leases(P .. "own/")))
print(string.format("# back %.2f s after the revoke (keepalive every %.1f s)", waited, TTL / 3))
-- the part that saw the revoke first (a put refused, or the keepalive)
-- says so until its next success, which may come just after the keys do
check(wait_until(function() return not reg:stale() end, TTL / 3 + 1), "and the registry is fresh",
  select(2, reg:stale()))

running = false
reg:close()
local gone
gone, waited = wait_until(function() return L.leases(P .. "own/") == 0 end, TTL)
check(gone and waited < 1.5, "close() revokes the lease: every own key leaves etcd at once",
  string.format("%d keys left after %.2f s", L.leases(P .. "own/"), waited))

-- Another process: its keepalive stopped (SIGSTOP), then it dies (SIGKILL).
local child = L.sh(string.format("%s/fusebox run %s %s %s %d %d >/dev/null 2>&1 & echo $!",
  os.getenv("FB_BUILD") or "build", arg[0]:gsub("[^/]*$", "") .. "child.lua", L.endpoint, L.ctl, N, TTL)):match("%d+")
local function child_keys() return (L.leases(P .. "child/")) end
check(wait_until(function() return child_keys() == N end, 10), "another process puts its keys")
L.sh("kill -STOP " .. child)
local t0 = fb.now()
gone, waited = wait_until(function() return child_keys() == 0 end, TTL + 2)
check(gone and waited <= TTL + 1, "its keepalive stopped (SIGSTOP): its keys go with the lease, within the TTL",
  string.format("%d keys after %.2f s", child_keys(), fb.now() - t0))
print(string.format("# gone %.2f s after SIGSTOP (TTL %d s: between %.1f and %d s after its last keepalive, + 0.5 s)",
  waited, TTL, TTL * 2 / 3, TTL))
L.sh("kill -CONT " .. child)
check(wait_until(function() return child_keys() == N end, 2 * TTL),
  "resumed (SIGCONT), it finds its lease gone and puts every key again on a new one")
L.sh("kill -KILL " .. child)
gone, waited = wait_until(function() return child_keys() == 0 end, TTL + 2)
check(gone and waited <= TTL + 1, "it dies (SIGKILL): its keys go with the lease, within the TTL",
  string.format("%d keys after %.2f s", child_keys(), waited))
print(string.format("# gone %.2f s after SIGKILL", waited))
