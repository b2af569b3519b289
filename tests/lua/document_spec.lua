-- The reference design through the Lua API: the breaker's cb:call and
-- state, the balancers' picks, listeners, and bad input.
local fb = require "fusebox"

local function fails() error("Service call failed", 0) end
local function works() return "ok", 2 end

describe("breaker (reference semantics)", function()
  it("opens after failure_threshold consecutive failures and rejects without calling", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 3, timeout = 5 }
      assert.are.equal("CLOSED", cb.state)
      for _ = 1, 2 do assert.has_error(function() cb:call(fails) end, "Service call failed") end
      assert.are.same({ "ok", 2 }, { cb:call(works) }) -- resets the count
      for _ = 1, 2 do pcall(cb.call, cb, fails) end
      assert.are.equal("CLOSED", cb.state)
      pcall(cb.call, cb, fails)
      assert.are.equal("OPEN", cb.state)
      local called = false
      local ok, err = pcall(cb.call, cb, function() called = true end)
      assert.is_false(ok)
      assert.truthy(err:find("circuit open", 1, true))
      assert.is_false(called)
    end)
  end)

  it("lets the first call strictly after the timeout through, into HALF_OPEN", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 1, timeout = 5, success_threshold = 2 }
      pcall(cb.call, cb, fails)
      fb.sleep(5)
      assert.has_error(function() cb:call(works) end) -- exactly 5 s: still open
      assert.are.equal("OPEN", cb.state)
      fb.sleep(0.001)
      assert.are.equal("ok", cb:call(works))
      assert.are.equal("HALF_OPEN", cb.state)
      assert.are.equal("ok", cb:call(works))
      assert.are.equal("CLOSED", cb.state)
    end)
  end)

  it("reopens at once on a half-open failure", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 2, timeout = 1 }
      pcall(cb.call, cb, fails); pcall(cb.call, cb, fails)
      fb.sleep(2)
      cb:call(works)
      assert.are.equal("HALF_OPEN", cb.state)
      pcall(cb.call, cb, fails)
      assert.are.equal("OPEN", cb.state)
    end)
  end)

  it("announces every state change to listeners, after the state is consistent", function()
    local seen = {}
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 1, timeout = 1, success_threshold = 1 }
      cb:on("state_change", function(from, to, now)
        seen[#seen + 1] = string.format("%s>%s@%g:%s", from, to, now, cb.state)
      end)
      pcall(cb.call, cb, fails)
      fb.sleep(1.5)
      cb:call(works)
    end)
    assert.are.same({ "CLOSED>OPEN@0:OPEN", "OPEN>HALF_OPEN@1.5:HALF_OPEN",
      "HALF_OPEN>CLOSED@1.5:CLOSED" }, seen)
  end)

  it("keeps working when a listener raises", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 1 }
      local later, reported = 0, {}
      local saved = fb.reporter(function(what, msg) reported[#reported + 1] = what .. ": " .. msg end)
      cb:on("state_change", function() error("listener bug") end)
      cb:on("state_change", function() later = later + 1 end)
      pcall(cb.call, cb, fails)
      fb.reporter(saved)
      assert.are.equal("OPEN", cb.state)
      assert.are.equal(1, later)
      assert.are.equal(1, #reported)
      assert.truthy(reported[1]:find("listener bug", 1, true))
      assert.truthy(reported[1]:find("stack traceback", 1, true))
    end)
  end)

  it("lets the guarded function sleep, and measures across it", function()
    T.vrun(function()
      local cb = fb.breaker()
      assert.are.equal("slept", cb:call(function() fb.sleep(3); return "slept" end))
      assert.are.equal(3, fb.now())
    end)
  end)

  it("drops a late result from before the breaker opened", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 1, timeout = 10, success_threshold = 1 }
      fb.spawn(function() pcall(cb.call, cb, function() fb.sleep(5); error("late") end) end)
      fb.sleep(1)
      pcall(cb.call, cb, fails) -- opens at t=1
      fb.sleep(4.5)              -- the late failure lands at t=5: dropped
      fb.sleep(5.6)              -- t=11.1: 10 s after t=1, not after t=5
      assert.are.equal("ok", cb:call(works))
      assert.are.equal("CLOSED", cb.state)
    end)
  end)

  describe("bad input", function()
    local cases = {
      { function() fb.breaker { failure_threshold = 0 } end,
        "bad argument #1 to 'breaker' (failure_threshold must be a positive integer, got 0" },
      { function() fb.breaker { failure_threshold = 2.5 } end, "failure_threshold must be a positive integer" },
      { function() fb.breaker { timeout = -1 } end, "timeout must be a positive number" },
      { function() fb.breaker { timeout = 0 } end, "timeout must be a positive number" },
      { function() fb.breaker { success_threshold = "3" } end, "success_threshold must be a positive integer, got string" },
      { function() fb.breaker { treshold = 3 } end, "unknown option 'treshold'" },
      { function() fb.breaker(5) end, "bad argument #1 to 'breaker' (table expected, got number)" },
      { function() fb.breaker():call(42) end, "bad argument #1 to 'call' (function expected, got number)" },
      { function() fb.breaker():on("nope", print) end, "unknown event 'nope'" },
      { function() fb.breaker():on("state_change", 1) end, "listener must be a function" },
      { function() fb.breaker().call({}, works) end, "bad argument #1 to 'call' (fusebox.breaker expected, got table)" },
    }
    for i, c in ipairs(cases) do
      it("case " .. i .. ": " .. c[2], function()
        local ok, err = pcall(c[1])
        assert.is_false(ok)
        assert.truthy(err:find(c[2], 1, true), "got: " .. tostring(err))
      end)
    end
  end)
