-- The registry through the Lua bindings: the reference semantics
-- (register/refresh, deregister, discover with a 30 s heartbeat timeout)
-- and the bad-input errors.
local fb = require "fusebox"

describe("registry", function()
  it("registers, refreshes without duplicates and discovers in order", function()
    T.vrun(function()
      local reg = fb.registry()
      assert.is_true(reg:register("user", "10.0.0.1", 8080))
      assert.is_true(reg:register("user", "10.0.0.2", 8080))
      assert.is_false(reg:register("user", "10.0.0.1", 8080)) -- refresh
      local live = reg:discover("user")
      assert.are.equal(2, #live)
      assert.are.same({ "10.0.0.1", 8080 }, { live[1].host, live[1].port })
      assert.are.same({ "10.0.0.2", 8080 }, { live[2].host, live[2].port })
      assert.are.same({}, reg:discover("nobody"))
    end)
  end)

  it("expires exactly at now - last == timeout and not just before", function()
    T.vrun(function()
      local reg = fb.registry { heartbeat_timeout = 30 }
      reg:register("svc", "h", 1)
      fb.sleep(29.999)
      assert.are.equal(1, #reg:discover("svc"))
      fb.sleep(0.001)
      assert.are.equal(30, fb.now())
      assert.are.equal(0, #reg:discover("svc"))
    end)
  end)

  it("brings an expired instance back in its old place on heartbeat", function()
    T.vrun(function()
      local reg = fb.registry { heartbeat_timeout = 10 }
      reg:register("svc", "a", 1)
      reg:register("svc", "b", 1)
      fb.sleep(5)
      reg:heartbeat("svc", "b", 1)
      fb.sleep(6) -- a expired at t=10, b is live until t=15
      local live = reg:discover("svc")
      assert.are.equal(1, #live)
      assert.are.equal("b", live[1].host)
      assert.is_false(reg:heartbeat("svc", "a", 1)) -- known: a refresh
      live = reg:discover("svc")
      assert.are.equal("a", live[1].host)
      assert.are.equal("b", live[2].host)
    end)
  end)

  it("registers an unknown instance on heartbeat, as the reference does", function()
    T.vrun(function()
      local reg = fb.registry()
      assert.is_true(reg:heartbeat("svc", "new", 9))
      assert.are.equal(1, #reg:discover("svc"))
    end)
  end)

  it("deregisters and says whether the instance was there", function()
    T.vrun(function()
      local reg = fb.registry()
      reg:register("svc", "a", 1)
      reg:register("svc", "b", 2)
      assert.is_true(reg:deregister("svc", "a", 1))
      assert.is_false(reg:deregister("svc", "a", 1))
      assert.is_false(reg:deregister("other", "a", 1))
      local live = reg:discover("svc")
      assert.are.equal(1, #live)
      assert.are.equal("b", live[1].host)
    end)
  end)

  it("keeps services apart", function()
    T.vrun(function()
      local reg = fb.registry()
      reg:register("a", "h", 1)
      reg:register("b", "h", 1)
      assert.is_true(reg:deregister("a", "h", 1))
      assert.are.equal(1, #reg:discover("b"))
    end)
  end)

  it("reaps an instance expired for longer than reap_after; within it, it comes back", function()
    T.vrun(function()
      local reg = fb.registry { heartbeat_timeout = 10, reap_after = 20 }
      reg:register("svc", "a", 1, { meta = { role = "a" } })
      reg:register("svc", "b", 1)
      reg:register("svc", "c", 1)
      fb.sleep(29.5) -- all expired at 10; within the grace until 30
      assert.is_false(reg:heartbeat("svc", "a", 1)) -- back, in its place
      fb.sleep(0.5)
      assert.is_true(reg:heartbeat("svc", "c", 1)) -- reaped at 30: new, last
      local live = reg:discover("svc")
      assert.are.same({ "a", "c" }, { live[1].host, live[2].host })
      assert.are.same({ role = "a" }, live[1].meta)
      assert.is_false(reg:deregister("svc", "b", 1)) -- b is gone
      fb.sleep(30)
      assert.is_true(reg:register("svc", "a", 1)) -- reaped: its meta too
      assert.is_nil(reg:discover("svc")[1].meta)
    end)
  end)

  it("reaps 100,000 expired registrations and gives their memory back", function()
    T.vrun(function()
      local reg = fb.registry { heartbeat_timeout = 10 } -- reap_after 30
      collectgarbage("collect")
      local baseline = collectgarbage("count")
      for i = 1, 100000 do
        reg:register("svc" .. i % 100, "10.1." .. i, 8080,
          { meta = { version = "v" .. i, zone = "z" .. i % 3 } })
      end
      collectgarbage("collect")
      local peak = collectgarbage("count")
      assert.is_true(peak - baseline > 10000, "100,000 meta tables: " .. (peak - baseline) .. " KiB")
      fb.sleep(40) -- expired at 10, reaped from 40 on
      assert.are.same({}, reg:discover("svc1"))
      reg:heartbeat("other", "h", 1) -- a walk that reaps, then drops their meta
      collectgarbage("collect")
      collectgarbage("collect")
      local after = collectgarbage("count")
      assert.is_true(after - baseline < 512,
        string.format("KiB: %.0f before, %.0f with 100,000, %.0f after reaping", baseline, peak, after))
      -- every instance is new again
      assert.is_true(reg:register("svc1", "10.1.1", 8080))
      assert.is_nil(reg:discover("svc1")[1].meta)
    end)
  end)

  it("refuses a registration past max_instances or max_services with a clean error", function()
    T.vrun(function()
      local reg = fb.registry { max_instances = 2, max_services = 1 }
      assert.is_true(reg:register("s", "a", 1))
      assert.is_true(reg:register("s", "b", 1))
      assert.is_false(reg:register("s", "a", 1)) -- a refresh still works
      local ok, err = pcall(reg.register, reg, "s", "c", 1)
      assert.is_false(ok)
      assert.are.equal("register: registry full: max_instances (2) reached", err)
      ok, err = pcall(reg.heartbeat, reg, "s", "c", 1)
      assert.are.equal("heartbeat: registry full: max_instances (2) reached", err)
      reg:deregister("s", "b", 1)
      ok, err = pcall(reg.register, reg, "t", "a", 1)
      assert.are.equal("register: registry full: max_services (1) reached", err)
      assert.are.same({}, reg:discover("t"))
      assert.are.equal(1, #reg:discover("s"))
    end)
  end)

  it("removes services left without instances when a new name needs the room", function()
    T.vrun(function()
      local reg = fb.registry { max_services = 2, heartbeat_timeout = 10, reap_after = 10 }
      local lb = fb.balancer(reg, "round_robin")
      reg:register("kept", "k", 1)
      for i = 1, 1000 do -- churned names: each gone (deregistered) before the next
        local name = "churn" .. i
        assert.is_true(reg:register(name, "h" .. i, 1))
        assert.are.equal("h" .. i, lb:pick(name).host) -- the balancer keeps its fb_service*
        assert.is_true(reg:deregister(name, "h" .. i, 1))
      end
      assert.is_nil(lb:pick("churn1")) -- removed: no pointer left to a freed service
      assert.are.same({}, reg:discover("churn1"))
      assert.are.equal("k", lb:pick("kept").host)
      -- a reaped one goes too, and a name can come back
      reg:register("a", "a1", 1)
      assert.are.equal("a1", lb:pick("a").host)
      fb.sleep(5)
      reg:heartbeat("kept", "k", 1)
      fb.sleep(16) -- a expired at 10, reaped at 20
      reg:heartbeat("kept", "k", 1)
      assert.is_true(reg:register("b", "b1", 1))
      assert.is_true(reg:register("b", "b2", 1))
      assert.is_nil(lb:pick("a"))
      local ok, err = pcall(reg.register, reg, "a", "a2", 1)
      assert.is_false(ok)
      assert.are.equal("register: registry full: max_services (2) reached", err)
      reg:deregister("b", "b1", 1)
      reg:deregister("b", "b2", 1)
      assert.is_true(reg:register("a", "a2", 1))
      assert.are.equal("a2", lb:pick("a").host)
      assert.are.equal("a2", reg:discover("a")[1].host)
    end)
  end)

  describe("bad input", function()
    local reg = fb.registry()
    local cases = {
      { "port 0", function() reg:register("s", "h", 0) end,
        "bad argument #3 to 'register' (port must be 1..65535, got 0)" },
      { "port 65536", function() reg:register("s", "h", 65536) end, "port must be 1..65535" },
      { "fractional port", function() reg:register("s", "h", 80.5) end, "port must be 1..65535" },
      { "string port", function() reg:register("s", "h", "80") end,
        "bad argument #3 to 'register' (port must be a number, got string)" },
      { "empty service", function() reg:register("", "h", 1) end,
        "bad argument #1 to 'register' (service name must not be empty)" },
      { "nil service", function() reg:heartbeat(nil, "h", 1) end,
        "bad argument #1 to 'heartbeat' (service name must be a string, got nil)" },
      { "empty host", function() reg:deregister("s", "", 1) end,
        "bad argument #2 to 'deregister' (host must not be empty)" },
      { "discover number", function() reg:discover(42) end,
        "bad argument #1 to 'discover' (service name must be a string, got number)" },
      { "discover empty", function() reg:discover("") end, "service name must not be empty" },
      { "bad self", function() reg.discover({}, "s") end, "bad argument #1 to 'discover' (fusebox.registry expected, got table)" },
      { "timeout 0", function() fb.registry { heartbeat_timeout = 0 } end,
        "bad argument #1 to 'registry' (heartbeat_timeout must be a positive number, got 0" },
      { "timeout string", function() fb.registry { heartbeat_timeout = "30" } end,
        "heartbeat_timeout must be a positive number, got string" },
      { "long host", function() reg:register("s", ("h"):rep(256), 1) end,
        "bad argument #2 to 'register' (host must be at most 255 bytes, got 256)" },
      { "long service", function() reg:heartbeat(("s"):rep(300), "h", 1) end,
        "bad argument #1 to 'heartbeat' (service name must be at most 255 bytes, got 300)" },
      { "long zone", function() reg:register("s", "h", 1, { zone = ("z"):rep(256) }) end,
        "zone must be at most 255 bytes, got 256" },
      { "reap_after 0", function() fb.registry { reap_after = 0 } end,
        "bad argument #1 to 'registry' (reap_after must be a positive number, got 0" },
      { "reap_after NaN", function() fb.registry { reap_after = 0 / 0 } end,
        "reap_after must be a positive number" },
      { "max_instances 0", function() fb.registry { max_instances = 0 } end,
        "bad argument #1 to 'registry' (max_instances must be a positive integer, got 0" },
      { "max_services fraction", function() fb.registry { max_services = 1.5 } end,
        "max_services must be a positive integer, got 1.5" },
      { "unknown option", function() fb.registry { heartbeat = 30 } end,
        "bad argument #1 to 'registry' (unknown option 'heartbeat')" },
    }
    for _, c in ipairs(cases) do
      it(c[1], function()
        local ok, err = pcall(c[2])
        assert.is_false(ok)
        assert.truthy(err:find(c[3], 1, true), "got: " .. tostring(err))
      end)
    end
  end)
end)
