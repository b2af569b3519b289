-- tests/bench/tls.sh: TLS against plain on loopback; prints one line a
-- figure, the median of the rounds, in microseconds per operation.
local fb = require "fusebox"
local pki, rounds = arg[1], tonumber(arg[2]) or 5
local tls_server = { cert_file = pki .. "/server.pem", key_file = pki .. "/server.key" }
local tls_client = { ca_file = pki .. "/ca.pem" }
local function handler(req) return 200, {}, "ok" end
local plain = assert(fb.http.serve { port = 0, handler = handler })
local secure = assert(fb.http.serve { port = 0, handler = handler, tls = tls_server })

-- fn(n) timed rounds times after a warm-up (the JIT's traces, the
-- kernel's buffers), -> the median microseconds per operation.
local function median(fn, n)
  local t = {}
  fn(math.ceil(n / 10))
  for r = 1, rounds do
    local t0 = fb.now()
    fn(n)
    t[r] = (fb.now() - t0) / n * 1e6
  end
  table.sort(t)
  return t[math.floor((rounds + 1) / 2)]
end

local function connects(port, tls)
  return function(n)
    for _ = 1, n do
      local s = assert(fb.tcp.connect("127.0.0.1", port, { tls = tls }))
      s:close()
    end
  end
end

local function requests(scheme, port, tls)
  local url = scheme .. "://localhost:" .. port .. "/"
  return function(n)
    for _ = 1, n do assert(fb.http.request { url = url, tls = tls } == 200) end
  end
end

local REQ = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
local function kept(port, tls)
  local s = assert(fb.tcp.connect("127.0.0.1", port, { tls = tls }))
  return function(n)
    for _ = 1, n do
      assert(s:write(REQ))
      assert(s:read(2):find("\r\n\r\nok$"))
    end
  end
end

local c_plain, c_tls = median(connects(plain:port()), 2000), median(connects(secure:port(), tls_client), 300)
print(string.format("tls: connect + close, plain: %.1f us", c_plain))
print(string.format("tls: connect + handshake + close: %.1f us (handshake %.1f us)", c_tls, c_tls - c_plain))
local r_plain = median(requests("http", plain:port()), 2000)
local r_tls = median(requests("https", secure:port(), tls_client), 300)
print(string.format("tls: http.request, a new connection each: plain %.1f us, https %.1f us (%.1fx)", r_plain, r_tls, r_tls / r_plain))
local k_plain, k_tls = median(kept(plain:port()), 20000), median(kept(secure:port(), tls_client), 20000)
print(string.format("tls: request on one kept connection: plain %.1f us, tls %.1f us (+%.1f us)", k_plain, k_tls, k_tls - k_plain))
plain:close()
secure:close()
