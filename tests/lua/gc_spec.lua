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

-- Finalizers that run inside fusebox's C functions: every allocation of
-- the Lua API may step the collector, which may run a finalizer, which
-- may close an object by hand, deregister or register (src/lua_util.h,
-- fbl_check_object). Here the collector steps at every kilobyte, and
-- a steady supply of finalizers (each collected one leaves another)
-- acts on the objects of the round in progress, wherever a step finds
-- it, so some land inside the C function the round calls: every outcome
-- must be a success or the clean "closed" error, and freed memory is
-- never read (the ASan build shows that).
describe("finalizers inside fusebox's C functions", function()
  local function core_of()
    for i = 1, 64 do
      local name, v = debug.getupvalue(fb.reporter, i)
      if name == nil then break end
      if name == "core" then return v end
    end
    error("fb.reporter has no upvalue 'core'")
  end
  local core = core_of()

  local function close(obj) getmetatable(obj).__gc(obj) end

  -- luassert inside the rounds would cost milliseconds each with the
  -- collector this busy: a failed check is an error racing reports.
  local function check(ok, what)
    if not ok then error(what, 2) end
  end
  local function same(want, got, what)
    if want ~= got then
      error(string.format("%s: %s expected, got %s", what, tostring(want), tostring(got)), 2)
    end
  end

  -- Runs round(i, state) for i = 1..n while finalizers call act(state)
  -- (its errors stay inside it: what is checked is the outcome of the C
  -- function it runs in). Each round succeeds or raises exactly the
  -- message closed; returns how many did which.
  local function racing(n, closed, round, act)
    local counts, other, state, on = { ok = 0, closed = 0 }, nil, {}, true
    local finalizing = false
    local supply = newproxy(true)
    getmetatable(supply).__gc = function()
      if on then
        finalizing = true
        pcall(act, state)
        newproxy(supply) -- the next one, garbage at once
      end
    end
    for _ = 1, 10000 do newproxy(supply) end
    local function rounds()
      for i = 1, n do
        local ok, err = pcall(round, i, state)
        local _ = ("x"):rep(1000) .. i -- a step per round, even a cheap one
        if ok then
          counts.ok = counts.ok + 1
        elseif tostring(err):find(closed, 1, true) then
          counts.closed = counts.closed + 1
        else
          other = other or tostring(err)
        end
      end
    end
    jit.off(rounds, true)
    local pause, stepmul = collectgarbage("setpause", 1), collectgarbage("setstepmul", 1000)
    repeat collectgarbage("step", 0) until finalizing -- from the first round on
    local ok, err = pcall(rounds)
    on = false
    collectgarbage("setpause", pause); collectgarbage("setstepmul", stepmul)
    collectgarbage()
    assert(ok, err)
    assert.is_nil(other)
    return counts
  end

  local function met(c)
    assert.is_true(c.closed > 0 and c.ok > 0,
      "the race was not met: " .. c.ok .. " ok, " .. c.closed .. " closed")
  end

  it("lets a finalizer close the registry while fb.balancer builds one", function()
    met(racing(1000, "bad argument #1 to 'balancer' (fusebox.registry is closed)", function(round, st)
      st.reg = fb.registry()
      st.reg:register("s", "h", 1)
      local opts = round % 3 == 0 and { outlier = { consecutive_5xx = 2 } } or nil
      local lb = fb.balancer(st.reg, round % 2 == 0 and "random" or "round_robin", opts)
      if opts then check(lb:outlier(), "a detector") end
    end, function(st) close(st.reg) end))
  end)

  it("lets a finalizer close the registry while fb.outlier builds a detector", function()
    met(racing(1000, "bad argument #1 to 'outlier' (fusebox.registry is closed)", function(_, st)
      st.reg = fb.registry()
      local d = fb.outlier(st.reg, { consecutive_5xx = 3 })
      same(0, d:stats().ejected, "ejected")
    end, function(st) close(st.reg) end))
  end)

  it("lets a finalizer close the detector fb.balancer is given", function()
    local reg = fb.registry()
    reg:register("s", "h", 1)
    met(racing(1000, "bad argument #3 to 'balancer' (outlier: fusebox.outlier is closed)", function(_, st)
      st.d = fb.outlier(reg, { consecutive_5xx = 1 })
      local lb = fb.balancer(reg, "round_robin", { outlier = st.d })
      lb:done(lb:pick("s"), true, 0)
    end, function(st) close(st.d) end))
  end)

  it("lets a finalizer deregister instances and close the detector while its events are read", function()
    local rows, cut = 0, 0
    T.vrun(function()
      racing(60, "never raised", function(round, st)
        st.reg, st.d = nil, nil
        local reg = fb.registry()
        for port = 1, 20 do reg:register("s", "h" .. port, port) end
        local d = fb.outlier(reg, { consecutive_5xx = 1, max_ejection_percent = 100,
          base_ejection_time = 1, interval = 1000 })
        local lb = fb.balancer(reg, "round_robin", { outlier = d })
        for _ = 1, 20 do lb:done(lb:pick("s"), false, 0) end -- each ejected, its event read
        fb.sleep(2)
        d:tick() -- 20 readmits pending
        st.reg, st.d, st.k, st.budget, st.close = reg, d, round, 6, round % 3 == 0
        local list = core.outlier_events(d) or {}
        st.reg, st.d = nil, nil
        check(#list <= 20, "at most 20 events")
        for _, e in ipairs(list) do
          same(false, e.eject, "eject")
          check(type(e.id) == "number", "an id")
          if e.host then
            same("s", e.service, "service")
            same("h" .. e.port, e.host, "host")
          end
          rows = rows + 1
        end
        if #list < 20 then cut = cut + 1 end
      end, function(st)
        if not st.reg or st.budget == 0 then return end
        st.budget = st.budget - 1
        st.k = st.k + 7
        st.reg:deregister("s", "h" .. st.k % 20 + 1, st.k % 20 + 1)
        st.reg:register("s", "x" .. st.k, 1)
        if st.close then close(st.d) end
      end)
    end)
    assert.is_true(rows > 0 and cut > 0, "the race was not met: " .. rows .. " rows, " .. cut .. " cut")
  end)

  it("lets a finalizer close the registry while a backend is made for it", function()
    met(racing(1000, "bad argument #1 to 'registry_backend' (fusebox.registry is closed)", function(_, st)
      st.reg = fb.registry()
      local b = core.registry_backend(st.reg)
      same(0, b:queued(), "queued")
    end, function(st) close(st.reg) end))
  end)

  it("lets a finalizer queue, take and close while a backend's ops are taken", function()
    local taken = 0
    met(racing(400, "fusebox.registry_backend is closed", function(round, st)
      st.b = nil
      local reg = fb.registry()
      local b = core.registry_backend(reg)
      for port = 1, 10 do reg:register("s", "h" .. port, port) end
      st.reg, st.b, st.k, st.budget, st.mode = reg, b, 100, 5, round % 3
      local seen = {}
      local ops = b:take()
      st.b = nil
      for _, op in ipairs(ops) do
        same("register", op[1], "op")
        same("s", op[2], "service")
        same("h" .. op[4], op[3], "host")
        check(not seen[op[4]], "an op taken twice")
        seen[op[4]] = true
        taken = taken + 1
      end
      b:queued()
    end, function(st)
      if not st.b or st.budget == 0 then return end
      st.budget = st.budget - 1
      st.k = st.k + 1
      st.reg:register("s", "h" .. st.k, st.k) -- queued while take runs
      if st.mode == 1 then st.b:take() elseif st.mode == 2 then close(st.b) end
    end))
    assert.is_true(taken > 0)
  end)

  it("lets a finalizer deregister the instance a backend reports", function()
    local reg = fb.registry()
    local b = core.registry_backend(reg)
    local found, hit = 0, 0
    racing(300, "never raised", function(round, st)
      local zone = "zone-" .. round
      b:put("s", "h", 1, 2, zone)
      st.on = true
      local w, z, id = b:info("s", "h", 1)
      st.on = false
      if w then
        same(2, w, "weight")
        same(zone, z, "zone")
        check(type(id) == "number", "an id")
        found = found + 1
      end
      b:take()
    end, function(st)
      if st.on and reg:deregister("s", "h", 1) then hit = hit + 1 end
    end)
    assert.is_true(found > 0 and hit > 0, "the race was not met: " .. found .. " found, " .. hit .. " hit")
  end)

  it("lets a finalizer deregister, add services and close the registry during the catalog walks", function()
    local rows = 0
    met(racing(250, "bad argument #1 to 'registry_", function(round, st)
      local reg = fb.registry()
      for i = 1, 12 do reg:register("s" .. i % 4, "h" .. i, i) end
      st.reg, st.k, st.budget, st.close = reg, round, 8, round % 5 == 0
      for _, name in ipairs(core.registry_services(reg)) do
        check(name:find("^[st]%d+$"), "a service name")
      end
      local _, members = core.registry_stats(reg)
      for _, m in ipairs(members) do
        if m.service:find("^s") then
          same("h" .. m.port, m.host, "host")
          same("s" .. m.port % 4, m.service, "service")
        else
          same("t" .. m.host:sub(2), m.service, "service")
        end
        same(true, m.live, "live")
        rows = rows + 1
      end
      check(type(core.registry_index(reg, 7)) == "number", "an index") -- converts 7: allocates
    end, function(st)
      if not st.reg or st.budget == 0 then return end
      st.budget = st.budget - 1
      st.k = st.k + 5
      st.reg:deregister("s" .. st.k % 4, "h" .. st.k % 12 + 1, st.k % 12 + 1)
      st.reg:register("t" .. st.k, "n" .. st.k, 1)
      if st.close then close(st.reg) end
    end))
    assert.is_true(rows > 0)
  end)

  it("lets a finalizer close the registry while register drops the meta of reaped instances", function()
    local hit = 0
    T.vrun(function()
      racing(400, "calling 'register' on bad self (fusebox.registry is closed)", function(round, st)
        local reg = fb.registry { heartbeat_timeout = 1, reap_after = 1 }
        for port = 1, 4 do reg:register("s", "h", port, { meta = { port = port } }) end
        fb.sleep(3) -- all four due to be reaped: register's walk reaps them
        local opts = { meta = { port = 9 } }
        local _ = ("x"):rep(1100) .. round -- the next allocation steps the
        st.reg = reg -- collector: the new env.meta's, once registered
        reg:register("s", "h", 9, opts)
        if st.reg then
          st.reg = nil
          local v = reg:discover("s")[1]
          same(9, v.port, "port")
          same(9, v.meta.port, "meta")
        else
          hit = hit + 1 -- closed after registering, while dropping
        end
      end, function(st)
        if st.reg then close(st.reg); st.reg = false end
      end)
    end)
    assert.is_true(hit > 0, "the race was not met")
  end)

  it("lets an options table's metamethod close the object it configures", function()
    -- lua_getfield runs __index: Lua code, like a finalizer
    local function closing(obj)
      return setmetatable({}, { __index = function() close(obj) end })
    end
    local cases = {
      { "balancer", function(reg) local lb = fb.balancer(reg, "random", closing(reg)); return lb end,
        "bad argument #1 to 'balancer' (fusebox.registry is closed)" },
      { "outlier", function(reg) local d = fb.outlier(reg, closing(reg)); return d end,
        "bad argument #1 to 'outlier' (fusebox.registry is closed)" },
      { "register", function(reg) local added = reg:register("s", "h", 1, closing(reg)); return added end,
        "calling 'register' on bad self (fusebox.registry is closed)" },
    }
    for _, case in ipairs(cases) do
      local ok, err = pcall(case[2], fb.registry())
      assert.is_false(ok, case[1])
      assert.matches(case[3], err, 1, true)
    end
  end)

  it("lets a finalizer close an HTTP parser while it pushes a message", function()
    local hdrs = {}
    for i = 1, 30 do hdrs[#hdrs + 1] = "x-h" .. i .. ": " .. ("v"):rep(40) .. i .. "\r\n" end
    local request = "POST /p?q=1 HTTP/1.1\r\nhost: a\r\n" .. table.concat(hdrs)
      .. "content-length: 5\r\n\r\nhello"
    local hit = 0
    met(racing(600, "fusebox.http_parser is closed", function(_, st)
      local p = core.http_parser("request", 1e6)
      st.p = p
      local used, msg = p:feed(request)
      if not st.p then hit = hit + 1 end -- closed by a push: the message is whole
      st.p = nil
      same(#request, used, "consumed")
      same("/p?q=1", msg.url, "url")
      same("hello", msg.body, "body")
      for i = 1, 30 do same(("v"):rep(40) .. i, msg.headers["x-h" .. i], "header") end
      p:feed(request) -- closed now, or still open
    end, function(st)
      if st.p then close(st.p); st.p = false end
    end))
    assert.is_true(hit > 0, "the race was not met")
  end)

  -- A finalizer may run another method of the parser inside a push (here
  -- take_body, which pushes too) before another closes it: the buffers
  -- stay until the outer method is done as well (its pushes read them:
  -- under ASan a use-after-free when the inner method's end let __gc
  -- free them).
  it("lets a finalizer run a parser method, then close it, while it pushes", function()
    local hdrs = {}
    for i = 1, 30 do hdrs[#hdrs + 1] = "x-h" .. i .. ": " .. ("v"):rep(40) .. i .. "\r\n" end
    local request = "POST /p?q=1 HTTP/1.1\r\nhost: a\r\n" .. table.concat(hdrs)
      .. "content-length: 5\r\n\r\nhello"
    local nested = 0
    met(racing(600, "fusebox.http_parser is closed", function(_, st)
      local p = core.http_parser("request", 1e6)
      st.p, st.inner = p, false
      local used, msg = p:feed(request)
      st.p = nil
      same(#request, used, "consumed")
      same("/p?q=1", msg.url, "url")
      check(msg.body == "hello" or msg.body == "", "body")
      for i = 1, 30 do same(("v"):rep(40) .. i, msg.headers["x-h" .. i], "header") end
      p:feed(request) -- closed now, or still open
    end, function(st)
      if st.p and not st.inner then
        st.inner = true
        if pcall(st.p.take_body, st.p) then nested = nested + 1 end
      elseif st.p then
        close(st.p); st.p = false
      end
    end))
    assert.is_true(nested > 0, "no method ran inside another")
  end)

  it("lets a finalizer close a socket as a read parks on it", function()
    local hit = 0
    fb.run(function()
      local srv = assert(fb.tcp.listen { port = 0, handler = function(s)
        s:write("x")
        s:read(1)
        s:close()
      end })
      racing(150, "never raised", function(round, st)
        local c = assert(fb.tcp.connect("127.0.0.1", srv:port(), { timeout = 2 }))
        local _ = ("x"):rep(1100) .. round -- the next allocation steps the
        st.c, st.gc = c, round % 2 == 0 -- collector: the string read parks
        local data, err = c:read(0.2) -- with, or the one the data arrives in
        st.c = nil
        if err == "closed" then
          hit = hit + 1 -- closed before it parked, or woken by the close
        elseif not (st.gc and err == "timeout") then -- a __gc wakes no one
          same("x", data, "data")
        end
        c:close()
      end, function(st)
        if st.c then
          if st.gc then close(st.c) else st.c:close() end
        end
      end)
      srv:close()
    end)
    assert.is_true(hit > 0, "the race was not met")
  end)

  it("lets a finalizer close a breaker while its stats are pushed", function()
    local hit = 0
    local c = racing(1000, "never raised", function(round, st)
      local cb = fb.breaker()
      cb:force_open(); cb:reset()
      local _ = ("x"):rep(1100) .. round -- past a step's worth: the next
      st.cb = cb -- allocation, the call's first push, steps the collector
      local state, s, f, r, transitions = core.breaker_stats(cb)
      st.cb = nil
      same("CLOSED", state, "state")
      same(0, s + f + r, "counts")
      same(2, transitions, "transitions") -- read before the pushes
    end, function(st)
      if st.cb then
        close(st.cb)
        st.cb, hit = nil, hit + 1
      end
    end)
    assert.are.equal(1000, c.ok)
    assert.is_true(hit > 0, "the race was not met")
  end)

  it("lets a finalizer close a zone while its info is read and a breaker is made in it", function()
    local dir = os.getenv("TMPDIR") or "/tmp"
    met(racing(300, "zone is closed", function(_, st)
      st.z = fb.zone { name = "gc_spec", size = 65536, dir = dir }
      same("gc_spec", st.z:info().name, "name")
      local cb = fb.breaker { name = "b", zone = st.z }
      same("CLOSED", cb.state, "state")
    end, function(st) close(st.z) end))
  end)
end)
