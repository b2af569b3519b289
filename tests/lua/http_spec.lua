-- fb.http against real sockets on 127.0.0.1: backends that refuse, hang,
-- reset, answer slowly, with 5xx or with garbage; the server's limits.
local fb = require "fusebox"

local function run(fn) fb.run(fn) end

local function url(srv, path) return "http://127.0.0.1:" .. srv:port() .. (path or "/") end

-- A raw TCP backend: fn(sock) decides what the client gets.
local function raw(fn) return assert(fb.tcp.listen { port = 0, handler = fn }) end

-- Sends raw bytes to srv and reads until it closes.
local function exchange(srv, bytes)
  local c = assert(fb.tcp.connect("127.0.0.1", srv:port()))
  c:write(bytes)
  local out = {}
  while true do
    local d = c:read(2)
    if not d then break end
    out[#out + 1] = d
  end
  c:close()
  return table.concat(out)
end

describe("fb.http client", function()
  it("sends method, headers and body and returns status, headers, body", function()
    local got, seen
    run(function()
      local srv = assert(fb.http.serve { port = 0, handler = function(req)
        seen = req
        return 201, { ["X-Answer"] = "42" }, "made " .. req.body
      end })
      got = { fb.http.request { method = "POST", url = url(srv, "/items?x=1"),
        headers = { ["X-Test"] = "yes" }, body = "thing" } }
      srv:close()
    end)
    assert.are.equal(201, got[1])
    assert.are.equal("42", got[2]["x-answer"])
    assert.are.equal("made thing", got[3])
    assert.are.equal("POST", seen.method)
    assert.are.equal("/items", seen.path)
    assert.are.equal("x=1", seen.query)
    assert.are.equal("yes", seen.headers["x-test"])
  end)

  it("addresses an instance view with a path", function()
    local status, body
    run(function()
      local srv = assert(fb.http.serve { port = 0, handler = function(req) return 200, nil, req.path end })
      status, _, body = fb.http.request { instance = { host = "127.0.0.1", port = srv:port() }, path = "/users/1" }
      srv:close()
    end)
    assert.are.equal(200, status)
    assert.are.equal("/users/1", body)
  end)

  it("returns 5xx answers as answers, not failures", function()
    local status, body
    run(function()
      local srv = assert(fb.http.serve { port = 0, handler = function() return 503, nil, "busy" end })
      status, _, body = fb.http.request { url = url(srv) }
      srv:close()
    end)
    assert.are.equal(503, status)
    assert.are.equal("busy", body)
  end)

  it("fails with a value when the backend refuses", function()
    local s, err
    run(function()
      local srv = raw(function(c) c:close() end)
      local port = srv:port()
      srv:close()
      s, err = fb.http.request { url = "http://127.0.0.1:" .. port .. "/" }
    end)
    assert.is_nil(s)
    assert.are.equal("connection refused", err)
  end)

  it("times out on a backend that accepts and never answers", function()
    local s, err, held
    run(function()
      local srv = raw(function(c) held = c; c:read(5); c:read(5); c:close() end)
      s, err = fb.http.request { url = url(srv), timeout = 0.1 }
      held:close()
      srv:close()
    end)
    assert.is_nil(s)
    assert.are.equal("timeout", err)
  end)

  it("waits for a slow backend within the timeout, not beyond", function()
    local fast, slow, err
    run(function()
      local srv = assert(fb.http.serve { port = 0, handler = function() fb.sleep(0.2); return 200, nil, "ok" end })
      fast = fb.http.request { url = url(srv), timeout = 2 }
      slow, err = fb.http.request { url = url(srv), timeout = 0.05 }
      fb.sleep(0.3) -- let the handler finish before closing
      srv:close()
    end)
    assert.are.equal(200, fast)
    assert.is_nil(slow)
    assert.are.equal("timeout", err)
  end)

  it("fails with a value when the backend resets or closes mid-answer", function()
    local r1, r2
    run(function()
      local srv = raw(function(c) c:close() end) -- unread request: the kernel resets
      r1 = { fb.http.request { url = url(srv) } }
      srv:close()
      srv = raw(function(c) c:read(2); c:write("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"); c:close() end)
      r2 = { fb.http.request { url = url(srv) } }
      srv:close()
    end)
    assert.is_nil(r1[1])
    assert.is_string(r1[2])
    assert.is_nil(r2[1])
    assert.is_string(r2[2])
  end)

  it("rejects a garbage answer", function()
    local s, err
    run(function()
      local srv = raw(function(c) c:read(2); c:write("HELLO THERE\r\n\r\n"); c:close() end)
      s, err = fb.http.request { url = url(srv) }
      srv:close()
    end)
    assert.is_nil(s)
    assert.is_string(err)
  end)

  it("reads a body delimited by the end of the connection", function()
    local status, body
    run(function()
      local srv = raw(function(c) c:read(2); c:write("HTTP/1.0 200 OK\r\n\r\nuntil the end"); c:close() end)
      status, _, body = fb.http.request { url = url(srv) }
      srv:close()
    end)
    assert.are.equal(200, status)
    assert.are.equal("until the end", body)
  end)

  it("rejects bad arguments at the caller's line", function()
    run(function()
      assert.has_error(function() fb.http.request { url = "ftp://x/" } end,
        "bad argument #1 to 'request' (url must be http://host[:port]/path, got 'ftp://x/')")
      assert.has_error(function() fb.http.request { url = "http://x/", tiemout = 1 } end,
        "bad argument #1 to 'request' (unknown option 'tiemout')")
      assert.has_error(function() fb.http.request { path = "/" } end,
        "bad argument #1 to 'request' (url or instance ({host=, port=}) expected)")
    end)
  end)
end)

describe("fb.http.serve", function()
  it("answers pipelined requests in order on one connection", function()
    local out
    run(function()
      local srv = assert(fb.http.serve { port = 0, handler = function(req) return 200, nil, req.path end })
      out = exchange(srv, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      srv:close()
    end)
    local a, b = out:find("\r\n\r\n/a", 1, true), out:find("\r\n\r\n/b", 1, true)
    assert.is_truthy(a and b and a < b)
  end)

  it("answers malformed requests with 400, big bodies with 413, errors with 500", function()
    local bad, big, boom
    run(function()
      local srv = assert(fb.http.serve { port = 0, max_body = 10, handler = function(req)
        if req.path == "/boom" then error("handler bug") end
        return 200, nil, "ok"
      end })
      bad = exchange(srv, "NOT HTTP AT ALL\r\n\r\n")
      big = exchange(srv, "POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n01234567890")
      boom = exchange(srv, "GET /boom HTTP/1.1\r\nConnection: close\r\n\r\n")
      srv:close()
    end)
    assert.matches("^HTTP/1.1 400 ", bad)
    assert.matches('{"error":', bad, 1, true)
    assert.matches("^HTTP/1.1 413 ", big)
    assert.matches("^HTTP/1.1 500 ", boom)
  end)

  it("closes a connection that sends nothing within the read timeout", function()
    local got
    run(function()
      local srv = assert(fb.http.serve { port = 0, read_timeout = 0.05, handler = function() return 200 end })
      local c = assert(fb.tcp.connect("127.0.0.1", srv:port()))
      got = { c:read(2) }
      c:close()
      srv:close()
    end)
    assert.are.same({ nil, "closed" }, got)
  end)

  it("serves others while a client trickles a request", function()
    local status
    run(function()
      local srv = assert(fb.http.serve { port = 0, handler = function() return 200, nil, "ok" end })
      local slow = assert(fb.tcp.connect("127.0.0.1", srv:port()))
      slow:write("GET / HT")
      status = fb.http.request { url = url(srv), timeout = 1 }
      slow:close()
      srv:close()
    end)
    assert.are.equal(200, status)
  end)

  it("closes open keep-alive connections when closed", function()
    local got
    run(function()
      local srv = assert(fb.http.serve { port = 0, handler = function() return 200, nil, "ok" end })
      local c = assert(fb.tcp.connect("127.0.0.1", srv:port()))
      c:write("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
      local first = c:read(2)
      assert.matches("^HTTP/1.1 200", first)
      srv:close()
      got = { c:read(2) }
      c:close()
    end)
    assert.are.same({ nil, "closed" }, got)
  end)
end)