end)

describe("balancer (reference semantics)", function()
  it("round robin: .10, .11, .10, .11 and .20, as in the document", function()
    T.vrun(function()
      local reg = fb.registry()
      local lb = fb.balancer(reg, "round_robin")
      reg:register("user-service", "192.168.1.10", 8080)
      reg:register("user-service", "192.168.1.11", 8080)
      reg:register("order-service", "192.168.1.20", 8081)
      local hosts = {}
      for i = 1, 4 do hosts[i] = lb:pick("user-service").host end
      assert.are.same({ "192.168.1.10", "192.168.1.11", "192.168.1.10", "192.168.1.11" }, hosts)
      local order = lb:pick("order-service")
      assert.are.equal("192.168.1.20", order.host)
      assert.are.equal(8081, order.port)
      assert.is_nil(lb:pick("payment-service"))
      assert.are.equal(lb:pick("order-service"), lb:pick("order-service")) -- one view per instance
    end)
  end)

  it("round robin keeps its counter across expiry, per service", function()
    T.vrun(function()
      local reg = fb.registry { heartbeat_timeout = 10 }
      local lb = fb.balancer(reg, "round_robin")
      reg:register("s", "a", 1); reg:register("s", "b", 1); reg:register("s", "c", 1)
      assert.are.equal("a", lb:pick("s").host)
      fb.sleep(5)
      reg:heartbeat("s", "a", 1); reg:heartbeat("s", "c", 1)
      fb.sleep(6) -- b expired; live = a, c; counter = 1
      assert.are.equal("c", lb:pick("s").host)
      assert.are.equal("a", lb:pick("s").host)
      fb.sleep(10)
      assert.is_nil(lb:pick("s"))
    end)
  end)

  it("random is reproducible with the seed and reaches every instance", function()
    local function picks(seed)
      local out = {}
      T.vrun(function()
        local reg = fb.registry()
        for i = 1, 4 do reg:register("s", "h" .. i, 80) end
        local lb = fb.balancer(reg, "random")
        for i = 1, 200 do out[i] = lb:pick("s").host end
      end, seed)
      return out
    end
    local a, b = picks(5), picks(5)
    assert.are.same(a, b)
    assert.are_not.same(a, picks(6))
    local seen = {}
    for _, h in ipairs(a) do seen[h] = true end
    assert.are.same({ h1 = true, h2 = true, h3 = true, h4 = true }, seen)
  end)

  it("a random balancer's stream does not shift fb.random", function()
    local function draws(with_balancer)
      local out
      T.vrun(function()
        if with_balancer then fb.balancer(fb.registry(), "random") end
        out = { fb.random(), fb.random() }
      end, 9)
      return out
    end
    assert.are.same(draws(false), draws(true))
  end)

  it("rejects bad input", function()
    local reg = fb.registry()
    local ok, err = pcall(fb.balancer, reg, "fastest")
    assert.is_false(ok)
    assert.truthy(err:find("unknown algorithm 'fastest' (known: round_robin, random, ", 1, true), err)
    ok, err = pcall(fb.balancer, {}, "random")
    assert.is_false(ok)
    assert.truthy(err:find("fusebox.registry expected", 1, true), err)
    local lb = fb.balancer(reg, "random")
    ok, err = pcall(function() lb:pick(7) end)
    assert.truthy(err:find("bad argument #1 to 'pick' (service name must be a string, got number)", 1, true), err)
    ok, err = pcall(function() lb:pick("") end)
    assert.truthy(err:find("service name must not be empty", 1, true), err)
    assert.are.equal(reg, lb:registry())
    assert.are.equal("random", lb:algorithm())
  end)
end)
