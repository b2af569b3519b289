-- fb.http's connection pool against backends on 127.0.0.1 that count
-- the connections they accept: reuse, the retry-once rule, Connection:
-- close, the pool's limits, and hostile servers that must not poison it.
local fb = require "fusebox"

local function run(fn) fb.run(fn) end

-- A keep-alive backend written on fb.tcp, so each test decides what the
-- client gets. answer(n, req, sock, conn) -> the bytes to send for the
-- n-th request (counted over all connections) on connection conn (1, 2,
-- ...), or nil to close without answering; req is the request's text up
-- to its blank line (bodies are read by Content-Length). srv.accepted,
-- srv.requests, srv.seen[n] = req; srv.closed_by_peer counts the
-- connections the client closed.
local function backend(answer)
  local srv = { accepted = 0, requests = 0, seen = {}, closed_by_peer = 0, socks = {} }
  srv.listener = assert(fb.tcp.listen { port = 0, handler = function(sock)
    srv.accepted = srv.accepted + 1
    srv.socks[sock] = true
    local conn, buf = srv.accepted, ""
    while true do
      local e = buf:find("\r\n\r\n", 1, true)
      if e then
        local head = buf:sub(1, e + 3)
        local len = tonumber(head:lower():match("content%-length: *(%d+)")) or 0
        if #buf >= e + 3 + len then
          buf = buf:sub(e + 4 + len)
          srv.requests = srv.requests + 1
          srv.seen[srv.requests] = head
          local out = answer(srv.requests, head, sock, conn)
          if out == nil then break end
          if out ~= "" and not sock:write(out, 2) then break end
          e = nil
        end
      end
      if not e then
        local data = sock:read(5)
        if not data then srv.closed_by_peer = srv.closed_by_peer + 1; break end
        buf = buf .. data
      end
    end
    sock:close()
  end })
  srv.port = srv.listener:port()
  srv.url = "http://127.0.0.1:" .. srv.port .. "/"
  function srv.close() -- and every connection it accepted
    srv.listener:close()
    for sock in pairs(srv.socks) do sock:close() end
  end
  return srv
end

local function ok_response(body, extra)
  body = body or "ok"
  return "HTTP/1.1 200 OK\r\n" .. (extra or "") .. "Content-Length: " .. #body .. "\r\n\r\n" .. body
end

local function always_ok() return ok_response() end

