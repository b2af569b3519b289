-- One standard of error message (issue 14, items 4, 8 and 9): every
-- public function and method written in Lua checks self and its
-- arguments the way the C-backed objects do, names the caller's line
-- (never one of fusebox's own files), and a policy's fallback never
-- answers a misuse of p:call.
local fb = require "fusebox"

local function works() return "ok" end

-- The error f raises, which must name this file's line (so no internal
-- position leaks) and contain want.
local function raises(want, f)
  local ok, err = pcall(f)
  assert.is_false(ok, "no error")
  err = tostring(err)
  assert.is_nil(err:find("lua/fusebox/", 1, true), "internal position: " .. err)
  assert.truthy(err:find("^[^:]*api_errors_spec%.lua:%d+: "), "not the caller's line: " .. err)
  assert.truthy(err:find(want, 1, true), "got: " .. err)
end

describe("self and argument checks", function()
  it("policy layers called with . for : say which object they expected", function()
    T.vrun(function()
      raises("bad argument #1 to 'call' (fusebox.retry expected, got function)",
        function() fb.retry {}.call(works) end)
      raises("bad argument #1 to 'call' (fusebox.timeout expected, got function)",
        function() fb.timeout(1).call(works) end)
      raises("bad argument #1 to 'call' (fusebox.bulkhead expected, got function)",
        function() fb.bulkhead {}.call(works) end)
      raises("bad argument #1 to 'call' (fusebox.rate_limiter expected, got function)",
        function() fb.rate_limiter {}.call(works) end)
      raises("bad argument #1 to 'acquire' (fusebox.rate_limiter expected, got nil)",
        function() fb.rate_limiter {}.acquire() end)
      raises("bad argument #1 to 'delays' (fusebox.retry expected, got number)",
        function() fb.retry {}.delays(3) end)
      raises("bad argument #1 to 'call' (fusebox.policy expected, got function)",
        function() fb.policy {}.call(works) end)
      raises("bad argument #1 to 'names' (fusebox.policy expected, got nil)",
        function() fb.policy {}.names() end)
    end)
  end)

  it("a method on the wrong object says 'bad self', as luaL_checkudata does", function()
    T.vrun(function()
      local impostor = { call = fb.retry {}.call }
      raises("calling 'call' on bad self (fusebox.retry expected, got table)",
        function() impostor:call(works) end)
      local cb = { call = fb.breaker {}.call }
      raises("calling 'call' on bad self (fusebox.breaker expected, got table)",
        function() cb:call(works) end)
    end)
  end)

  it("a missing function is an argument error before any layer runs", function()
    T.vrun(function()
      raises("bad argument #1 to 'call' (function expected, got nil)",
        function() fb.policy { retry = { attempts = 2 } }:call(nil) end)
      raises("bad argument #1 to 'call' (function expected, got number)",
        function() fb.retry {}:call(5) end)
      raises("bad argument #1 to 'call' (function expected, got nil)",
        function() fb.timeout(1):call() end)
      raises("bad argument #1 to 'call' (function expected, got string)",
        function() fb.bulkhead {}:call("f") end)
      raises("bad argument #1 to 'call' (function expected, got table)",
        function() fb.rate_limiter {}:call({}) end)
      raises("bad argument #1 to 'delays' (n must be an integer 0..1000000, got 1000000000000)",
        function() fb.retry {}:delays(1e12) end)
    end)
  end)

  it("breaker, balancer and client checks blame the caller's line", function()
    T.vrun(function()
      local cb = fb.breaker {}
      raises("bad argument #1 to 'call' (fusebox.breaker expected, got function)",
        function() cb.call(works) end)
      raises("bad argument #1 to 'call' (function expected, got number)",
        function() cb:call(42) end)
      raises("bad argument #1 to 'try' (function expected, got nil)",
        function() cb:try() end)
      local permit = cb:acquire()
      raises("bad argument #1 to 'success' (fusebox.permit expected, got string)",
        function() permit.success("x") end)
      raises("bad argument #1 to 'success' (duration must be a number >= 0, got x)",
        function() permit:success("x") end)
      local reg = fb.registry {}
      local lb = fb.balancer(reg, "round_robin")
      raises("bad argument #1 to 'pick' (service name must be a string, got number)",
        function() lb:pick(5) end)
      raises("bad argument #1 to 'pick' (fusebox.balancer expected, got string)",
        function() lb.pick("s") end)
      local c = fb.client { registry = reg }
      raises("bad argument #1 to 'call' (fusebox.client expected, got string)",
        function() c.call("s", works) end)
      raises("bad argument #1 to 'call' (service name must be a string, got number)",
        function() c:call(5, works) end)
      raises("bad argument #2 to 'call' (function expected, got nil)",
        function() c:call("s") end)
      raises("bad argument #1 to 'breaker' (fusebox.client expected, got string)",
        function() c.breaker("h", 1) end)
    end)
  end)

  it("a health checker's methods check self and arguments", function()
    fb.run(function()
      local hc = fb.health_check { registry = fb.registry {}, service = "s", interval = 60 }
      raises("bad argument #1 to 'is_healthy' (fusebox.health_check expected, got string)",
        function() hc.is_healthy("h", 1) end)
      raises("bad argument #1 to 'is_healthy' (host must be a string, got nil)",
        function() hc:is_healthy() end)
      raises("bad argument #1 to 'pick' (fusebox.balancer expected, got nil)",
        function() hc:pick() end)
      raises("bad argument #1 to 'stop' (fusebox.health_check expected, got nil)",
        function() hc.stop() end)
      hc:stop()
    end)
  end)

  it("C-backed objects' fields are read-only, said in one line", function()
    T.vrun(function()
      local cb = fb.breaker {}
      raises("cannot set 'state': fusebox.breaker fields are read-only",
        function() cb.state = "OPEN" end)
      assert.are.equal("CLOSED", cb.state)
      local reg = fb.registry {}
      raises("cannot set 'x': fusebox.registry fields are read-only", function() reg.x = 1 end)
      local lb = fb.balancer(reg, "round_robin")
      raises("cannot set 'x': fusebox.balancer fields are read-only", function() lb.x = 1 end)
    end)
  end)

  it("a breaker's rejection through a policy has cb:call's text, no internal position", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 1, timeout = 30 }
      pcall(cb.call, cb, error, "down")
      local _, direct = pcall(function() cb:call(works) end)
      assert.truthy(direct:find("^[^:]*api_errors_spec%.lua:%d+: circuit open"), direct)
      local text = direct:gsub("^[^:]*:%d+: ", "")
      assert.are.equal("circuit open: call rejected (retry after 30.000s)", text)
      local ok, through = pcall(function() fb.policy { breaker = cb }:call(works) end)
      assert.is_false(ok)
      assert.are.equal(text, through)
      assert.are.equal("circuit open", fb.rejection(through))
      local r = fb.policy { retry = { attempts = 2 }, breaker = cb }
      ok, through = pcall(r.call, r, works) -- the second attempt, 0.1 s later
      assert.is_false(ok)
      assert.are.equal("circuit open: call rejected (retry after 29.900s)", through)
    end)
  end)
