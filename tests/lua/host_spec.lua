-- The scheduler interface (fusebox/host.lua) with a fake host: a small
-- deterministic scheduler of plain coroutines and a clock of its own,
-- standing in for nginx's (fusebox/ngx_host.lua, which tests/nginx.t runs
-- in a real nginx). Installed with fb.host, it must carry every wait
-- fusebox makes: retry backoff, fb.timeout, bulkheads, health checks, with
-- no fb.run anywhere.
local fb = require "fusebox"

-- A fake host in the image of nginx's: spawn runs the child at once until
-- it yields (ngx.thread.spawn does), abandon kills it, daemons start on
-- the next turn (ngx.timer.at(0)), and its clock moves only when every
-- coroutine waits.
local function fake_host(opts)
  opts = opts or {}
  local h = { name = "fake", t = 0, log = {}, ready = {}, timers = {}, parked = {},
    killed = {}, seq = 0 }
  local function note(s) h.log[#h.log + 1] = s end
  local function push(co, at, ...) -- wake co at time at with ...
    h.seq = h.seq + 1
    h.timers[#h.timers + 1] = { at = at, seq = h.seq, co = co, args = { n = select("#", ...), ... } }
  end
  local function resume(co, ...)
    if h.killed[co] then return end
    local ok, err = coroutine.resume(co, ...)
    if not ok then error(err, 0) end
  end
  function h.sleep(s)
    note(string.format("sleep %g", s))
    push(coroutine.running(), h.t + s)
    coroutine.yield()
  end
  function h.spawn(fn, ...)
    local co = coroutine.create(fn)
    note("spawn")
    resume(co, ...)
    return co
  end
  function h.daemon(fn, ...)
    local co = coroutine.create(fn)
    note("daemon")
    push(co, h.t, ...)
    return co
  end
  function h.wait(what, timeout)
    local co = coroutine.running()
    note("wait " .. tostring(what))
    local token = {}
    h.parked[co] = token
    if timeout then push(co, h.t + timeout, token, "timeout") end
    return coroutine.yield()
  end
  function h.wake(co, ...)
    if not h.parked[co] then return false end
    h.parked[co] = nil
    push(co, h.t, true, ...)
    return true
  end
  function h.abandon(co)
    note("abandon")
    h.killed[co] = true
    h.parked[co] = nil
    return true
  end
  function h.exiting() return false end
  function h.primary() return opts.primary ~= false end
  function h.run() error("run: the fake host runs its own loop", 2) end
  function h.io(fname) return fname .. " is not available on the fake host" end
  function h.probe(kind, inst, path, timeout)
    note(string.format("probe %s %s:%d %s %g", kind, inst.host, inst.port, path, timeout))
    return not (opts.down or {})[inst.port]
  end
  -- Runs fn as the main coroutine until nothing is left to run or the
  -- clock would pass stop_at.
  function h.go(fn, stop_at)
    push(coroutine.create(fn), h.t)
    while #h.timers > 0 do
      table.sort(h.timers, function(a, b) return a.at < b.at or (a.at == b.at and a.seq < b.seq) end)
      local e = table.remove(h.timers, 1)
      local args = e.args
      -- a wait's timeout is void once the wait was woken
      local void = args[2] == "timeout" and h.parked[e.co] ~= args[1]
      if stop_at and e.at > stop_at and not void then break end
      if not void then h.t = math.max(h.t, e.at) end
      if args[2] == "timeout" then
        if not void then
          h.parked[e.co] = nil
          resume(e.co, false)
        end
      elseif coroutine.status(e.co) == "suspended" then
        resume(e.co, unpack(args, 1, args.n))
      end
    end
  end
  -- what the host table passed to fb.host holds: the interface alone
  h.iface = { name = h.name, sleep = h.sleep, spawn = h.spawn, daemon = h.daemon, wait = h.wait,
    wake = h.wake, abandon = h.abandon, exiting = h.exiting, primary = h.primary, run = h.run,
    io = h.io, probe = h.probe }
  return h
end

local function with_host(h, fn)
  local previous = fb.host(h.iface)
  local ok, err = pcall(fn)
  fb.host(previous)
  if not ok then error(err, 0) end
end

describe("the scheduler interface", function()
  it("is fusebox's runtime until a host is installed, and fb.host says which", function()
    assert.equal("fusebox", fb.host().name)
    local h = fake_host()
    local previous = fb.host(h.iface)
    assert.equal("fusebox", previous.name)
    assert.equal("fake", fb.host().name)
    assert.equal("fake", fb.host("fusebox").name)
    assert.equal("fusebox", fb.host().name)
  end)

  it("says what is wrong with a scheduler", function()
    local function err(v)
      local ok, e = pcall(fb.host, v)
      assert.is_false(ok)
      return e
    end
    assert.equal("bad argument #1 to 'host' (scheduler table or \"fusebox\" expected, got number)", err(3))
    local h = fake_host().iface
    h.name = nil
    assert.equal("bad argument #1 to 'host' (name must be a string, got nil)", err(h))
    h = fake_host().iface
    h.wake = nil
    assert.equal("bad argument #1 to 'host' (wake must be a function, got nil)", err(h))
    h = fake_host().iface
    h.nap = function() end
    assert.equal("bad argument #1 to 'host' (unknown field 'nap')", err(h))
    assert.equal("fusebox", fb.host().name) -- nothing was installed
    local ok, e = pcall(fb.run, function() fb.host(fake_host().iface) end)
    assert.is_false(ok)
    assert.truthy(e:find("host: cannot change the scheduler inside a run", 1, true))
    assert.equal("fusebox", fb.host().name)
  end)

  it("carries fb.sleep, fb.spawn, fb.wait and fb.wake, with no fb.run", function()
    local h = fake_host()
    local got
    with_host(h, function()
      h.go(function()
        local me = coroutine.running()
        fb.spawn(function(x)
          fb.sleep(2)
          fb.wake(me, x, "b")
        end, "a")
        got = { fb.wait("the child", 10) }
      end)
    end)
    assert.same({ true, "a", "b" }, got)
    assert.equal(2, h.t)
    assert.same({ "spawn", "sleep 2", "wait the child" }, h.log)
  end)

  it("refuses fb.run and fusebox's sockets where the host says so", function()
    local h = fake_host()
    with_host(h, function()
      local ok, err = pcall(fb.run, function() end)
      assert.is_false(ok)
      assert.equal("run: the fake host runs its own loop", err:gsub("^.-:%d+: ", ""))
      ok, err = pcall(fb.http.request, { url = "http://127.0.0.1:1/" })
      assert.is_false(ok)
      assert.truthy(err:find("http.request is not available on the fake host", 1, true))
      ok, err = pcall(fb.tcp.connect, "127.0.0.1", 1)
      assert.is_false(ok)
      assert.truthy(err:find("tcp.connect is not available on the fake host", 1, true))
    end)
  end)

  it("runs a retry's backoff on the host's sleep", function()
    local h = fake_host()
    local calls, result = 0, nil
    with_host(h, function()
      h.go(function()
        local r = fb.retry { attempts = 3, backoff = "exponential", base = 0.5 }
        result = r:call(function()
          calls = calls + 1
          if calls < 3 then return nil, "503" end
          return "ok"
        end)
      end)
    end)
    assert.equal("ok", result)
    assert.equal(3, calls)
    assert.same({ "sleep 0.5", "sleep 1" }, h.log)
    assert.equal(1.5, h.t)
  end)

  it("times a call out on the host and has the host stop the child", function()
    local h = fake_host()
    local r1, r2, late
    local t = fb.timeout(1)
    with_host(h, function()
      h.go(function()
        r1, r2 = t:call(function()
          fb.sleep(5)
          late = true
          return "late"
        end)
      end)
    end)
    assert.is_nil(r1)
    assert.equal("timeout: no result within 1s", r2)
    assert.equal(1, t.timeouts)
    assert.equal(0, t.late)
    assert.is_nil(late) -- killed: it never ran past its sleep
    assert.same({ "spawn", "sleep 5", "wait a call under a 1s timeout", "abandon" }, h.log)
    -- a child that ends before the caller waits: its result, no wait
    local a, b
    h.log = {}
    with_host(h, function()
      h.go(function() a, b = t:call(function(x) return x, 2 end, 1) end)
    end)
    assert.same({ 1, 2 }, { a, b })
    assert.same({ "spawn" }, h.log)
    -- and one that answers in time, after a sleep
    h.log = {}
    with_host(h, function()
      h.go(function() a = t:call(function() fb.sleep(0.25); return "in time" end) end)
    end)
    assert.equal("in time", a)
    assert.same({ "spawn", "sleep 0.25", "wait a call under a 1s timeout" }, h.log)
  end)

  it("queues bulkhead callers on the host's wait and wake", function()
    local h = fake_host()
    local b = fb.bulkhead { max_concurrent = 1, max_queue = 1 }
    local order = {}
    with_host(h, function()
      h.go(function()
        for i = 1, 3 do
          fb.spawn(function()
            local r, err = b:call(function() fb.sleep(1); return i end)
            order[#order + 1] = r or err
          end)
        end
      end)
    end)
    assert.same({ "bulkhead full: 1 running, 1 queued (max_queue 1)", 1, 2 }, order)
    assert.equal(2, h.t)
  end)

  it("probes on the host in the primary process only, and marks a failing instance down", function()
    local function checker(h)
      local reg = fb.registry()
      reg:register("api", "127.0.0.1", 7001)
      reg:register("api", "127.0.0.1", 7002)
      local c
      with_host(h, function()
        h.go(function()
          c = fb.health_check { registry = reg, service = "api", interval = 5, timeout = 0.5,
            unhealthy_threshold = 2 }
          fb.sleep(12)
          c:stop()
        end, 100)
      end)
      return c, reg
    end
    local h = fake_host { down = { [7002] = true } }
    local c, reg = checker(h)
    assert.is_true(c:is_healthy("127.0.0.1", 7001))
    assert.is_false(c:is_healthy("127.0.0.1", 7002))
    local healthy = {}
    for _, v in ipairs(reg:discover("api")) do healthy[v.port] = v.healthy end
    assert.same({ [7001] = true, [7002] = false }, healthy)
    local probes = 0
    for _, l in ipairs(h.log) do if l:find("^probe tcp") then probes = probes + 1 end end
    assert.equal(6, probes) -- rounds at 0, 5 and 10, two instances each
    -- another worker: no probe at all, every instance healthy
    local other = fake_host { primary = false, down = { [7002] = true } }
    c = checker(other)
    assert.is_false(c.probing)
    assert.is_true(c:is_healthy("127.0.0.1", 7002))
    for _, l in ipairs(other.log) do assert.is_nil(l:find("^probe")) end
    -- workers = "all": every process probes (registries that share nothing)
    local reg = fb.registry()
    reg:register("api", "127.0.0.1", 7002)
    with_host(other, function()
      other.go(function()
        c = fb.health_check { registry = reg, service = "api", workers = "all", interval = 1 }
        fb.sleep(1.5)
        c:stop()
      end)
    end)
    assert.is_true(c.probing)
    assert.is_false(c:is_healthy("127.0.0.1", 7002))
    local ok, err = pcall(fb.health_check, { registry = reg, service = "api", workers = 2 })
    assert.is_false(ok)
    assert.truthy(err:find("bad argument #1 to 'health_check' (workers must be 'one' or 'all', got 2)", 1, true))
  end)
end)