describe("fb.http connection pool", function()
  it("carries 100 sequential requests on one connection", function()
    local srv, statuses, stats = nil, {}, nil
    run(function()
      srv = backend(function(n) return ok_response("r" .. n) end)
      local p = fb.http.pool {}
      for i = 1, 100 do
        local status, _, body = fb.http.request { url = srv.url, pool = p }
        statuses[i] = status == 200 and body == "r" .. i
      end
      stats = p:stats()
      p:close()
      srv.close()
    end)
    for i = 1, 100 do assert.is_true(statuses[i], "request " .. i) end
    assert.are.equal(100, srv.requests)
    assert.are.equal(1, srv.accepted)
    assert.are.equal(1, stats.opened)
    assert.are.equal(99, stats.reused)
    assert.is_nil(srv.seen[1]:lower():find("connection: close", 1, true))
  end)

  it("parses each response on a reused connection as its own: HEAD, limits and trailers do not carry over", function()
    local srv, got, stats = nil, {}, nil
    local answers = {
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n3\r\nabc\r\n0\r\nX-T: t\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-B: 2\r\n\r\n", -- the answer to a HEAD: no body follows
      ok_response("12345"),
      ok_response("0123456789"), -- over this request's max_body: refused, the connection closed
      ok_response("after"),
    }
    run(function()
      srv = backend(function(n) return answers[n] end)
      local p = fb.http.pool {}
      local function req(method, max_body)
        local status, headers, body = fb.http.request { url = srv.url, pool = p, method = method, max_body = max_body }
        if not status then got[#got + 1] = { status, headers }; return end
        got[#got + 1] = { status, headers["x-a"] or headers["x-b"] or headers["x-t"] or "-", body }
      end
      req("GET"); req("HEAD"); req("GET", 5); req("GET", 5); req("GET")
      stats = p:stats()
      p:close()
      srv.close()
    end)
    assert.are.same({ 200, "1", "abc" }, got[1])
    assert.are.same({ 200, "2", "" }, got[2])
    assert.are.same({ 200, "-", "12345" }, got[3])
    assert.are.same({ nil, "body too large (limit 5 bytes)" }, got[4])
    assert.are.same({ 200, "-", "after" }, got[5])
    assert.are.equal(2, srv.accepted) -- the refused response's connection was not reused
    assert.are.same({ 2, 3 }, { stats.opened, stats.reused })
  end)

  it("uses the default pool when a request names none", function()
    local srv
    run(function()
      srv = backend(always_ok)
      for _ = 1, 10 do assert.are.equal(200, fb.http.request { url = srv.url }) end
      srv.close()
    end)
    assert.are.equal(1, srv.accepted)
    assert.are.equal(10, srv.requests)
  end)

  it("opens a new connection per request with pool = false, and asks the server to close it", function()
    local srv
    run(function()
      srv = backend(always_ok)
      for _ = 1, 3 do assert.are.equal(200, fb.http.request { url = srv.url, pool = false }) end
      srv.close()
    end)
    assert.are.equal(3, srv.accepted)
    assert.truthy(srv.seen[1]:find("Connection: close\r\n", 1, true))
  end)

  describe("retry once", function()
    -- The first connection answers its first request, then closes on the
    -- next without answering: a server that closed an idle connection
    -- just as the client reused it.
    local function closes_reused()
      return backend(function(n, _, _, conn)
        if conn == 1 and n > 1 then return nil end
        return ok_response("n" .. n)
      end)
    end

    for _, method in ipairs { "GET", "HEAD", "PUT", "DELETE", "OPTIONS" } do
      it("retries an idempotent " .. method .. " on a new connection", function()
        local srv, got, stats
        run(function()
          srv = closes_reused()
          local p = fb.http.pool {}
          assert.are.equal(200, fb.http.request { url = srv.url, pool = p })
          got = { fb.http.request { method = method, url = srv.url, pool = p } }
          stats = p:stats()
          p:close()
          srv.close()
        end)
        assert.are.equal(200, got[1])
        assert.are.equal(2, srv.accepted)
        assert.are.equal(3, srv.requests) -- the lost one and its retry
        assert.truthy(srv.seen[3]:find("^" .. method .. " "))
        assert.are.equal(1, stats.retried)
      end)
    end

    it("does not retry a POST: the server may have acted on it", function()
      local srv, got, stats
      run(function()
        srv = closes_reused()
        local p = fb.http.pool {}
        assert.are.equal(200, fb.http.request { url = srv.url, pool = p })
        got = { fb.http.request { method = "POST", url = srv.url, body = "x", pool = p } }
        stats = p:stats()
        p:close()
        srv.close()
      end)
      assert.are.same({ nil, "closed" }, got)
      assert.are.equal(1, srv.accepted)
      assert.are.equal(2, srv.requests) -- sent once
      assert.are.equal(0, stats.retried)
    end)

    it("retries once only: a second closed connection is the answer", function()
      local srv, got
      run(function()
        srv = backend(function(n, _, _, conn)
          if conn == 1 and n == 1 then return ok_response() end
          return nil -- every later request: closed unanswered
        end)
        local p = fb.http.pool {}
        assert.are.equal(200, fb.http.request { url = srv.url, pool = p })
        got = { fb.http.request { url = srv.url, pool = p } }
        p:close()
        srv.close()
      end)
      assert.are.same({ nil, "closed" }, got)
      assert.are.equal(2, srv.accepted)
      assert.are.equal(3, srv.requests)
    end)

    it("does not retry once a byte of the response has arrived", function()
      local srv, got
      run(function()
        srv = backend(function(n, _, sock)
          if n == 1 then return ok_response() end
          sock:write("HTTP/1.1 200 OK\r\nContent-Le", 2)
          return nil
        end)
        local p = fb.http.pool {}
        assert.are.equal(200, fb.http.request { url = srv.url, pool = p })
        got = { fb.http.request { url = srv.url, pool = p } }
        p:close()
        srv.close()
      end)
      assert.is_nil(got[1])
      assert.are.equal(1, srv.accepted)
      assert.are.equal(2, srv.requests)
    end)

    it("does not retry on a new connection that fails", function()
      local srv, got
      run(function()
        srv = backend(function() return nil end)
        got = { fb.http.request { url = srv.url, pool = fb.http.pool {} } }
        srv.close()
      end)
      assert.are.same({ nil, "closed" }, got)
      assert.are.equal(1, srv.requests)
    end)

    it("never hands out a connection the server closed while it idled, POST included", function()
      local srv, got, stats
      run(function()
        srv = backend(function(_, _, sock, conn)
          if conn == 1 then
            fb.spawn(function() fb.sleep(0.05); sock:close() end) -- an idle timeout of 50 ms
          end
          return ok_response()
        end)
        local p = fb.http.pool {}
        assert.are.equal(200, fb.http.request { url = srv.url, pool = p })
        fb.sleep(0.1)
        got = { fb.http.request { method = "POST", url = srv.url, body = "x", pool = p } }
        stats = p:stats()
        p:close()
        srv.close()
      end)
      assert.are.equal(200, got[1])
      assert.are.equal(2, srv.accepted)
      assert.are.equal(2, srv.requests)
      assert.are.equal(0, stats.retried)
      assert.are.equal(0, stats.reused)
    end)
  end)

  describe("Connection: close and HTTP/1.0", function()
    local function reuse_count(response, headers)
      local srv
      run(function()
        srv = backend(function() return response end)
        local p = fb.http.pool {}
        for _ = 1, 3 do assert.are.equal(200, fb.http.request { url = srv.url, pool = p, headers = headers }) end
        p:close()
        srv.close()
      end)
      return srv.accepted, srv
    end

    it("does not reuse a connection the server said it closes (and kept open)", function()
      assert.are.equal(3, reuse_count(ok_response("ok", "Connection: close\r\n")))
    end)

    it("does not reuse a connection the caller asked to close, and says so", function()
      local accepted, srv = reuse_count(ok_response(), { Connection = "close" })
      assert.are.equal(3, accepted)
      assert.truthy(srv.seen[1]:find("Connection: close\r\n", 1, true))
    end)

    it("does not reuse an HTTP/1.0 connection without keep-alive", function()
      assert.are.equal(3, reuse_count("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    end)

    it("reuses an HTTP/1.0 connection the server keeps alive", function()
      assert.are.equal(1, reuse_count("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok"))
    end)

    it("does not reuse a connection whose response ended with the stream", function()
      local srv, got
      run(function()
        srv = backend(function(_, _, sock)
          sock:write("HTTP/1.1 200 OK\r\n\r\nto the end", 2)
          return nil
        end)
        local p = fb.http.pool {}
        got = { fb.http.request { url = srv.url, pool = p } }
        got[4] = p:stats().idle
        srv.close()
      end)
      assert.are.equal(200, got[1])
      assert.are.equal("to the end", got[3])
      assert.are.equal(0, got[4])
    end)
  end)

  describe("limits", function()
    it("keeps at most max_idle_per_host idle connections per host", function()
      local srv, idle
      run(function()
        srv = backend(function() fb.sleep(0.02); return ok_response() end)
        local p = fb.http.pool { max_idle_per_host = 2 }
        local left = 5
        local me = coroutine.running()
        for _ = 1, 5 do
          fb.spawn(function()
            assert.are.equal(200, fb.http.request { url = srv.url, pool = p })
            left = left - 1
            if left == 0 then fb.wake(me) end
          end)
        end
        fb.wait("five requests", 5)
        idle = p:stats().idle
        fb.sleep(0.02)
        p:close()
        srv.close()
      end)
      assert.are.equal(5, srv.accepted)
      assert.are.equal(2, idle)
      assert.are.equal(3, srv.closed_by_peer - 2) -- three closed at once, two by p:close()
    end)

    it("keeps at most max_idle in all, closing the oldest", function()
      local a, b, c, stats, before
      run(function()
        a, b, c = backend(always_ok), backend(always_ok), backend(always_ok)
        local p = fb.http.pool { max_idle = 2 }
        fb.http.request { url = a.url, pool = p }
        fb.http.request { url = b.url, pool = p }
        fb.http.request { url = c.url, pool = p } -- a's goes
        fb.sleep(0.01)
        before = a.closed_by_peer
        stats = p:stats()
        fb.http.request { url = b.url, pool = p }
        fb.http.request { url = c.url, pool = p }
        fb.http.request { url = a.url, pool = p }
        p:close()
        a.close(); b.close(); c.close()
      end)
      assert.are.equal(1, before)
      assert.are.same({ idle = 2, hosts = 2, opened = 3, reused = 0, retried = 0 }, stats)
      assert.are.same({ 2, 1, 1 }, { a.accepted, b.accepted, c.accepted })
    end)

    it("closes a connection after max_requests, asking the server to on the last", function()
      local srv
      run(function()
        srv = backend(always_ok)
        local p = fb.http.pool { max_requests = 3 }
        for _ = 1, 7 do assert.are.equal(200, fb.http.request { url = srv.url, pool = p }) end
        p:close()
        srv.close()
      end)
      assert.are.equal(3, srv.accepted)
      for n = 1, 7 do
        local last = srv.seen[n]:find("Connection: close\r\n", 1, true) ~= nil
        assert.are.equal(n % 3 == 0, last, "request " .. n)
      end
    end)

    it("closes a connection idle past idle_timeout, with no request to notice", function()
      local srv, idle, closed_before, closed_after
      run(function()
        srv = backend(always_ok)
        local p = fb.http.pool { idle_timeout = 0.05 }
        fb.http.request { url = srv.url, pool = p }
        fb.sleep(0.01)
        closed_before = srv.closed_by_peer
        fb.sleep(0.1)
        closed_after, idle = srv.closed_by_peer, p:stats().idle
        fb.http.request { url = srv.url, pool = p }
        p:close()
        srv.close()
      end)
      assert.are.equal(0, closed_before)
      assert.are.equal(1, closed_after)
      assert.are.equal(0, idle)
      assert.are.equal(2, srv.accepted)
    end)

    it("closes an idle connection past idle_timeout in the next run too", function()
      local p = fb.http.pool { idle_timeout = 0.2 }
      run(function()
        local srv = backend(always_ok)
        fb.http.request { url = srv.url, pool = p } -- starts the pool's sweeper
        fb.sleep(0.01) -- which looks, and sleeps until this one expires
        p:close()
        srv.close()
      end) -- the run ends, and drops the sweeper
      local srv, closed
      run(function()
        srv = backend(always_ok)
        fb.http.request { url = srv.url, pool = p }
        fb.sleep(0.5)
        closed = srv.closed_by_peer
        p:close()
        srv.close()
      end)
      assert.are.equal(1, closed)
    end)

    it("lets a run whose coroutines are blocked forever fail, once its idle connections are gone", function()
      local path = os.tmpname()
      local f = assert(io.open(path, "w"))
      f:write([[
local fb = require "fusebox"
local srv = assert(fb.http.serve { port = 0, read_timeout = 0.1, background = true,
  handler = function() return 200, nil, "ok" end })
local p = fb.http.pool { idle_timeout = 0.2 }
for _ = 1, 3 do assert(fb.http.request { url = "http://127.0.0.1:" .. srv:port() .. "/", pool = p } == 200) end
fb.wait("what never comes")
]])
      f:close()
      local errfile = os.tmpname()
      local t0 = fb.real_now()
      -- the sweeper must not keep the run going: killed after 20 s if it does
      local ok, _, code = os.execute(string.format("timeout 20 %s run %s >/dev/null 2>%s", T.fusebox_bin, path, errfile))
      if type(ok) == "number" then code = ok / 256 end -- Lua 5.1 os.execute
      local took = fb.real_now() - t0
      local err = T.slurp(errfile)
      os.remove(path)
      os.remove(errfile)
      assert.are.equal(1, code, err)
      assert.truthy(err:find("blocked forever", 1, true), err)
      assert.is_true(took < 5, "took " .. took)
    end)

    it("lets a run end with idle connections in its pool", function()
      local srv
      local t0 = fb.real_now and fb.real_now() or os.time()
      run(function()
        srv = backend(always_ok)
        fb.http.request { url = srv.url, pool = fb.http.pool { idle_timeout = 60 } }
        srv.close() -- the client's end stays open, parked in the pool
      end)
      local took = (fb.real_now and fb.real_now() or os.time()) - t0
      assert.is_true(took < 5, "took " .. took)
    end)

    it("checks its options", function()
      local cases = {
        { { max_idle_per_host = 0 }, "bad argument #1 to 'pool' (max_idle_per_host must be a positive integer, got 0)" },
        { { max_idle = 1.5 }, "bad argument #1 to 'pool' (max_idle must be a positive integer, got 1.5)" },
        { { idle_timeout = -1 }, "bad argument #1 to 'pool' (idle_timeout must be a positive number, got -1)" },
        { { idle_timeout = 1 / 0 }, "bad argument #1 to 'pool' (idle_timeout must be a positive number, got inf)" },
        { { max_requests = "9" }, "bad argument #1 to 'pool' (max_requests must be a positive integer, got \"9\")" },
        { { max_conns = 3 }, "bad argument #1 to 'pool' (unknown option 'max_conns')" },
        { 7, "bad argument #1 to 'pool' (options table expected, got number)" },
      }
      for _, c in ipairs(cases) do
        local ok, err = pcall(function() fb.http.pool(c[1]) end)
        assert.is_false(ok)
        assert.are.equal(c[2], err:gsub("^[^:]*:%d+: ", ""))
        assert.truthy(err:find("pool_spec.lua", 1, true), err) -- blames the caller's line
      end
      local p = fb.http.pool {}
      local ok, err = pcall(p.stats, {})
      assert.are.equal("bad argument #1 to 'stats' (fusebox.http_pool expected, got table)", err)
      run(function()
        local ok, err = pcall(fb.http.request, { url = "http://127.0.0.1:1/", pool = 42 })
        assert.is_false(ok)
        assert.are.equal("bad argument #1 to 'request' (pool must be a pool (fb.http.pool) or false, got number)",
          err:gsub("^[^:]*:%d+: ", ""))
        ok, err = pcall(fb.http.request, { url = "http://127.0.0.1:1/", first_byte_timeout = 0 })
        assert.are.equal("bad argument #1 to 'request' (first_byte_timeout must be a positive number, got 0)",
          err:gsub("^[^:]*:%d+: ", ""))
        ok, err = pcall(fb.http.request, { url = "http://127.0.0.1:1/", connect_timeout = "1" })
        assert.are.equal("bad argument #1 to 'request' (connect_timeout must be a positive number, got \"1\")",
          err:gsub("^[^:]*:%d+: ", ""))
      end)
    end)
  end)

  describe("timeouts per phase", function()
    -- A listener that never accepts, with a backlog of 0: once one
    -- connection waits in its queue, the kernel drops the next SYNs, so
    -- a connect hangs (on loopback, the only way to make one slow).
    local ffi = require "ffi"
    pcall(ffi.cdef, [[
      int socket(int domain, int type, int protocol);
      int listen(int fd, int backlog);
      int close(int fd);
      struct pool_spec_sin { uint16_t family; uint16_t port; uint32_t addr; uint8_t zero[8]; };
      int bind(int fd, const struct pool_spec_sin *a, uint32_t len);
      int getsockname(int fd, struct pool_spec_sin *a, uint32_t *len);
    ]])
    local function full_listener()
      local fd = ffi.C.socket(2, 1, 0) -- AF_INET, SOCK_STREAM
      local a = ffi.new("struct pool_spec_sin", { family = 2, addr = 0x0100007f }) -- 127.0.0.1
      assert(ffi.C.bind(fd, a, 16) == 0 and ffi.C.listen(fd, 0) == 0)
      ffi.C.getsockname(fd, a, ffi.new("uint32_t[1]", 16))
      return fd, bit.rshift(bit.bswap(a.port), 16)
    end

    it("bounds the connect apart from the whole request", function()
      local fd, port = full_listener()
      local got, took
      run(function()
        local first = assert(fb.tcp.connect("127.0.0.1", port, { timeout = 1 })) -- fills the queue
        local t0 = fb.now()
        got = { fb.http.request { url = "http://127.0.0.1:" .. port .. "/", connect_timeout = 0.1, timeout = 5 } }
        took = fb.now() - t0
        first:close()
      end)
      ffi.C.close(fd)
      assert.are.same({ nil, "connect timeout" }, got)
      assert.is_true(took < 1, "took " .. took)
    end)

    it("bounds the wait for the first byte apart from the whole request", function()
      local srv, slow, fast
      run(function()
        srv = backend(function() fb.sleep(0.2); return ok_response() end)
        local p = fb.http.pool {}
        slow = { fb.http.request { url = srv.url, pool = p, first_byte_timeout = 0.05, timeout = 2 } }
        fast = { fb.http.request { url = srv.url, pool = p, first_byte_timeout = 1, timeout = 2 } }
        fb.sleep(0.2)
        p:close()
        srv.close()
      end)
      assert.are.same({ nil, "first byte timeout" }, slow)
      assert.are.equal(200, fast[1])
    end)

    it("bounds a slow body by the whole request once the first byte came", function()
      local srv, got
      run(function()
        srv = backend(function(_, _, sock)
          sock:write("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab", 2)
          fb.sleep(0.3)
          return "cd"
        end)
        got = { fb.http.request { url = srv.url, pool = fb.http.pool {}, first_byte_timeout = 0.1, timeout = 0.2 } }
        srv.close()
      end)
      assert.are.same({ nil, "timeout" }, got)
    end)
  end)

  describe("hostile servers never poison the pool", function()
    -- The first connection misbehaves as told; every later one is sane.
    -- Returns the first request's results and the second's, which must
    -- come over a new connection.
    local function after(bad, opts)
      local srv, first, second
      run(function()
        srv = backend(function(_, _, sock, conn)
          if conn == 1 then return bad(sock) end
          return ok_response("sane")
        end)
        local p = fb.http.pool {}
        local o = { url = srv.url, pool = p, timeout = 0.2 }
        for k, v in pairs(opts or {}) do o[k] = v end
        first = { fb.http.request(o) }
        fb.sleep(0.05)
        o.timeout = 2
        second = { fb.http.request(o) }
        p:close()
        srv.close()
      end)
      assert.are.equal(200, second[1])
      assert.are.equal("sane", second[3])
      assert.are.equal(2, srv.accepted)
      return first
    end

    it("a response followed by garbage in the same write", function()
      local first = after(function() return ok_response("ok") .. "GARBAGE\r\n\r\n" end)
      assert.are.equal(200, first[1])
      assert.are.equal("ok", first[3])
    end)

    it("garbage sent later, while the connection idles", function()
      local first = after(function(sock)
        fb.spawn(function() fb.sleep(0.01); sock:write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nforged", 1) end)
        return ok_response("ok")
      end)
      assert.are.equal("ok", first[3])
    end)

    it("a Content-Length above the body it sends", function()
      local first = after(function() return "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc" end)
      assert.are.same({ nil, "timeout" }, first)
    end)

    it("a Content-Length below the body it sends", function()
      local first = after(function() return "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nokay" end)
      assert.are.equal("o", first[3])
    end)

    it("a response that never finishes its headers", function()
      local first = after(function() return "HTTP/1.1 200 OK\r\nContent-Len" end)
      assert.are.same({ nil, "timeout" }, first)
    end)

    it("a body over max_body", function()
      local first = after(function() return ok_response(string.rep("x", 100)) end, { max_body = 10 })
      assert.is_nil(first[1])
      assert.truthy(first[2]:find("body too large", 1, true), first[2])
    end)

    it("a malformed response", function()
      local first = after(function() return "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n" end)
      assert.is_nil(first[1])
    end)
  end)

  describe("users of the pool", function()
    it("health checks probe over pooled connections", function()
      local srv, healthy
      run(function()
        srv = backend(always_ok)
        local reg = fb.registry {}
        reg:register("svc", "127.0.0.1", srv.port)
        local hc = fb.health_check { registry = reg, service = "svc", type = "http", interval = 0.01, timeout = 1 }
        fb.sleep(0.15)
        hc:stop()
        healthy = hc:is_healthy("127.0.0.1", srv.port)
        srv.close()
      end)
      assert.is_true(healthy)
      assert.is_true(srv.requests >= 5, "requests: " .. srv.requests)
      assert.are.equal(1, srv.accepted)
    end)

    it("fb.client's calls share pooled connections", function()
      local srv, n = nil, 0
      run(function()
        srv = backend(always_ok)
        local reg = fb.registry {}
        reg:register("svc", "127.0.0.1", srv.port)
        local c = fb.client { registry = reg, policy = { timeout = 1 } }
        for _ = 1, 20 do
          local status = c:call("svc", function(inst) return fb.http.request { instance = inst, path = "/" } end)
          if status == 200 then n = n + 1 end
        end
        srv.close()
      end)
      assert.are.equal(20, n)
      assert.are.equal(1, srv.accepted)
    end)
  end)
end)
