-- Garbage collection in any order is safe: a balancer keeps its registry
-- alive, and collecting either first never crashes.
local fb = require "fusebox"

describe("garbage collection", function()
  it("keeps a registry alive while a balancer uses it", function()
    T.vrun(function()
      local lb
      do
        local reg = fb.registry()
        reg:register("s", "h", 1)
        lb = fb.balancer(reg, "round_robin")
      end
      collectgarbage(); collectgarbage()
      assert.are.equal("h", lb:pick("s").host)
      lb:registry():register("s", "h2", 1)
      assert.are.equal(2, #lb:registry():discover("s"))
    end)
  end)

  it("survives collecting everything at once, many times, in any order", function()
    for round = 1, 50 do
      local objs = {}
      local reg = fb.registry()
      reg:register("s", "h", round)
      for i = 1, 5 do objs[#objs + 1] = fb.balancer(reg, i % 2 == 0 and "random" or "round_robin") end
      objs[#objs + 1] = fb.breaker()
      if round % 2 == 0 then objs[#objs + 1] = reg end
      reg = nil
      objs = nil
      collectgarbage()
    end
    collectgarbage(); collectgarbage()
  end)

  it("lets instance views outlive their instance and registry", function()
    local view
    T.vrun(function()
      local reg = fb.registry()
      reg:register("s", "h", 1)
      view = reg:discover("s")[1]
      reg:deregister("s", "h", 1)
    end)
    collectgarbage(); collectgarbage()
    assert.are.equal("h", view.host)
    assert.are.equal(1, view.port)
  end)
end)

-- Issue 13, finding 2: views and finalizers never read freed memory (run
-- these under the ASan build too: make test does).
describe("lifetimes between Lua and C", function()
  local function weak(obj) return setmetatable({ obj }, { __mode = "v" }) end
  local function collect() collectgarbage(); collectgarbage() end

  it("keeps a registry alive while one of its views lives", function()
    local reg = fb.registry()
    reg:register("s", "10.0.0.1", 80, { weight = 3, zone = "z", meta = { k = 1 } })
    local v = reg:discover("s")[1]
    local ref = weak(reg)
    reg = nil
    collect()
    assert.is_not_nil(ref[1], "the registry was collected under its view")
    assert.are.equal(3, v.weight)
    assert.are.equal("z", v.zone)
    assert.are.equal(1, v.meta.k)
    assert.is_true(v.healthy)
    v = nil
    collect()
    assert.is_nil(ref[1], "the view pinned its registry after it was gone")
  end)

  it("keeps the registry of a picked view alive after balancer and registry go", function()
    local lb = fb.balancer(fb.registry(), "round_robin")
    lb:registry():register("s", "10.0.0.1", 80)
    local v = lb:pick("s")
    local ref = weak(lb:registry())
    lb = nil
    collect()
    assert.is_not_nil(ref[1])
    assert.are.equal(1, v.weight)
    assert.are.equal(1, v.inflight)
  end)

  it("makes a view of a closed registry say so instead of reading freed memory", function()
    local reg = fb.registry()
    reg:register("s", "10.0.0.1", 80)
    local v = reg:discover("s")[1]
    getmetatable(reg).__gc(reg)
    for _, field in ipairs { "weight", "zone", "meta", "healthy", "inflight",
      "successes", "failures", "latency" } do
      local ok, err = pcall(function() return v[field] end)
      assert.is_false(ok, field)
      assert.matches("cannot read '" .. field .. "' of instance 10.0.0.1:80: its registry is closed", err, 1, true)
    end
    assert.are.equal("10.0.0.1", v.host)
    assert.are.equal(80, v.port)
  end)

  -- A finalizer run in the same cycle as the objects it touches: Lua 5.1
  -- runs every finalizer of a cycle, in some order, so it may see them
  -- open or closed. Either is fine; freed memory is not.
  local function finalizer_touching(touch)
    local results = {}
    for round = 1, 20 do
      local objs = {}
      local function add()
        local p, o = newproxy(true), objs
        getmetatable(p).__gc = function()
          results[#results + 1] = { pcall(touch, o) }
        end
        objs[#objs + 1] = p
      end
      if round % 2 == 0 then add() end
      objs.reg = fb.registry()
      objs.reg:register("s", "h", round)
      objs.lb = fb.balancer(objs.reg, round % 4 < 2 and "round_robin" or function() return 1 end)
      objs.view = objs.reg:discover("s")[1]
      objs.cb = fb.breaker()
      local o = objs
      o.cb:on("state_change", function() o.reg:discover("s") end)
      if round % 2 == 1 then add() end
      objs = nil
      collect()
    end
    collect()
    assert.are.equal(20, #results)
    for _, r in ipairs(results) do
      if not r[1] then assert.matches("closed", r[2]) end
    end
    return results
  end

  it("lets a finalizer touch a registry collected in the same cycle", function()
    finalizer_touching(function(o) return #o.reg:discover("s"), o.view.weight end)
  end)

  it("lets a finalizer touch a balancer and breaker collected in the same cycle", function()
    finalizer_touching(function(o)
      local v = o.lb:pick("s")
      if v then o.lb:done(v, true, 0) end
      o.cb:force_open()
      return o.cb.state, o.cb:try(function() return 1 end)
    end)
  end)

  it("lets a finalizer change a service while discover and pick build views", function()
    -- The collector runs all the time here, so finalizers run at the
    -- allocations inside discover and pick (the interpreter boxes every
    -- pointer an FFI call returns): each deregisters and registers.
    local reg = fb.registry()
    for i = 1, 50 do reg:register("s", "h", i) end
    local lbs = { fb.balancer(reg, function(list) return #list end), fb.balancer(reg, "round_robin") }
    local pause, stepmul = collectgarbage("setpause", 1), collectgarbage("setstepmul", 1000)
    local function churn(round)
      for k = 1, 20 do
        local p = newproxy(true)
        getmetatable(p).__gc = function()
          reg:deregister("s", "h", (round * 20 + k) % 50 + 1)
          reg:register("s", "h" .. (round * 20 + k) % 97, 1)
          reg:register("s", "h", (round * 20 + k + 7) % 50 + 1)
        end
      end
    end
    local function rounds()
      for round = 1, 300 do
        churn(round)
        local seen = {}
        for _, v in ipairs(reg:discover("s")) do
          assert.is_nil(seen[v], "a view listed twice")
          seen[v] = true
          assert.is_string(v.host)
        end
        for _, lb in ipairs(lbs) do
          local v = lb:pick("s")
          if v then lb:done(v, true, 0) end
        end
      end
    end
    jit.off(rounds, true)
    local ok, err = pcall(rounds)
    collectgarbage("setpause", pause); collectgarbage("setstepmul", stepmul)
    assert(ok, err)
  end)
end)

-- Issue 13, finding 3: every __gc checks its argument and runs once; an
-- object used after __gc is a clean "closed" error on every method.
describe("__gc by hand", function()
  local R = debug.getregistry()
  local kinds = { "fusebox.registry", "fusebox.balancer", "fusebox.breaker",
    "fusebox.tcp", "fusebox.http_parser", "fusebox.registry_backend", "fusebox.json_box" }

  it("refuses a value of another type, naming what it got", function()
    local others = { 123, "s", {}, io.stdout, newproxy(true), fb.breaker(), fb.registry() }
    for _, kind in ipairs(kinds) do
      local gc = assert(R[kind] and R[kind].__gc, kind)
      for _, v in ipairs(others) do
        if getmetatable(v) ~= R[kind] then
          local ok, err = pcall(gc, v)
          assert.is_false(ok, kind)
          assert.matches("^bad argument #1 to '__gc' %(" .. kind:gsub("%.", "%%.")
            .. " expected, got [%w._]+%)$", err)
        end
      end
    end
    local ok, err = pcall(R["fusebox.registry"].__gc, fb.breaker())
    assert.is_false(ok)
    assert.are.equal("bad argument #1 to '__gc' (fusebox.registry expected, got fusebox.breaker)", err)
    ok, err = pcall(R["fusebox.breaker"].__gc, io.stdout)
    assert.are.equal("bad argument #1 to '__gc' (fusebox.breaker expected, got userdata)", err)
  end)

  local function closed(what, fn, ...)
    local ok, err = pcall(fn, ...)
    assert.is_false(ok, what)
    assert.matches("closed", err, 1, true)
  end

  it("is idempotent, and a closed registry refuses every method", function()
    local reg = fb.registry()
    reg:register("s", "h", 1)
    local gc = getmetatable(reg).__gc
    gc(reg); gc(reg)
    for _, m in ipairs { "register", "heartbeat", "deregister", "mark_down", "mark_up" } do
      closed(m, reg[m], reg, "s", "h", 1)
    end
    closed("set_healthy", reg.set_healthy, reg, "s", "h", 1, true)
    closed("heartbeat_timeout", reg.heartbeat_timeout, reg)
    closed("discover", reg.discover, reg, "s")
    closed("balancer", fb.balancer, reg, "random")
    assert.matches("^fusebox.registry closed", tostring(reg))
  end)

  it("makes a closed balancer refuse every method", function()
    for _, algo in ipairs { "round_robin", "maglev", function() return 1 end } do
      local reg = fb.registry()
      reg:register("s", "h", 1)
      local lb = fb.balancer(reg, algo)
      local v = lb:pick("s", "k")
      getmetatable(lb).__gc(lb); getmetatable(lb).__gc(lb)
      closed("pick", lb.pick, lb, "s", "k")
      closed("done", lb.done, lb, v, true, 0)
      closed("call", lb.call, lb, "s", function() end, "k")
      closed("registry", lb.registry, lb)
      closed("algorithm", lb.algorithm, lb)
      assert.matches("^fusebox.balancer closed", tostring(lb))
      assert.are.equal(1, #reg:discover("s")) -- the registry goes on
    end
  end)

  it("makes a closed breaker refuse every method, and its permits", function()
    local cb = fb.breaker()
    local permit = cb:acquire()
    local token = cb:permit()
    local gc = getmetatable(cb).__gc
    gc(cb); gc(cb)
    closed("call", cb.call, cb, function() end)
    closed("try", cb.try, cb, function() end)
    closed("permit", cb.permit, cb)
    closed("acquire", cb.acquire, cb)
    closed("record", cb.record, cb, token, true)
    closed("on", cb.on, cb, "outcome", function() end)
    for _, m in ipairs { "force_open", "disable", "reset", "metrics", "metrics_json" } do
      closed(m, cb[m], cb)
    end
    closed("transition", cb.transition, cb, 0)
    closed("state", function() return cb.state end)
    closed("success", permit.success, permit)
    assert.matches("^fusebox.breaker closed", tostring(cb))
  end)

  it("makes a breaker closed by its own listener a clean error", function()
    local cb = fb.breaker { failure_threshold = 1 }
    cb:on("outcome", function() getmetatable(cb).__gc(cb) end)
    assert.are.equal(7, cb:call(function() return 7 end))
    closed("call", cb.call, cb, function() end)
    local cb2 = fb.breaker { failure_threshold = 1 }
    cb2:on("state_change", function() getmetatable(cb2).__gc(cb2) end)
    local ok, err = pcall(cb2.call, cb2, function() error("boom") end)
    assert.is_false(ok)
    assert.matches("boom", err) -- fn's own error, re-raised after the listener
    closed("call", cb2.call, cb2, function() end)
  end)

  it("makes a balancer closed by its own strategy a clean error", function()
    local reg = fb.registry()
    reg:register("s", "h", 1)
    local lb
    lb = fb.balancer(reg, function(list, ctx)
      getmetatable(lb).__gc(lb)
      ctx.random()
      return 1
    end)
    closed("pick", lb.pick, lb, "s")
  end)
end)

-- Issue 14, item 1: every field of an instance view is read-only.
describe("instance views", function()
  it("refuse every write", function()
    local reg = fb.registry()
    reg:register("s", "10.0.0.1", 80)
    local v = reg:discover("s")[1]
    for _, field in ipairs { "host", "port", "id", "weight", "zone", "meta", "healthy", "x" } do
      local ok, err = pcall(function() v[field] = "evil" end)
      assert.is_false(ok, field)
      assert.matches("instance views are read-only (cannot set '" .. field .. "')", err, 1, true)
    end
    assert.is_false(pcall(setmetatable, v, {}))
    assert.are.equal("10.0.0.1", v.host)
    assert.are.equal(80, v.port)
    assert.are.equal("fusebox.instance 10.0.0.1:80", tostring(v))
    assert.are.equal(v, reg:discover("s")[1])
    local lb = fb.balancer(reg, "random")
    assert.are.equal(v, lb:pick("s"))
    assert.is_true(lb:done(v, true, 0))
    assert.are.equal("fusebox.instance", getmetatable(v))
  end)

  it("stay tied to their own registry, and outlive their instance", function()
    local r1, r2 = fb.registry(), fb.registry()
    r1:register("s", "h", 1); r2:register("s", "h", 1)
    local lb1, lb2 = fb.balancer(r1, "round_robin"), fb.balancer(r2, "round_robin")
    local v1, v2 = lb1:pick("s"), lb2:pick("s")
    assert.are_not.equal(v1, v2)
    local ok, err = pcall(lb1.done, lb1, v2, true, 0)
    assert.is_false(ok)
    assert.matches("not an instance of this balancer's registry", err, 1, true)
    assert.is_false(pcall(lb1.done, lb1, { id = v1.id }, true, 0))
    r1:deregister("s", "h", 1)
    r1:register("s", "h2", 2) -- may take the freed slot
    assert.is_false(lb1:done(v1, true, 0)) -- its instance is gone
    assert.are.equal("h", v1.host)
    assert.is_nil(v1.weight)
    assert.are.equal("h2", lb1:pick("s").host)
    assert.is_true(lb2:done(v2, true, 0))
  end)
end)

-- Found by tests/lifetime.t: argument errors raised through a shared
-- checker named fusebox's own source instead of the caller's line.
describe("argument errors", function()
  it("name the caller's line, not fusebox's", function()
    local reg = fb.registry()
    local lb = fb.balancer(reg, "round_robin")
    local cb = fb.breaker()
    for what, fn in pairs {
      discover = function() reg:discover(5) end,
      pick = function() lb:pick("") end,
      call = function() cb:call("not a function") end,
      try = function() cb:try(nil) end,
    } do
      local ok, err = pcall(fn)
      assert.is_false(ok, what)
      assert.matches("^tests/lua/gc_spec%.lua:%d+: bad argument #1 to '" .. what .. "'", err)
    end
  end)

  it("refuses to export an object whose __gc ran (a host would get a NULL pointer)", function()
    local cb = fb.breaker {}
    getmetatable(cb).__gc(cb)
    local ok, err = pcall(fb.export, "gone", cb)
    assert.is_false(ok)
    assert.matches("bad argument #2 to 'export' (fusebox.breaker is closed)", err, 1, true)
  end)
end)
