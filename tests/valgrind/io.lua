-- Real sockets under valgrind: every I/O path once, including the ones
-- that free memory late (timeouts, closes with operations in flight,
-- sockets collected unclosed).
local fb = require "fusebox"
local srv = assert(fb.http.serve { port = 0, handler = function(req)
  if req.path == "/slow" then fb.sleep(0.2) end
  return 200, { ["X-A"] = "b" }, req.body
end })
local url = "http://127.0.0.1:" .. srv:port()
assert(fb.http.request { url = url .. "/", method = "PUT", body = "x" } == 200)
assert(select(2, fb.http.request { url = url .. "/slow", timeout = 0.05 }) == "timeout")
assert(select(2, fb.http.request { url = "http://127.0.0.1:1/" }) == "connection refused")
local c = assert(fb.tcp.connect("127.0.0.1", srv:port()))
assert(select(2, c:read(0.01)) == "timeout")
fb.spawn(function() c:read() end)
fb.sleep(0.01)
c:close() -- wakes the reader
local api = assert(fb.serve_registry { port = 0 })
local base = "http://127.0.0.1:" .. api:port() .. "/v1/services"
assert(fb.http.request { url = base .. "/s/instances", method = "PUT", body = '{"host":"h","port":1}' } == 201)
assert(fb.http.request { url = base .. "/s/instances", method = "PUT", body = '{"host":' } == 400)
-- blocking queries: one left by its client, one ended by pipelining, one
-- still parked (a watched socket) when the server closes
local _, h = fb.http.request { url = base .. "/s" }
local poll = "GET /v1/services/s?index=" .. h["x-fusebox-index"] .. "&wait=10m HTTP/1.1\r\nHost: x\r\n\r\n"
local left = assert(fb.tcp.connect("127.0.0.1", api:port()))
left:write(poll)
fb.sleep(0.02)
left:close()
local piped = assert(fb.tcp.connect("127.0.0.1", api:port()))
piped:write(poll)
fb.sleep(0.02)
piped:write(poll)
assert(piped:read(1))
piped:close()
local parked = assert(fb.tcp.connect("127.0.0.1", api:port()))
parked:write(poll)
fb.export("reg", api.registry)
local m = assert(fb.serve_metrics { port = 0 })
assert(fb.http.request { url = "http://127.0.0.1:" .. m:port() .. "/metrics" } == 200)
local reg = fb.registry {}
reg:register("svc", "127.0.0.1", srv:port())
local hc = fb.health_check { registry = reg, service = "svc", type = "http", interval = 0.01 }
fb.sleep(0.05)
hc:stop()
api:close()
parked:close()
fb.sleep(0.25)
srv:close()
-- a socket dropped unclosed is closed by its __gc, freed by libuv later
assert(fb.tcp.connect("127.0.0.1", m:port()))
collectgarbage()
fb.sleep(0.01)
m:close()
