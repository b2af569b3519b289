-- fb.tcp against real sockets on 127.0.0.1: everything a test starts, it
-- stops (an open server would keep the run from ending).
local fb = require "fusebox"

local function run(fn) fb.run(fn) end

-- A server that echoes what it reads until the peer closes.
local function echo_server()
  return assert(fb.tcp.listen { port = 0, handler = function(s)
    while true do
      local data = s:read(5)
      if not data then break end
      s:write(data)
    end
    s:close()
  end })
end

describe("fb.tcp", function()
  it("connects, writes and reads back through an echo server", function()
    local got
    run(function()
      local srv = echo_server()
      local c = assert(fb.tcp.connect("127.0.0.1", srv:port(), { timeout = 2 }))
      assert.is_true(c:write("ping", 2))
      got = c:read(2)
      c:close()
      srv:close()
    end)
    assert.are.equal("ping", got)
  end)

  it("returns connection refused as a value", function()
    local s, err
    run(function()
      local srv = echo_server()
      local port = srv:port()
      srv:close()
      s, err = fb.tcp.connect("127.0.0.1", port)
    end)
    assert.is_nil(s)
    assert.are.equal("connection refused", err)
  end)

  it("times a read out and keeps the socket usable", function()
    local first, err, second
    run(function()
      local srv = assert(fb.tcp.listen { port = 0, handler = function(s)
        fb.sleep(0.2)
        s:write("late")
        s:read(2)
        s:close()
      end })
      local c = assert(fb.tcp.connect("127.0.0.1", srv:port()))
      first, err = c:read(0.05)
      second = c:read(2)
      c:close()
      srv:close()
    end)
    assert.is_nil(first)
    assert.are.equal("timeout", err)
    assert.are.equal("late", second)
  end)

  it("reads 'closed' when the peer closes, and after a local close", function()
    local r1, r2
    run(function()
      local srv = assert(fb.tcp.listen { port = 0, handler = function(s) s:close() end })
      local c = assert(fb.tcp.connect("127.0.0.1", srv:port()))
      r1 = { c:read(2) }
      c:close()
      r2 = { c:read(2) }
      srv:close()
    end)
    assert.are.same({ nil, "closed" }, r1)
    assert.are.same({ nil, "closed" }, r2)
  end)

  it("keeps what arrives between reads, in order, and a socket once read does not hold a run", function()
    local got, ok, err = {}, nil, nil
    ok, err = pcall(run, function()
      local srv = assert(fb.tcp.listen { port = 0, handler = function(s)
        s:write("a")
        fb.sleep(0.05)
        s:write("b") -- while the client reads nothing: kept for its next read
        fb.sleep(0.05)
        s:write("c")
        fb.wait("held open") -- and never read from on this side
      end })
      local c = assert(fb.tcp.connect("127.0.0.1", srv:port()))
      got[1] = c:read(2)
      fb.sleep(0.2)
      local rest = ""
      while #rest < 2 do rest = rest .. assert(c:read(2)) end
      got[2] = rest
      srv:close()
      -- both ends stay open, c read from but with no reader now: nothing
      -- can wake either coroutine, and the run says so instead of hanging
      fb.wait("nothing")
    end)
    assert.are.same({ "a", "bc" }, got)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("2 coroutine(s) blocked forever", 1, true), err)
  end)

  it("wakes a reader parked in another coroutine when the socket is closed", function()
    local got
    run(function()
      local srv = echo_server()
      local c = assert(fb.tcp.connect("127.0.0.1", srv:port()))
      local reader = fb.spawn(function() got = { c:read() } end)
      fb.sleep(0.05)
      c:close()
      fb.sleep(0)
      srv:close()
      assert.is_truthy(reader)
    end)
    assert.are.same({ nil, "closed" }, got)
  end)

  it("times out a connect that cannot finish in time", function()
    local s, err
    run(function()
      local srv = echo_server()
      s, err = fb.tcp.connect("127.0.0.1", srv:port(), { timeout = 0 })
      srv:close()
    end)
    assert.is_nil(s)
    assert.are.equal("timeout", err)
  end)

  it("moves large writes completely", function()
    local total = 0
    run(function()
      local srv = assert(fb.tcp.listen { port = 0, handler = function(s)
        while true do
          local d = s:read(2)
          if not d then break end
          total = total + #d
        end
        s:close()
      end })
      local c = assert(fb.tcp.connect("127.0.0.1", srv:port()))
      assert.is_true(c:write(string.rep("x", 8 * 1024 * 1024), 5))
      c:close()
      for _ = 1, 200 do
        if total == 8 * 1024 * 1024 then break end
        fb.sleep(0.01)
      end
      srv:close()
    end)
    assert.are.equal(8 * 1024 * 1024, total)
  end)

  it("watches a socket for a coroutine parked elsewhere: data stays, the end wakes it", function()
    run(function()
      local accepted, holders = {}, {}
      local srv = assert(fb.tcp.listen { port = 0, handler = function(sock)
        accepted[#accepted + 1] = sock
        holders[#holders + 1] = coroutine.running()
        fb.wait("held open")
      end })
      local c = assert(fb.tcp.connect("127.0.0.1", srv:port()))
      fb.sleep(0.02)
      local s = accepted[1]
      local got = {}
      fb.spawn(function()
        assert.is_false(s:watch())
        got[1] = { fb.wait("parked", 5) }
        got[2] = s:watch() -- the data is there: no wait
        s:unwatch()
        got[3] = s:read(1)
        assert.is_false(s:watch())
        got[4] = { fb.wait("parked", 5) }
        s:unwatch()
        got[5] = { s:read(1) }
      end)
      fb.sleep(0.02)
      assert.is_nil(got[1])
      c:write("more")
      fb.sleep(0.02)
      assert.are.same({ true, "data" }, got[1])
      assert.is_true(got[2])
      assert.are.equal("more", got[3])
      c:close()
      fb.sleep(0.02)
      assert.are.same({ true, "closed" }, got[4])
      assert.are.same({ nil, "closed" }, got[5])
      -- a watch ended by unwatch wakes nobody; a plain wake still works
      local c2 = assert(fb.tcp.connect("127.0.0.1", srv:port()))
      fb.sleep(0.02)
      local s2, woke = accepted[2], nil
      local co = fb.spawn(function()
        assert.is_false(s2:watch())
        s2:unwatch()
        woke = { fb.wait("parked", 0.2) }
      end)
      fb.sleep(0.02)
      c2:write("x")
      fb.sleep(0.05)
      assert.is_nil(woke)
      fb.sleep(0.3)
      assert.are.same({ false }, woke)
      assert.is_truthy(co)
      c2:close()
      srv:close()
      for _, a in ipairs(accepted) do a:close() end
      for _, h in ipairs(holders) do fb.wake(h) end
    end)
  end)

  it("rejects bad arguments at the caller's line", function()
    run(function()
      assert.has_error(function() fb.tcp.connect("127.0.0.1", 70000) end,
        "bad argument #2 to 'connect' (port must be 0..65535, got 70000)")
      assert.has_error(function() fb.tcp.connect("127.0.0.1", 80, { tiemout = 1 }) end,
        "bad argument #3 to 'connect' (unknown option 'tiemout')")
      local s, err = fb.tcp.connect("no.such.invalid", 80) -- a name: resolved (fusebox.dns), never asked of DNS
      assert.is_nil(s)
      assert.are.equal("resolve failed: 'no.such.invalid': .invalid names never resolve (RFC 6761)", err)
    end)
  end)

  it("is a clear error under virtual time", function()
    T.vrun(function()
      local ok, err = pcall(fb.tcp.connect, "127.0.0.1", 80)
      assert.is_false(ok)
      assert.matches("tcp.connect is not available under %-%-virtual%-time", err)
      ok, err = pcall(fb.http.request, { url = "http://127.0.0.1:1/" })
      assert.matches("http.request is not available under %-%-virtual%-time", err)
      ok, err = pcall(fb.http.serve, { handler = print })
      assert.matches("http.serve is not available under %-%-virtual%-time", err)
    end)
  end)
end)
