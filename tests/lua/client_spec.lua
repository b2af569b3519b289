-- fb.client: picks, per-instance breakers (outlier ejection), retries on
-- another instance, on virtual time.
local fb = require "fusebox"

local function three(reg)
  for _, h in ipairs { "a", "b", "c" } do reg:register("svc", h, 80) end
end

describe("client", function()
  it("ejects an always-failing instance once its breaker opens", function()
    local calls, results = { a = 0, b = 0, c = 0 }, {}
    local c
    T.vrun(function()
      local reg = fb.registry()
      three(reg)
      c = fb.client { registry = reg, balancer = "round_robin",
        policy = { retry = { attempts = 3, base = 0 } },
        per_instance_breaker = { failure_threshold = 2, timeout = 60 } }
      for i = 1, 30 do
        results[i] = c:call("svc", function(inst)
          calls[inst.host] = calls[inst.host] + 1
          if inst.host == "b" then return nil, "b is down" end
          return "ok from " .. inst.host
        end)
        fb.sleep(1)
      end
    end)
    for i = 1, 30 do assert.truthy(results[i]:find("^ok from [ac]$"), results[i]) end
    assert.are.equal(2, calls.b) -- its breaker opened after two failures
    assert.are.equal(30, calls.a + calls.c)
    assert.are.equal("OPEN", c:breaker("b", 80).state)
    assert.are.equal("CLOSED", c:breaker("a", 80).state)
  end)

  it("retries on another instance than the ones it tried", function()
    T.vrun(function()
      local reg = fb.registry()
      three(reg)
      local c = fb.client { registry = reg, policy = { retry = { attempts = 3, base = 0 } },
        per_instance_breaker = false }
      local tried = {}
      local v, err = c:call("svc", function(inst)
        tried[#tried + 1] = inst.host
        return nil, "fail on " .. inst.host
      end)
      assert.is_nil(v)
      table.sort(tried)
      assert.are.same({ "a", "b", "c" }, tried)
      assert.truthy(err:find("^fail on [abc]$"), err)
    end)
  end)

  it("gives a failing instance back after its breaker's timeout", function()
    T.vrun(function()
      local reg = fb.registry { heartbeat_timeout = 1000 }
      reg:register("svc", "a", 1)
      local down = true
      local c = fb.client { registry = reg, per_instance_breaker = { failure_threshold = 1, timeout = 5 } }
      assert.are.same({ nil, "down" }, { c:call("svc", function() if down then return nil, "down" end end) })
      local v, err = c:call("svc", function() return "up" end)
      assert.is_nil(v)
      assert.are.equal("no instance", fb.rejection(err))
      down = false
      fb.sleep(5.5)
      assert.are.equal("up", c:call("svc", function() return "up" end))
    end)
  end)

  it("counts a timeout against the instance, under its breaker", function()
    T.vrun(function()
      local reg = fb.registry { heartbeat_timeout = 1000 }
      reg:register("svc", "slow", 1)
      local c = fb.client { registry = reg, policy = { timeout = 1 },
        per_instance_breaker = { failure_threshold = 2, timeout = 60 } }
      for _ = 1, 2 do
        local v, err = c:call("svc", function() fb.sleep(3); return "late" end)
        assert.is_nil(v)
        assert.are.equal("timeout", fb.rejection(err))
      end
      assert.are.equal("OPEN", c:breaker("slow", 1).state)
    end)
  end)

  it("fails with no instance when the service has none, and falls back", function()
    T.vrun(function()
      local reg = fb.registry()
      local c = fb.client { registry = reg, policy = { fallback = function(e) return "fallback: " .. e end } }
      assert.are.equal("fallback: no instance: no live instance of 'ghost'", c:call("ghost", function() end))
    end)
  end)

  it("reports each finished call to the balancer's done()", function()
    T.vrun(function()
      local reg = fb.registry()
      reg:register("svc", "a", 1)
      local lb = fb.balancer(reg, "round_robin")
      local c = fb.client { balancer = lb }
      assert.are.equal("fine", c:call("svc", function() fb.sleep(0.25); return "fine" end))
      c:call("svc", function() fb.sleep(0.5); return nil, "bad" end)
      local inst = reg:discover("svc")[1]
      assert.are.equal(1, inst.successes)
      assert.are.equal(1, inst.failures)
      assert.are.equal(0, inst.inflight)
      assert.is_true(inst.latency > 0.25)
    end)
  end)

  it("ejects an open instance from the registry's candidates, then readmits it for a probe", function()
    T.vrun(function()
      local reg = fb.registry()
      for _, h in ipairs { "a", "b", "c" } do reg:register("svc", h, 1) end
      local lb = fb.balancer(reg, "round_robin")
      local c = fb.client { balancer = lb, per_instance_breaker = { failure_threshold = 2, timeout = 10 } }
      local function call() return c:call("svc", function(inst)
        if inst.host == "b" then return nil, "b is down" end
        return inst.host
      end) end
      for _ = 1, 6 do call() end -- b fails twice: its breaker opens
      assert.are.equal("OPEN", c:breaker("b", 1).state)
      local b_view = reg:discover("svc")[2]
      assert.is_true(b_view.ejected_until > fb.now())
      for _ = 1, 30 do
        local inst = lb:pick("svc")
        assert.are_not.equal("b", inst.host) -- skipped by every balancer
        lb:done(inst, true, 0)
      end
      fb.sleep(10.5) -- the ejection is over: b is a candidate again
      assert.is_true(b_view.ejected_until <= fb.now())
      local saw_b = false
      for _ = 1, 3 do saw_b = saw_b or lb:pick("svc").host == "b" end
      assert.is_true(saw_b)
    end)
  end)

  it("ends an ejection on time outside fb.run, with no timer", function()
    -- a fresh luajit: after a virtual-time run this one's clock stands still
    local script = [[
      local fb = require "fusebox"
      local reg = fb.registry()
      for _, h in ipairs { "a", "b", "c" } do reg:register("svc", h, 1) end
      local lb = fb.balancer(reg, "round_robin")
      local c = fb.client { balancer = lb, per_instance_breaker = { failure_threshold = 2, timeout = 0.05 } }
      local function call() return c:call("svc", function(inst)
        if inst.host == "b" then return nil, "b is down" end
        return inst.host
      end) end
      for _ = 1, 6 do call() end
      local out = { c:breaker("b", 1).state }
      local during = 0
      for _ = 1, 9 do if call() == "b" then during = during + 1 end end
      out[2] = during
      local t, c0 = fb.now(), os.clock()
      while fb.now() < t + 0.06 and os.clock() < c0 + 5 do end
      local after = 0
      for _ = 1, 3 do
        local inst = lb:pick("svc")
        if inst.host == "b" then after = after + 1 end
        lb:done(inst, true, 0)
      end
      out[3] = after
      io.write(table.concat(out, " "))
    ]]
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(script)
    f:close()
    local p = io.popen(string.format("LUA_CPATH='%s/?.so' luajit %s 2>&1", T.build, path))
    local out = p:read("*a")
    p:close()
    os.remove(path)
    assert.equal("OPEN 0 1", out)
  end)

  it("rejects bad options", function()
    local ok, err = pcall(fb.client, { balancer = 3 })
    assert.is_false(ok)
    assert.truthy(err:find("balancer: must be a balancer or an algorithm name, got 3", 1, true), err)
    ok, err = pcall(fb.client, { balancer = "round_robin" })
    assert.truthy(err:find("registry: needed to make a balancer", 1, true), err)
    ok, err = pcall(fb.client, { registry = fb.registry(), per_instance_breaker = { failure_threshold = 0 } })
    assert.truthy(err:find("per_instance_breaker.failure_threshold: must be an integer >= 1, got 0", 1, true), err)
    ok, err = pcall(fb.client, { registry = fb.registry(), policy = { retry = { attempts = "x" } } })
    assert.truthy(err:find('policy.retry.attempts: must be an integer >= 1, got "x"', 1, true), err)
  end)
end)
