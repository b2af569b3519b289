-- The etcd backend over TLS with a client certificate (run by tests/tls.t
-- as `fusebox run etcd.lua ENDPOINT PKI_DIR`): writes, the watch, and a
-- registry without a certificate that stays stale saying why. TAP lines
-- "ok - ..." without numbers.
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
local reg = fb.registry { backend = "etcd", endpoints = { endpoint }, prefix = "/tls/", heartbeat_timeout = 5, tls = tls }
local other = fb.registry { backend = "etcd", endpoints = { endpoint }, prefix = "/tls/", heartbeat_timeout = 5, tls = tls }
check(wait_until(function() return not reg:stale() end, 10), "an https:// etcd with a client certificate lists", select(2, reg:stale()))
reg:register("api", "127.0.0.1", 9001)
check(wait_until(function() return reg:pending() == 0 end, 10), "a registration reaches etcd over TLS", select(2, reg:stale()))
check(wait_until(function() return #other:discover("api") == 1 end, 10), "another registry's watch over TLS sees it")
reg:heartbeat("api", "127.0.0.1", 9001)
check(wait_until(function() return reg:pending() == 0 end, 10), "a heartbeat (lease keepalive) over TLS")
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
other:close()
reg:close()
