-- The etcd backend over TLS with a client certificate (run by tests/tls.t
-- as `fusebox run etcd.lua ENDPOINT PKI_DIR`): writes, the watch, and a
-- registry without a certificate that stays stale saying why, close()
-- revoking a lease. TAP lines "ok - ..." without numbers.
local fb = require "fusebox"
local endpoint, pki = arg[1], arg[2]
local function check(cond, desc, detail)
  print((cond and "ok" or "not ok") .. " - " .. desc)
  if not cond and detail ~= nil then print("# " .. tostring(detail)) end
end
local function wait_until(fn, timeout)
  local t0 = fb.now()
  while fb.now() - t0 < timeout do
    if fn() then return true end
    fb.sleep(0.05)
  end
  return fn()
end
local tls = { ca_file = pki .. "/ca.pem", cert_file = pki .. "/client.pem", key_file = pki .. "/client.key" }
local reg = fb.registry { backend = "etcd", endpoints = { endpoint }, prefix = "/tls/", heartbeat_timeout = 2, tls = tls }
local other = fb.registry { backend = "etcd", endpoints = { endpoint }, prefix = "/tls/", heartbeat_timeout = 5, tls = tls }
check(wait_until(function() return not reg:stale() end, 10), "an https:// etcd with a client certificate lists", select(2, reg:stale()))
reg:register("api", "127.0.0.1", 9001)
check(wait_until(function() return reg:pending() == 0 end, 10), "a registration reaches etcd over TLS", select(2, reg:stale()))
check(wait_until(function() return #other:discover("api") == 1 end, 10), "another registry's watch over TLS sees it")
-- past the 2 s TTL: the lease's keepalives over TLS hold the key (it
-- heartbeats on to the end)
local beating = true
fb.spawn(function()
  while beating do
    reg:heartbeat("api", "127.0.0.1", 9001)
    fb.sleep(0.5)
  end
end)
local held = true
for _ = 1, 6 do
  fb.sleep(0.5)
  held = held and #other:discover("api") == 1
end
check(held and not reg:stale(), "heartbeats past the lease's TTL: its keepalives over TLS hold the key", select(2, reg:stale()))
local bare = fb.registry { backend = "etcd", endpoints = { endpoint }, prefix = "/tls/", heartbeat_timeout = 5,
  tls = { ca_file = tls.ca_file }, timeout = 1 }
fb.sleep(1)
local stale, why = bare:stale()
-- etcd (Go) answers TLS 1.3 without a client certificate with "bad certificate"
check(stale and tostring(why):find("^etcd kv/range: tls: .*alert.*certificate") ~= nil,
  "without a client certificate it stays stale, saying why", why)
bare:close()
local plain_ok, plain_err = pcall(fb.registry, { backend = "etcd", endpoints = { "http://127.0.0.1:1" }, tls = tls })
check(not plain_ok and tostring(plain_err):find("tls is for https:// endpoints", 1, true) ~= nil,
  "tls with only http:// endpoints is refused", plain_err)
other:register("api", "127.0.0.1", 9002)
check(wait_until(function() return #reg:discover("api") == 2 end, 10), "a second registry's instance arrives")
other:close()
check(wait_until(function() return #reg:discover("api") == 1 end, 3), "its close() revokes its lease over TLS: gone at once")
beating = false
-- reg stays open: its key stays in etcd (its lease outlives the process
-- by 4/3 s or more) for the etcdctl check of tests/tls.t that follows.