end)

describe("what reaches a fallback", function()
  it("never a misuse of p:call: that raises to the caller", function()
    T.vrun(function()
      local answered = 0
      local p = fb.policy { fallback = function() answered = answered + 1; return "fallback" end }
      raises("bad argument #1 to 'call' (function expected, got nil)", function() p:call(nil) end)
      raises("bad argument #1 to 'call' (fusebox.policy expected, got function)",
        function() p.call(works) end)
      local q = fb.policy { retry = { attempts = 3 }, timeout = 1,
        fallback = function() answered = answered + 1; return "fallback" end }
      raises("bad argument #1 to 'call' (function expected, got number)", function() q:call(7) end)
      assert.are.equal(0, answered)
    end)
  end)

  it("every failure of fn and every rejection of a layer", function()
    T.vrun(function()
      local seen = {}
      local function answer(err) seen[#seen + 1] = err; return "fallback" end
      local p = fb.policy { fallback = answer }
      assert.are.equal("fallback", p:call(function() error("raised", 0) end))
      assert.are.equal("fallback", p:call(function() return nil, "returned" end))
      -- fn's own bad call into fusebox is fn failing, not a misuse of p:call
      assert.are.equal("fallback", p:call(function() fb.registry {}:register(nil) end))
      local cb = fb.breaker { failure_threshold = 1 }
      pcall(cb.call, cb, error, "down")
      assert.are.equal("fallback", fb.policy { breaker = cb, fallback = answer }:call(works))
      local limited = fb.policy { rate_limit = { rate = 1e-9, burst = 1 }, fallback = answer }
      assert.are.equal("ok", limited:call(works))
      assert.are.equal("fallback", limited:call(works))
      assert.are.equal("raised", seen[1])
      assert.are.equal("returned", seen[2])
      assert.truthy(seen[3]:find("bad argument #1 to 'register'", 1, true), seen[3])
      assert.are.equal("circuit open: call rejected (retry after 60.000s)", seen[4])
      assert.are.equal("rate limited", fb.rejection(seen[5]))
    end)
  end)
end)

describe("option errors name one argument and show the value", function()
  it("register: weight, zone and meta are all argument #4 (the options)", function()
    T.vrun(function()
      local reg = fb.registry {}
      raises("bad argument #4 to 'register' (weight must be an integer 1..1000000, got 0)",
        function() reg:register("s", "h", 1, { weight = 0 }) end)
      raises("bad argument #4 to 'register' (zone must be a string, got number)",
        function() reg:register("s", "h", 1, { zone = 5 }) end)
      raises("bad argument #4 to 'register' (zone must not be empty)",
        function() reg:register("s", "h", 1, { zone = "" }) end)
      raises("bad argument #4 to 'register' (meta must be a table, got number)",
        function() reg:register("s", "h", 1, { meta = 5 }) end)
      assert.is_true(reg:register("s", "h", 1, { zone = "eu" }))
      assert.are.equal("eu", reg:discover("s")[1].zone)
    end)
  end)

  it("balancer: a strategy's name is argument #3, panic_threshold shows its value", function()
    T.vrun(function()
      local reg = fb.registry {}
      local function strategy(list) return list[1] end
      raises("bad argument #3 to 'balancer' (name must be a string, got number)",
        function() fb.balancer(reg, strategy, { name = 5 }) end)
      raises("bad argument #3 to 'balancer' (panic_threshold must be a number 0..1, got 5)",
        function() fb.balancer(reg, "round_robin", { panic_threshold = 5 }) end)
      raises("bad argument #3 to 'balancer' (panic_threshold must be a number 0..1, got string)",
        function() fb.balancer(reg, "round_robin", { panic_threshold = "half" }) end)
      assert.are.equal("mine", fb.balancer(reg, strategy, { name = "mine" }):algorithm())
    end)
  end)

  it("over HTTP a port given as a string is named a string", function()
    fb.run(function()
      local api = assert(fb.serve_registry { port = 0 })
      local status, _, body = fb.http.request { method = "PUT", timeout = 5,
        url = "http://127.0.0.1:" .. api:port() .. "/v1/services/a/instances",
        body = '{"host":"h","port":"80"}' }
      api:close()
      assert.are.equal(400, status)
      assert.truthy(body:find("port must be a number, got string", 1, true), body)
    end)
  end)
end)

describe("the shipped strategies", function()
  it("are fb.strategies, and require 'fusebox.strategies' gives the same table", function()
    assert.are.equal(fb.strategies, require "fusebox.strategies")
    assert.are.equal("function", type(fb.strategies.zone_aware))
    assert.are.equal("function", type(fb.strategies.latency_aware))
  end)
end)
