-- TLS under valgrind: every path of a session once, including the ones
-- that free memory late: a handshake that fails, one that times out, one
-- the server closes under it, a TLS socket collected unclosed.
local fb = require "fusebox"
local dir = os.tmpname()
os.remove(dir)
assert(os.execute("sh tests/tls/mkcerts.sh " .. dir) == 0)
local function pem(n) return dir .. "/" .. n end
local ca = { ca_file = pem "ca.pem" }
local mtls = { ca_file = pem "ca.pem", cert_file = pem "client.pem", key_file = pem "client.key" }
local srv = assert(fb.http.serve { port = 0,
  tls = { cert_file = pem "server.pem", key_file = pem "server.key", ca_file = pem "ca.pem" },
  handler = function(req, sock) return 200, {}, sock:tls().peer .. " " .. req.body end })
local url = "https://localhost:" .. srv:port() .. "/"
local status, _, body = fb.http.request { url = url, method = "PUT", body = string.rep("x", 100000), tls = mtls }
assert(status == 200 and #body == 100000 + #"CN=fusebox-client ", tostring(status))
assert(select(2, fb.http.request { url = url, tls = ca }) == "tls: tlsv13 alert certificate required")
assert(select(2, fb.http.request { url = url }):find("^certificate verify failed"))
local mute = assert(fb.tcp.listen { port = 0, handler = function(s) s:read(1); fb.sleep(0.3); s:close() end })
assert(select(2, fb.tcp.connect("127.0.0.1", mute:port(),
  { tls = { ca_file = ca.ca_file, handshake_timeout = 0.05 } })) == "tls handshake timeout")
-- a handshake in flight when the server closes: the client sees it end
local waiting = assert(fb.tcp.listen { port = 0, handler = function(s) s:read(1); s:close() end })
assert(select(2, fb.tcp.connect("127.0.0.1", waiting:port(), { tls = ca })) == "tls handshake failed: closed")
local kept = assert(fb.tcp.connect("127.0.0.1", srv:port(), { tls = mtls }))
assert(kept:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
assert(kept:read(2):find("^HTTP/1.1 200"))
kept = nil -- collected unclosed
collectgarbage()
srv:close()
mute:close()
waiting:close()
os.execute("rm -rf " .. dir)
