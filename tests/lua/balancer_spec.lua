-- Balancers through the Lua API: algorithms by name with options,
-- pick/done/call and their accounting, health, Lua strategies (named,
-- anonymous, failing), the shipped strategies, and GC order.
local fb = require "fusebox"
local strategies = fb.strategies

local function errmsg(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  return tostring(err)
end

local function assert_error(fn, needle)
  local err = errmsg(fn)
  assert.truthy(err:find(needle, 1, true), "got: " .. err)
end

local function hosts(lb, service, n, key)
  local out = {}
  for i = 1, n do
    local inst = lb:pick(service, key)
    out[i] = inst.host
    lb:done(inst, true, 0)
  end
  return table.concat(out, " ")
end

describe("balancer", function()
  it("keeps the document's round robin", function()
    T.vrun(function()
      local reg = fb.registry()
      reg:register("s", "a", 1)
      reg:register("s", "b", 1)
      local lb = fb.balancer(reg, "round_robin")
      assert.are.equal("a b a", hosts(lb, "s", 3))
      reg:register("s", "c", 1)
      assert.are.equal("a b c", hosts(lb, "s", 3)) -- counter 3 of 3
      assert.is_nil(lb:pick("nobody"))
    end)
  end)

  it("runs nginx's smooth WRR from register weights", function()
    T.vrun(function()
      local reg = fb.registry()
      reg:register("s", "a", 1, { weight = 5 })
      reg:register("s", "b", 1)
      reg:register("s", "c", 1)
      local lb = fb.balancer(reg, "weighted_round_robin")
      assert.are.equal("a a b a c a a", hosts(lb, "s", 7))
      reg:register("s", "a", 1, { weight = 1 }) -- new weights, new sequence
      assert.are.equal("a b c", hosts(lb, "s", 3))
    end)
  end)

  it("maps equal keys to the same instance", function()
    T.vrun(function()
      local reg = fb.registry()
      for i = 1, 10 do reg:register("s", "h" .. i, 1) end
      for _, algo in ipairs { "consistent_hash", "maglev" } do
        local lb = fb.balancer(reg, algo)
        local first = lb:pick("s", "user-42")
        lb:done(first, true, 0)
        for _ = 1, 20 do
          local inst = lb:pick("s", "user-42")
          assert.are.equal(first, inst)
          lb:done(inst, true, 0)
        end
      end
    end)
  end)

  it("exposes instance data and live statistics on views", function()
    T.vrun(function()
      local reg = fb.registry()
      reg:register("s", "a", 1, { weight = 3, zone = "z1", meta = { version = "v2" } })
      local lb = fb.balancer(reg, "round_robin")
      local inst = lb:pick("s")
      assert.are.equal(1, inst.inflight)
      fb.sleep(1)
      assert.is_true(lb:done(inst, false, 0.25))
      assert.are.same({ 3, "z1", "v2", true, 0, 0, 1, 0.25 }, {
        inst.weight, inst.zone, inst.meta.version, inst.healthy,
        inst.inflight, inst.successes, inst.failures, inst.latency })
      assert.are.equal(inst, reg:discover("s")[1]) -- one view per instance
      assert_error(function() inst.weight = 9 end, "instance views are read-only")
      reg:heartbeat("s", "a", 1) -- statistics survive heartbeats
      reg:register("s", "a", 1) -- and re-registration; options are kept
      assert.are.same({ 1, 3, "z1" }, { inst.failures, inst.weight, inst.zone })
      reg:deregister("s", "a", 1)
      assert.is_nil(inst.weight)
      assert.are.equal("a", inst.host)
    end)
  end)

  it("times call() on the runtime clock and reports failures", function()
    T.vrun(function()
      local reg = fb.registry()
      reg:register("s", "a", 1)
      local lb = fb.balancer(reg, "least_request")
      assert.are.equal("a", lb:call("s", function(inst)
        fb.sleep(2)
        return inst.host
      end))
      local inst = reg:discover("s")[1]
      assert.are.same({ 1, 0, 2 }, { inst.successes, inst.inflight, inst.latency })
      assert_error(function() lb:call("s", function() error("down") end) end, "down")
      assert.are.same({ 1, 0 }, { inst.failures, inst.inflight })
      assert_error(function() lb:call("none", function() end) end,
        "no live instance of service 'none'")
    end)
  end)

  it("skips instances marked down, and panics below the threshold", function()
    T.vrun(function()
      local reg = fb.registry()
      for _, h in ipairs { "a", "b", "c", "d" } do reg:register("s", h, 1) end
      local lb = fb.balancer(reg, "round_robin")
      assert.is_true(reg:mark_down("s", "b", 1))
      assert.is_false(reg:mark_down("s", "x", 1))
      assert.is_false(reg:discover("s")[2].healthy)
      assert.are.equal("a c d a c d", hosts(lb, "s", 6))
      reg:mark_down("s", "c", 1)
      reg:mark_down("s", "d", 1) -- 1 of 4 healthy < 0.5: all of them
      assert.are.equal("c d a b", hosts(lb, "s", 4))
      local strict = fb.balancer(reg, "round_robin", { panic_threshold = 0.2 })
      assert.are.equal("a a", hosts(strict, "s", 2))
      reg:mark_up("s", "b", 1)
      assert.are.equal("a b a", hosts(strict, "s", 3))
    end)
  end)

  describe("bad input", function()
    local reg = fb.registry()
    reg:register("s", "a", 1)
    local other = fb.registry()
    other:register("s", "a", 1)
    local lb = fb.balancer(reg, "round_robin")
    local cases = {
      { "unknown algorithm", function() fb.balancer(reg, "fastest") end,
        "unknown algorithm 'fastest' (known: round_robin, random, weighted_round_robin, "
        .. "least_request, peak_ewma, consistent_hash, maglev" },
      { "algorithm of wrong type", function() fb.balancer(reg, 42) end,
        "algorithm must be a string, got number" },
      { "unknown option", function() fb.balancer(reg, "round_robin", { choices = 2 }) end,
        "bad argument #3 to 'balancer' (unknown option 'choices')" },
      { "bad choices", function() fb.balancer(reg, "least_request", { choices = 0 }) end,
        "choices must be a positive integer" },
      { "too many choices", function() fb.balancer(reg, "peak_ewma", { choices = 65 }) end,
        "choices must be an integer 1..64, got 65" },
      { "bad decay", function() fb.balancer(reg, "peak_ewma", { decay = -1 }) end,
        "decay must be a positive number" },
      { "bad table size", function() fb.balancer(reg, "maglev", { table_size = 1000 }) end,
        "table_size must be a prime 3..67108864, got 1000" },
      { "bad panic threshold", function() fb.balancer(reg, "random", { panic_threshold = 2 }) end,
        "panic_threshold must be a number 0..1" },
      { "weight 0", function() reg:register("s", "b", 1, { weight = 0 }) end,
        "bad argument #4 to 'register' (weight must be an integer 1..1000000, got 0)" },
      { "fractional weight", function() reg:register("s", "b", 1, { weight = 1.5 }) end,
        "weight must be an integer 1..1000000, got 1.5" },
      { "weight string", function() reg:register("s", "b", 1, { weight = "2" }) end,
        "weight must be an integer 1..1000000, got string" },
      { "empty zone", function() reg:register("s", "b", 1, { zone = "" }) end,
        "zone must not be empty" },
      { "meta not a table", function() reg:register("s", "b", 1, { meta = 1 }) end,
        "meta must be a table, got number" },
      { "register option", function() reg:register("s", "b", 1, { tags = {} }) end,
        "unknown option 'tags'" },
      { "key of wrong type", function() lb:pick("s", 42) end,
        "bad argument #2 to 'pick' (key must be a string, got number)" },
      { "call key", function() lb:call("s", function() end, {}) end,
        "bad argument #3 to 'call' (key must be a string, got table)" },
      { "call without fn", function() lb:call("s") end,
        "bad argument #2 to 'call' (function expected, got nil)" },
      { "done twice", function()
          local inst = lb:pick("s")
          lb:done(inst, true, 0)
          lb:done(inst, true, 0)
        end, "done: no pick of a:1 is in flight (done called twice for one pick?)" },
      { "done without pick", function() lb:done(reg:discover("s")[1], true, 0) end,
        "no pick of a:1 is in flight" },
      { "foreign instance", function() lb:done(other:discover("s")[1], true, 0) end,
        "bad argument #1 to 'done' (not an instance of this balancer's registry" },
      { "plain table", function() lb:done({ host = "a", port = 1 }, true, 0) end,
        "not an instance of this balancer's registry" },
      { "ok not boolean", function() lb:done(reg:discover("s")[1], 1, 0) end,
        "bad argument #2 to 'done' (ok must be true, false or \"gateway\", got number)" },
      { "negative latency", function() lb:done(reg:discover("s")[1], true, -1) end,
        "bad argument #3 to 'done' (latency must be a non-negative number of seconds, got -1)" },
      { "strategy name", function() fb.strategy("", function() end) end,
        "bad argument #1 to 'strategy' (name must be a non-empty string" },
      { "strategy shadows built-in", function() fb.strategy("random", function() end) end,
        "'random' is a built-in algorithm" },
      { "strategy not a function", function() fb.strategy("x", 1) end,
        "bad argument #2 to 'strategy' (function expected, got number)" },
      { "strategy option", function() fb.balancer(reg, function() end, { choices = 2 }) end,
        "unknown option 'choices'" },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        T.vrun(function() assert_error(c[2], c[3]) end)
      end)
    end

    it("never lets in-flight go negative", function()
      T.vrun(function()
        local inst = reg:discover("s")[1]
        assert.are.equal(0, inst.inflight)
        pcall(lb.done, lb, inst, true, 0)
        assert.are.equal(0, inst.inflight)
      end)
    end)
  end)

  describe("strategies written in Lua", function()
    it("sees the candidates with their data, and ctx", function()
      T.vrun(function()
        local reg = fb.registry()
        reg:register("s", "a", 1, { zone = "z1" })
        reg:register("s", "b", 1, { zone = "z2" })
        reg:register("s", "c", 1, { zone = "z2" })
        reg:mark_down("s", "c", 1)
        local seen
        local lb = fb.balancer(reg, function(instances, ctx)
          seen = { n = #instances, zone = instances[2].zone, key = ctx.key,
                   service = ctx.service, now = ctx.now, r = ctx.random(5) }
          return instances[2]
        end)
        fb.sleep(3)
        local inst = lb:pick("s", "k")
        assert.are.equal("b", inst.host)
        assert.are.equal(1, inst.inflight)
        assert.is_true(lb:done(inst, true, 0.1))
        assert.are.same({ 2, "z2", "k", "s", 3 },
          { seen.n, seen.zone, seen.key, seen.service, seen.now })
        assert.is_true(seen.r >= 1 and seen.r <= 5 and seen.r % 1 == 0)
        assert.are.equal("anonymous", lb:algorithm())
      end)
    end)

    it("draws the same random numbers for the same seed", function()
      local function run()
        local picks = {}
        T.vrun(function()
          local reg = fb.registry()
          for i = 1, 8 do reg:register("s", "h" .. i, 1) end
          local lb = fb.balancer(reg, function(instances, ctx)
            return ctx.random(#instances)
          end)
          for i = 1, 20 do picks[i] = lb:pick("s").host end
        end, 7)
        return table.concat(picks, " ")
      end
      assert.are.equal(run(), run())
    end)

    it("registers named strategies", function()
      T.vrun(function()
        fb.strategy("last", function(instances) return #instances end)
        local reg = fb.registry()
        reg:register("s", "a", 1)
        reg:register("s", "b", 1)
        local lb = fb.balancer(reg, "last")
        assert.are.equal("last", lb:algorithm())
        assert.are.equal("b b", hosts(lb, "s", 2))
        assert_error(function() fb.balancer(reg, "nope") end, "maglev, last")
      end)
    end)

    it("reports errors with the strategy's name and a traceback", function()
      T.vrun(function()
        local reg = fb.registry()
        reg:register("s", "a", 1)
        reg:register("s", "b", 1)
        local calls = 0
        local lb = fb.balancer(reg, function(instances)
          calls = calls + 1
          if calls == 1 then error("kaboom") end
          if calls == 2 then return 3 end
          if calls == 3 then return { host = "a", port = 1 } end
          if calls == 4 then return nil end
          return instances[1]
        end, { name = "flaky" })
        local err = errmsg(lb.pick, lb, "s")
        assert.truthy(err:find("balancer strategy 'flaky' failed: ", 1, true), err)
        assert.truthy(err:find("kaboom", 1, true), err)
        assert.truthy(err:find("stack traceback", 1, true), err)
        assert_error(function() lb:pick("s") end,
          "balancer strategy 'flaky' returned 3: want one of the 2 instances it was given, or an index 1..2")
        assert_error(function() lb:pick("s") end, "balancer strategy 'flaky' returned table")
        assert_error(function() lb:pick("s") end, "balancer strategy 'flaky' returned nil")
        for _, inst in ipairs(reg:discover("s")) do assert.are.equal(0, inst.inflight) end
        local inst = lb:pick("s") -- still works
        assert.are.equal("a", inst.host)
        assert.are.equal(1, inst.inflight)
      end)
    end)

    it("cannot be confused by a strategy that edits its list", function()
      T.vrun(function()
        local reg = fb.registry()
        reg:register("s", "a", 1)
        reg:register("s", "b", 1)
        local lb = fb.balancer(reg, function(instances)
          instances[1] = "junk"
          return 1
        end)
        assert.are.equal("a", lb:pick("s").host)
        assert.are.equal("a", lb:pick("s").host)
      end)
    end)

    it("zone_aware prefers the zone and falls back", function()
      T.vrun(function()
        local reg = fb.registry()
        reg:register("s", "a1", 1, { zone = "a" })
        reg:register("s", "b1", 1, { zone = "b" })
        reg:register("s", "b2", 1, { zone = "b" })
        local lb = fb.balancer(reg, strategies.zone_aware { zone = "a" })
        assert.are.equal("a1 a1 a1", hosts(lb, "s", 3))
        reg:mark_down("s", "a1", 1)
        local seen = {}
        for _ = 1, 20 do seen[lb:pick("s").host] = true end
        assert.are.same({ b1 = true, b2 = true }, seen)
        assert_error(function() strategies.zone_aware {} end, "zone must be a non-empty string")
        assert_error(function() strategies.zone_aware { zone = "a", spill = 1 } end,
          "unknown option 'spill'")
      end)
    end)

    it("latency_aware avoids slow and failing instances", function()
      T.vrun(function()
        local reg = fb.registry()
        for _, h in ipairs { "fast", "slow", "failing" } do reg:register("s", h, 1) end
        local lb = fb.balancer(reg, strategies.latency_aware())
        local cost = { fast = { true, 0.01 }, slow = { true, 0.5 }, failing = { false, 0.01 } }
        local count = { fast = 0, slow = 0, failing = 0 }
        for _ = 1, 900 do
          local inst = lb:pick("s")
          count[inst.host] = count[inst.host] + 1
          lb:done(inst, cost[inst.host][1], cost[inst.host][2])
        end
        -- Two samples: the worst (slow) wins only against itself (1/9),
        -- the middle one (failing) against itself or the worst (3/9).
        local got = string.format("fast %d failing %d slow %d", count.fast, count.failing, count.slow)
        assert.is_true(count.fast > 420 and count.fast < 580, got)
        assert.is_true(count.failing > 220 and count.failing < 380, got)
        assert.is_true(count.slow > 50 and count.slow < 150, got)
      end)
    end)
  end)

  it("keeps its registry alive, whichever is collected first", function()
    T.vrun(function()
      local reg = fb.registry()
      reg:register("s", "a", 1)
      local lb = fb.balancer(reg, "maglev")
      assert.are.equal("a", lb:pick("s", "k").host)
      getmetatable(reg).__gc(reg) -- the registry userdata goes first
      assert_error(function() reg:register("s", "b", 1) end, "closed")
      local inst = lb:pick("s", "k") -- the core registry is still there
      assert.are.equal("a", inst.host)
      assert.is_true(lb:done(inst, true, 0))
      reg, lb, inst = nil, nil, nil
      collectgarbage()
      collectgarbage()
    end)
  end)
end)

describe("the loop-cached clock of picks (issue 15)", function()
  local function expired_after(wait)
    local reg = fb.registry { heartbeat_timeout = 0.05 }
    reg:register("svc", "10.0.0.1", 80)
    local lb = fb.balancer(reg, "round_robin")
    assert.is_not_nil(lb:pick("svc"))
    wait(0.08)
    return lb:pick("svc")
  end

  it("is refreshed when a coroutine resumes: an instance expires on time", function()
    local picked = "not run"
    fb.run(function() picked = expired_after(fb.sleep) end)
    assert.is_nil(picked)
  end)

  it("is the clock itself outside a run, as in a host", function()
    local function spin(s) -- no yield: wall time passes, no coroutine resumes
      local t0 = fb.now()
      while fb.now() - t0 <= s do end
    end
    assert.is_nil(expired_after(spin))
  end)
end)
