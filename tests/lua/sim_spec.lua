-- fb.sim: service models, their streams, guarded calls and instances.
local fb = require "fusebox"

local function errmsg(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  return err
end

describe("fb.sim.service", function()
  it("rejects bad models with the field named", function()
    T.vrun(function()
      local cases = {
        { { failure_rate = -0.1 }, "failure_rate must be a number in [0, 1], got -0.1" },
        { { failure_rate = 1.5 }, "failure_rate must be a number in [0, 1], got 1.5" },
        { { hang_rate = "x" }, "hang_rate must be a number in [0, 1], got x" },
        { { latency = -1 }, "latency must be a number >= 0, got -1" },
        { { latency = { dist = "constant", value = -2 } }, "latency.value must be a number >= 0, got -2" },
        { { latency = { dist = "lognormal", p50 = 0.3, p99 = 0.02 } },
          "latency.p99 must be >= latency.p50 (0.3), got 0.02" },
        { { latency = { dist = "lognormal", p50 = 0.3 } }, "latency.p99 must be a positive number, got nil" },
        { { latency = { dist = "gamma" } }, "latency.dist must be one of constant, uniform, exponential, lognormal, got gamma" },
        { { latency = { dist = "uniform", min = 2, max = 1 } }, "latency.max must be a number >= 2, got 1" },
        { { latency = { dist = "exponential", p50 = 1 } }, "unknown field 'latency.p50' (known: dist, mean)" },
        { { failure_ratio = 0.7 }, "unknown field 'failure_ratio'" },
        { { errors = { refused = -1 } }, "errors.refused must be a number >= 0, got -1" },
        { { outages = { { at = 10, duration = -5 } } }, "outages[1].duration must be a positive number, got -5" },
        { { flap = { period = 5, down = 5 } }, "flap.down must be less than flap.period (5), got 5" },
        { { degrade = { from = 10, to = 5 } }, "degrade.to must be a number >= 10, got 5" },
        { { recover_after = -1 }, "recover_after must be a number >= 0, got -1" },
      }
      for _, c in ipairs(cases) do
        local err = errmsg(function() fb.sim.service(c[1]) end)
        assert.truthy(err:find("bad argument #1 to 'service' (" .. c[2], 1, true), err)
        assert.truthy(err:find("^[^:]*sim_spec.lua:%d+:"), err) -- at the caller's line
      end
      assert.truthy(errmsg(fb.sim.service, 42):find("model must be a table or a function", 1, true))
    end)
  end)

  it("refuses a list option of the wrong shape, naming the field", function()
    T.vrun(function()
      local cases = {
        { { at = 1, duration = 5 }, "outages must be a list of tables, got a table with key 'at'" },
        { 5, "outages must be a list of tables, got number" },
        { { { at = 1, duration = 5 }, 3 }, "outages[2] must be a table, got number" },
        { { [1] = { at = 1, duration = 1 }, [3] = { at = 5, duration = 1 } },
          "outages must be a list of tables, got a table with key 3" },
        { { { at = 1, duration = 5 }, { at = 2, duration = "x" } },
          "outages[2].duration must be a positive number, got x" },
      }
      for _, c in ipairs(cases) do
        local err = errmsg(function() fb.sim.service { outages = c[1] } end)
        assert.truthy(err:find("bad argument #1 to 'service' (" .. c[2] .. ")", 1, true), err)
        assert.truthy(err:find("^[^:]*sim_spec.lua:%d+:"), err)
      end
      local svc = fb.sim.service { outages = {} } -- an empty list is a list
      assert.are.equal("ok", svc())
    end)
  end)

  it("fails at the configured rate, as values, after the drawn latency", function()
    T.vrun(function()
      local svc = fb.sim.service { failure_rate = 0.7, latency = 0.25, value = "fine" }
      local failures = 0
      for _ = 1, 10000 do
        local t0 = fb.now()
        local v, err = svc()
        assert.are.equal(0.25, fb.now() - t0)
        if v == nil then
          assert.are.equal("service call failed", err)
          failures = failures + 1
        else
          assert.are.equal("fine", v)
        end
      end
      assert.is_true(math.abs(failures - 7000) < 200, tostring(failures))
      assert.are.same({ 10000, failures, 10000 - failures }, { svc.calls, svc.failures, svc.successes })
    end)
  end)

  it("draws latencies from each distribution", function()
    T.vrun(function()
      local function sample(latency, n)
        local svc, out = fb.sim.service { latency = latency }, {}
        for i = 1, n do local t0 = fb.now(); svc(); out[i] = fb.now() - t0 end
        table.sort(out)
        return out
      end
      local u = sample({ dist = "uniform", min = 0.1, max = 0.3 }, 2000)
      assert.is_true(u[1] >= 0.1 and u[#u] <= 0.3)
      local e, sum = sample({ dist = "exponential", mean = 0.2 }, 20000), 0
      for _, x in ipairs(e) do sum = sum + x end
      assert.is_true(math.abs(sum / #e - 0.2) < 0.01, tostring(sum / #e))
      local l = sample({ dist = "lognormal", p50 = 0.02, p99 = 0.3 }, 20000)
      assert.is_true(math.abs(l[10000] - 0.02) < 0.002, tostring(l[10000]))
      assert.is_true(math.abs(l[19800] - 0.3) < 0.04, tostring(l[19800]))
    end)
  end)

  it("picks error kinds by weight", function()
    T.vrun(function()
      local svc = fb.sim.service { failure_rate = 1, errors = { refused = 3, reset = 1 } }
      local n = { refused = 0, reset = 0 }
      for _ = 1, 8000 do local _, err = svc(); n[err] = n[err] + 1 end
      assert.is_true(math.abs(n.refused - 6000) < 200, tostring(n.refused))
    end)
  end)

  it("follows its schedule: outages, flapping, degradation, recovery", function()
    T.vrun(function()
      local out = fb.sim.service { latency = 1, outages = { { at = 10, duration = 5 } } }
      local flap = fb.sim.service { latency = 1, flap = { period = 10, down = 3 } }
      local slow = fb.sim.service { latency = 1, degrade = { from = 20, to = 30, latency_factor = 5 } }
      local bad = fb.sim.service { latency = 1, failure_rate = 1, recover_after = 25 }
      local seen = {}
      for t = 0, 39 do
        local r = {}
        fb.at(t, function() local _, e = out(); r.out = e end)
        fb.at(t, function() local _, e = flap(); r.flap = e end)
        fb.at(t, function() local t0 = fb.now(); slow(); r.slow = fb.now() - t0 end)
        fb.at(t, function() local _, e = bad(); r.bad = e end)
        seen[t] = r
      end
      fb.sleep(100)
      for t = 0, 39 do
        local r = seen[t]
        assert.are.equal((t >= 10 and t < 15) and "unavailable" or nil, r.out, "outage at " .. t)
        assert.are.equal(t % 10 >= 7 and "unavailable" or nil, r.flap, "flap at " .. t)
        local factor = t < 20 and 1 or t >= 30 and 5 or 1 + 4 * (t - 20) / 10
        assert.is_true(math.abs(r.slow - factor) < 1e-9, "degrade at " .. t)
        assert.are.equal(t < 25 and "service call failed" or nil, r.bad, "recovery at " .. t)
      end
    end)
  end)

  it("hangs, then times out", function()
    T.vrun(function()
      local svc = fb.sim.service { hang_rate = 1, hang_time = 120 }
      local v, err = svc()
      assert.are.same({ nil, "timeout", 120 }, { v, err, fb.now() })
    end)
  end)

  it("raises instead when asked to", function()
    T.vrun(function()
      local svc = fb.sim.service { failure_rate = 1, raise = true, errors = { boom = 1 } }
      assert.has_error(function() svc() end, "boom")
    end)
  end)

  it("wraps a plain function, and says which model raised", function()
    T.vrun(function()
      local n = 0
      local svc = fb.sim.service(function(x)
        n = n + 1
        fb.sleep(1)
        if n % 2 == 0 then return nil, "even" end
        return x * 2
      end, "doubler")
      assert.are.equal(42, svc(21))
      assert.are.same({ nil, "even" }, { svc(1) })
      assert.are.same({ 2, 1, 1, 2 }, { svc.calls, svc.successes, svc.failures, fb.now() })
      local broken = fb.sim.service(function() error("oops", 0) end, "broken")
      assert.has_error(function() broken() end, "fb.sim.service 'broken': the model function raised: oops")
    end)
  end)

  it("replays with a seed; a model made later does not change the draws", function()
    local function draws(seed, extra)
      local out = {}
      T.vrun(function()
        local svc = fb.sim.service { failure_rate = 0.5, latency = { dist = "exponential", mean = 1 } }
        local other = extra and fb.sim.service { failure_rate = 0.5, latency = { dist = "exponential", mean = 1 } }
        for i = 1, 200 do
          local t0 = fb.now()
          local _, err = svc()
          out[i] = string.format("%s %.9f", err or "ok", fb.now() - t0)
          if other then other(); fb.random() end
        end
      end, seed)
      return out
    end
    local a = draws(5)
    assert.are.same(a, draws(5))
    assert.are.same(a, draws(5, true))
    assert.are_not.same(a, draws(6))
  end)

  it("draws by name: models made before or around a named one change nothing", function()
    local function draws(seed, crowd)
      local out = {}
      T.vrun(function()
        if crowd then
          fb.sim.service { name = "other", failure_rate = 0.5 }
          fb.sim.service { failure_rate = 0.5 }
          fb.balancer(fb.registry(), "random")
        end
        local svc = fb.sim.service { name = "db", failure_rate = 0.5 }
        local twin = fb.sim.service { name = "db", failure_rate = 0.5 }
        for i = 1, 100 do
          out[i] = (svc() or "x") .. (twin() or "x")
        end
      end, seed)
      return out
    end
    local a = draws(11)
    assert.are.same(a, draws(11, true))
    assert.are_not.same(a, draws(12))
    local same = 0
    for i = 1, 100 do if a[i] == "okok" or a[i] == "xx" then same = same + 1 end end
    assert.is_true(same < 80, "two models of one name must not draw alike") -- about 50 expected
  end)

  it("gives independent streams with math.random's contract", function()
    T.vrun(function()
      local s1, s2 = fb.sim.stream(), fb.sim.stream()
      local same = 0
      for _ = 1, 100 do
        local a, b = s1:random(), s2:random()
        assert.is_true(a >= 0 and a < 1)
        if a == b then same = same + 1 end
        local d = s1:random(6)
        assert.is_true(d >= 1 and d <= 6 and d % 1 == 0)
        local e = s1:random(-2, 2)
        assert.is_true(e >= -2 and e <= 2 and e % 1 == 0)
      end
      assert.are.equal(0, same)
      assert.has_error(function() s1:random(3, 1) end)
    end)
  end)

  it("keeps math.random's contract, errors included, like fb.random and ctx.random", function()
    T.vrun(function()
      local s = fb.sim.stream()
      local reg = fb.registry()
      reg:register("s", "h", 1)
      local ctx_random
      local lb = fb.balancer(reg, function(_, ctx)
        ctx_random = ctx.random
        return 1
      end)
      lb:pick("s")
      local sources = {
        ["fb.random"] = fb.random,
        ["stream:random"] = function(...) return s:random(...) end,
        ["ctx.random"] = ctx_random,
      }
      for name, random in pairs(sources) do
        local ok, err = pcall(random, 0)
        assert.is_false(ok, name)
        assert.truthy(tostring(err):find("bad argument #1 to 'random' (interval is empty)", 1, true), name .. ": " .. tostring(err))
        ok, err = pcall(random, 3, 1)
        assert.is_false(ok, name)
        assert.truthy(tostring(err):find("bad argument #2 to 'random' (interval is empty)", 1, true), name .. ": " .. tostring(err))
        assert.are.equal(1, random(1, 1), name)
      end
      local err = errmsg(function() fb.random(1, 2, 3) end)
      assert.truthy(err:find("wrong number of arguments to 'random'", 1, true), err)
      err = errmsg(function() fb.random(2 ^ 60) end)
      assert.truthy(err:find("interval is too large", 1, true), err)
      err = errmsg(function() s:random(0) end)
      assert.truthy(err:find("^[^:]*sim_spec.lua:%d+:"), err) -- at the caller's line
    end)
  end)
end)

describe("fb.sim.call", function()
  it("counts nil, err as a failure and rejects without calling when open", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 2, timeout = 5 }
      local svc = fb.sim.service { failure_rate = 1, latency = 0.1, errors = { refused = 1 } }
      assert.are.same({ nil, "refused" }, { fb.sim.call(cb, svc) })
      assert.are.same({ nil, "refused" }, { fb.sim.call(cb, svc) })
      assert.are.equal("OPEN", cb.state)
      assert.are.same({ nil, "circuit open" }, { fb.sim.call(cb, svc) })
      assert.are.equal(2, svc.calls)
      fb.sleep(5.1)
      local ok = fb.sim.call(cb, function() return "up", 2 end)
      assert.are.equal("up", ok)
      assert.are.equal("HALF_OPEN", cb.state)
    end)
  end)

  it("checks its breaker and function like the C-backed objects do", function()
    T.vrun(function()
      local err = errmsg(function() fb.sim.call(nil, function() end) end)
      assert.truthy(err:find("bad argument #1 to 'call' (fusebox.breaker expected, got nil)", 1, true), err)
      assert.truthy(err:find("^[^:]*sim_spec.lua:%d+:"), err)
      err = errmsg(function() fb.sim.call(fb.breaker(), nil) end)
      assert.truthy(err:find("bad argument #2 to 'call' (function expected, got nil)", 1, true), err)
      err = errmsg(function() fb.sim.call({}, print) end)
      assert.truthy(err:find("(fusebox.breaker expected, got table)", 1, true), err)
    end)
  end)
end)

describe("fb.sim.instance", function()
  local function world()
    local reg = fb.registry { heartbeat_timeout = 30 }
    local inst = fb.sim.instance { registry = reg, service = "s", host = "h", port = 1, interval = 10 }
    return reg, inst
  end
  local function live(reg) return #reg:discover("s") end

  it("registers at once and heartbeats until it crashes", function()
    T.vrun(function()
      local reg, inst = world()
      assert.are.equal(1, live(reg))
      fb.sleep(95)
      assert.are.equal(1, live(reg))
      inst:crash() -- last heartbeat at 90
      assert.are.same({ nil, "connection refused" }, { inst:call() })
      fb.sleep(24.9)
      assert.are.equal(1, live(reg))
      fb.sleep(0.1)
      assert.are.equal(0, live(reg))
      inst:restart()
      assert.are.equal(1, live(reg))
      assert.are.equal("ok", inst:call())
    end)
  end)

  it("deregisters at once when stopped", function()
    T.vrun(function()
      local reg, inst = world()
      fb.sleep(5)
      inst:stop()
      assert.are.equal(0, live(reg))
      fb.sleep(50)
      assert.are.equal(0, live(reg))
    end)
  end)

  it("loses heartbeats and calls while partitioned", function()
    T.vrun(function()
      local reg, inst = world()
      inst:partition(45)
      assert.is_false(inst:up())
      assert.are.same({ nil, "unreachable" }, { inst:call() })
      fb.sleep(30)
      assert.are.equal(0, live(reg)) -- last heartbeat at 0
      fb.sleep(21)                   -- partition over; beat at 50
      assert.are.equal(1, live(reg))
      assert.is_true(inst:up())
    end)
  end)

  it("does not keep a run alive (its heartbeat is a daemon)", function()
    T.vrun(function() world() end)
    T.vrun(function() fb.daemon(function() while true do fb.sleep(1) end end) end)
  end)

  it("checks self in every method: a '.' for a ':' is named", function()
    T.vrun(function()
      local _, inst = world()
      for _, m in ipairs { "crash", "stop", "restart", "partition", "up", "call" } do
        local err = errmsg(function() inst[m]() end)
        assert.truthy(err:find("bad argument #1 to '" .. m .. "' (fusebox.sim.instance expected, got nil)", 1, true), err)
        assert.truthy(err:find("^[^:]*sim_spec.lua:%d+:"), err)
      end
      local err = errmsg(function() inst.partition(5) end)
      assert.truthy(err:find("(fusebox.sim.instance expected, got number)", 1, true), err)
      local s = fb.sim.stream()
      err = errmsg(function() s.random(3) end)
      assert.truthy(err:find("bad argument #1 to 'random' (fusebox.sim.stream expected, got number)", 1, true), err)
      err = errmsg(function() fb.sim.service(function() end, 5) end)
      assert.truthy(err:find("bad argument #2 to 'service' (name must be a non-empty string, got 5)", 1, true), err)
    end)
  end)

  it("rejects bad options with the field named", function()
    T.vrun(function()
      local reg = fb.registry()
      local err = errmsg(fb.sim.instance, { registry = reg, service = "s", host = "h", port = 0 })
      assert.truthy(err:find("bad argument #1 to 'instance' (port must be 1..65535, got 0)", 1, true), err)
      err = errmsg(fb.sim.instance, { registry = {}, service = "s", host = "h", port = 1 })
      assert.truthy(err:find("registry must be a registry", 1, true), err)
      err = errmsg(fb.sim.instance, { registry = reg, service = "s", host = "h", port = 1, every = 3 })
      assert.truthy(err:find("unknown field 'every'", 1, true), err)
    end)
  end)
end)

describe("virtual time and the real world", function()
  it("refuses the real clock under virtual time", function()
    T.vrun(function()
      local err = errmsg(fb.real_now)
      assert.truthy(err:find("real_now (the real clock) is not available under --virtual-time", 1, true), err)
    end)
    fb.run(function() assert.is_true(fb.real_now() >= 0) end)
  end)

  it("ends a run at its virtual-time limit, saying where each coroutine was", function()
    local ok, err = pcall(fb.run, function()
      fb.spawn(function() fb.wait("a reply that never comes") end)
      while true do fb.sleep(1) end
    end, { virtual_time = true, seed = 1, max_virtual_time = 10 })
    assert.is_false(ok)
    assert.truthy(err:find("virtual time limit of 10.000 s reached", 1, true), err)
    assert.truthy(err:find("\n- waiting on a reply that never comes\nstack traceback:", 1, true), err)
    assert.truthy(err:find("\n- sleeping\nstack traceback:\n\t%[C%]: in function 'sleep'\n\t[^\n]*sim_spec.lua:%d+:"), err)
    assert.are.equal(10, fb.now())
    -- the next run has no limit unless it sets one
    T.vrun(function() fb.sleep(100) end)
    ok, err = pcall(fb.run, function() end, { virtual_time = true, max_virtual_time = 0 })
    assert.is_false(ok)
    assert.truthy(err:find("max_virtual_time must be a positive number", 1, true), err)
  end)
end)
