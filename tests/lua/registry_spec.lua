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
