-- fb.on_signal and fb.shutdown inside one process (issue 17, item 4);
-- tests/shutdown.t sends the signals from outside, to the CLI.
local fb = require "fusebox"
local ffi = require "ffi"
pcall(ffi.cdef, "int getpid(void);")
local pid = ffi.C.getpid()

local function kill(sig) assert(os.execute("kill -" .. sig .. " " .. pid)) end

describe("fb.on_signal", function()
  it("runs the handler as a coroutine on the loop, with the signal's name", function()
    local got, previous
    fb.run(function()
      local me = coroutine.running()
      assert.is_nil(fb.on_signal("SIGUSR2", function(name) got = name; fb.wake(me) end))
      kill("USR2")
      assert.is_true(fb.wait("the signal", 5))
      previous = fb.on_signal("SIGUSR2", nil)
    end)
    assert.are.equal("SIGUSR2", got)
    assert.are.equal("function", type(previous))
  end)

  it("names the signals it takes when given another", function()
    fb.run(function()
      assert.has_error(function() fb.on_signal("SIGKILL", print) end,
        "bad argument #1 to 'on_signal' (signal must be one of SIGHUP, SIGINT, SIGQUIT, SIGTERM, "
        .. "SIGUSR1, SIGUSR2, SIGWINCH, got 'SIGKILL')")
      assert.has_error(function() fb.on_signal(15, print) end,
        "bad argument #1 to 'on_signal' (signal must be one of SIGHUP, SIGINT, SIGQUIT, SIGTERM, "
        .. "SIGUSR1, SIGUSR2, SIGWINCH, got number)")
      assert.has_error(function() fb.on_signal("SIGHUP", "reload") end,
        "bad argument #2 to 'on_signal' (handler must be a function or nil, got string)")
    end)
  end)

  it("is not available under virtual time, where a signal's moment cannot replay", function()
    local ok, err
    T.vrun(function() ok, err = pcall(fb.on_signal, "SIGHUP", print) end)
    assert.is_false(ok)
    assert.truthy(err:find("on_signal is not available under --virtual-time", 1, true), err)
  end)
end)

describe("fb.shutdown", function()
  it("ends a run at once when nothing serves, dropping coroutines that never end", function()
    local t
    T.vrun(function()
      fb.spawn(function() while true do fb.sleep(1) end end)
      fb.sleep(5)
      assert.is_true(fb.shutdown())
      assert.is_false(fb.shutdown()) -- one is under way
      t = fb.now()
    end)
    assert.are.equal(5, t)
  end)

  it("lets a request in flight finish, answered with Connection: close, and refuses new ones", function()
    local out, refused, finished = os.tmpname(), nil, false
    fb.run(function()
      local srv = assert(fb.http.serve { port = 0, handler = function()
        fb.sleep(0.3)
        finished = true
        return 200, nil, "finished"
      end })
      local port = srv:port()
      -- the client is another process: the run's own coroutines end with it
      -- (without the sanitizers' LD_PRELOAD, which curl is not built for)
      os.execute(string.format("env -u LD_PRELOAD curl -s -i --max-time 5 http://127.0.0.1:%d/ > %s &",
        port, out))
      for _ = 1, 500 do
        if next(srv.conns) ~= nil then break end
        fb.sleep(0.01)
      end
      fb.sleep(0.05)
      assert.is_true(fb.shutdown { timeout = 5 })
      refused = select(2, fb.tcp.connect("127.0.0.1", port, { timeout = 1 }))
      fb.sleep(60) -- the shutdown ends the run long before
    end)
    local answer = ""
    for _ = 1, 100 do
      answer = T.slurp(out)
      if answer:find("finished", 1, true) then break end
      os.execute("sleep 0.05")
    end
    os.remove(out)
    assert.is_true(finished)
    assert.are.equal("connection refused", refused)
    assert.truthy(answer:find("^HTTP/1.1 200 OK\r\n"), answer)
    assert.truthy(answer:find("Connection: close\r\n", 1, true), answer)
    assert.truthy(answer:find("\r\n\r\nfinished$"), answer)
  end)

  it("answers fb.serve_registry's blocking queries with the current state (api:shutdown)", function()
    local status, body, took
    fb.run(function()
      local api = assert(fb.serve_registry { port = 0 })
      api.registry:register("users", "10.0.0.1", 80)
      local url = "http://127.0.0.1:" .. api:port() .. "/v1/services/users?index=1&wait=60s"
      fb.spawn(function()
        fb.sleep(0.1)
        api:shutdown()
      end)
      local t0 = fb.now()
      status, _, body = fb.http.request { url = url, timeout = 10 }
      took = fb.now() - t0
    end)
    assert.are.equal(200, status)
    assert.truthy(body:find('"host":"10.0.0.1"', 1, true), body)
    assert.is_true(took < 5, took)
  end)

  it("checks its options and fb.run's shutdown_timeout", function()
    T.vrun(function()
      assert.has_error(function() fb.shutdown { timeout = -1 } end,
        "bad argument #1 to 'shutdown' (timeout must be a number of seconds in 0..1e+09, got -1)")
      assert.has_error(function() fb.shutdown { grace = 1 } end,
        "bad argument #1 to 'shutdown' (unknown option 'grace')")
    end)
    local ok, err = pcall(fb.run, function() end, { shutdown_timeout = -1 })
    assert.is_false(ok)
    assert.truthy(err:find("shutdown_timeout must be a finite number >= 0, got -1", 1, true), err)
  end)
end)
