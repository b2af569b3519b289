-- Deadlines (policy.deadline, fb.deadline): one bound across retries and
-- hedges, ctx.deadline in the call, and the fusebox-deadline header that
-- fb.http.serve handlers see as their caller's deadline.
local fb = require "fusebox"

describe("deadline", function()
  it("passes the seconds left to fn(ctx) and ends the call when it passes", function()
    T.vrun(function()
      local p = fb.policy { deadline = 2 }
      local got = {}
      local v = p:call(function(ctx, x)
        got.deadline, got.x = ctx.deadline, x
        fb.sleep(0.5)
        got.remaining = ctx:remaining()
        return "done"
      end, 42)
      assert.are.same({ 2, 42, 1.5, "done" }, { got.deadline, got.x, got.remaining, v })
      local cancelled
      local r, err = p:call(function(ctx) fb.sleep(5); cancelled = ctx.cancelled; return "late" end)
      assert.are.same({ nil, "deadline exceeded: no result within 2s" }, { r, err })
      assert.are.equal("deadline exceeded", fb.rejection(err))
      assert.are.equal(2.5, fb.now())
      fb.sleep(5)
      assert.is_true(cancelled)
    end)
  end)

  it("hands a passed deadline to the fallback, and fn's results through", function()
    T.vrun(function()
      local p = fb.policy { deadline = 0.1, fallback = function(err) return "cached", fb.rejection(err) end }
      assert.are.same({ "cached", "deadline exceeded" }, { p:call(function() fb.sleep(1) end) })
      assert.are.same({ 1, nil, 3, 4, n = 4 }, { n = 4, p:call(function() return 1, nil, 3, 4 end) })
      local q = fb.policy { deadline = 1 }
      local ok, err = pcall(q.call, q, function() error("boom", 0) end)
      assert.are.same({ false, "boom" }, { ok, err })
    end)
  end)

  it("bounds the retries: none whose backoff would end past it", function()
    T.vrun(function()
      local starts = {}
      local p = fb.policy { deadline = 1, retry = { attempts = 10, backoff = "constant", base = 0.4 } }
      local r, err = p:call(function(ctx)
        starts[#starts + 1] = { fb.now(), ctx.attempt }
        return nil, "503"
      end)
      assert.are.same({ nil, "503" }, { r, err })
      assert.are.same({ { 0, 1 }, { 0.4, 2 }, { 0.8, 3 } }, starts)
      assert.are.equal(0.8, fb.now())
      -- without a deadline: every attempt
      local n = 0
      fb.policy { retry = { attempts = 10, base = 0.4, backoff = "constant" } }:call(function() n = n + 1; return nil, "x" end)
      assert.are.equal(10, n)
    end)
  end)

  it("bounds the hedges, and the hedges see it", function()
    T.vrun(function()
      local p = fb.policy { deadline = 0.3, hedge = { delay = 0.1, max_attempts = 5 } }
      local seen = {}
      local r, err = p:call(function(ctx)
        seen[#seen + 1] = string.format("%d %.2f", ctx.hedge, ctx.deadline)
        fb.sleep(10)
      end)
      assert.are.equal("deadline exceeded", fb.rejection(err), err)
      assert.is_nil(r)
      assert.are.same({ "0 0.30", "1 0.20", "2 0.10" }, seen)
      assert.are.equal(0.3, fb.now())
      -- the hedge inside, waiting on the same deadline, says what it sent
      local h = fb.hedge { delay = 0.1, max_attempts = 5 }
      r, err = fb.deadline(0.25):call(function()
        local v, e = h:call(function() fb.sleep(10) end)
        seen = e
        return v, e
      end)
      fb.sleep(0.01)
      assert.are.equal("deadline exceeded: no success within the call's deadline (3 attempts)", seen)
    end)
  end)

  it("takes the earlier of nested deadlines", function()
    T.vrun(function()
      local outer = fb.policy { deadline = 1 }
      local inner = fb.policy { deadline = 5 }
      local seen
      local r, err = outer:call(function()
        fb.sleep(0.25)
        return inner:call(function(ctx) seen = ctx.deadline; fb.sleep(3); return "late" end)
      end)
      assert.are.equal(0.75, seen)
      assert.are.equal("deadline exceeded", fb.rejection(err))
      assert.is_nil(r)
      assert.are.equal(1, fb.now())
    end)
  end)

  it("reaches fn through a timeout layer (its child inherits the context)", function()
    T.vrun(function()
      local p = fb.policy { deadline = 3, timeout = 1 }
      local seen
      p:call(function(ctx) seen = ctx.deadline; assert.are.equal(ctx, fb.context()) end)
      assert.are.equal(3, seen)
    end)
  end)

  it("reaches fb.client's fn(instance, ctx); a cancelled attempt is ignored by the breakers", function()
    T.vrun(function()
      local reg = fb.registry {}
      reg:register("svc", "10.0.0.1", 80)
      local c = fb.client { registry = reg, policy = { deadline = 0.5, timeout = 2 },
        per_instance_breaker = { failure_threshold = 1 } }
      local seen
      local r, err = c:call("svc", function(inst, ctx)
        seen = { inst.host, ctx.deadline }
        fb.sleep(1)
        return nil, "503"
      end)
      assert.are.same({ "10.0.0.1", 0.5 }, seen)
      assert.are.equal("deadline exceeded", fb.rejection(err))
      assert.is_nil(r)
      fb.sleep(2)
      local m = c:breaker("10.0.0.1", 80):metrics()
      assert.are.same({ 0, 1, "CLOSED" }, { m.failures, m.ignored, m.state })
    end)
  end)

  it("is refused at once when none is left", function()
    T.vrun(function()
      local inner = fb.deadline(1)
      local outer = fb.deadline(0.5)
      local r, err = outer:call(function()
        fb.sleep(0.5) -- the outer deadline passes here, as it returns
        return inner:call(function() return "ran" end)
      end)
      assert.are.equal("deadline exceeded", fb.rejection(err))
      assert.is_nil(r)
    end)
  end)

  it("logs a passed deadline as an event", function()
    local path = os.tmpname()
    fb.run(function()
      fb.policy { deadline = 0.5 }:call(function() fb.sleep(1) end)
    end, { virtual_time = true, seed = 1, events = path, script = "inline" })
    local text = T.slurp(path)
    os.remove(path)
    assert.truthy(text:find('{"t":0.5,"kind":"deadline","action":"exceeded","seconds":0.5}', 1, true), text)
  end)

  it("is checked, naming the field", function()
    for _, c in ipairs {
      { '{"deadline": 0}', "deadline: must be a positive number, got 0" },
      { '{"deadline": "2s"}', 'deadline: must be a positive number, got "2s"' },
      { '{"deadline": 1e10}', "deadline: must be in 0..1000000000 seconds, got 10000000000" },
      { '{"deadline": null}', "deadline: must be a positive number, got null" },
    } do
      local ok, err = pcall(fb.policy_from_json, c[1])
      assert.is_false(ok)
      assert.truthy(err:find(c[2], 1, true), err)
    end
    local ok, err = pcall(fb.deadline, -1)
    assert.is_false(ok)
    assert.truthy(err:find("bad argument #1 to 'deadline' (seconds: must be a positive number, got -1)", 1, true), err)
    assert.are.same({ "deadline", "retry", "hedge", "breaker" },
      fb.policy_from_json('{"breaker": {}, "hedge": {}, "retry": {}, "deadline": 2}'):names())
  end)
end)

describe("deadline over HTTP", function()
  it("is sent as fusebox-deadline and seen by the handler as its caller's", function()
    local got, inner, headers = {}, nil, nil
    fb.run(function()
      local srv = assert(fb.http.serve { port = 0, background = true, handler = function(req)
        got[#got + 1] = req.deadline or "none"
        headers = req.headers
        inner = fb.policy { deadline = 60 }:call(function(ctx) return ctx.deadline end)
        return 200, {}, "ok"
      end })
      local url = "http://127.0.0.1:" .. srv:port() .. "/"
      local p = fb.policy { deadline = 0.5 }
      local status = p:call(function() return fb.http.request { url = url } end)
      assert.are.equal(200, status)
      assert.is_true(headers["fusebox-deadline"]:find("^0%.4%d%d%d%d%d$") ~= nil, headers["fusebox-deadline"])
      assert.is_true(inner <= got[1] and inner > 0.3, tostring(inner)) -- the handler's policy takes its caller's
      -- no deadline: no header; bad values are no deadline
      fb.http.request { url = url }
      for _, v in ipairs { "-1", "1e3", "abc", "inf", "nan", "0x10", "1e10", "2000000000", string.rep("9", 40) } do
        fb.http.request { url = url, headers = { ["fusebox-deadline"] = v } }
      end
      fb.http.request { url = url, headers = { ["Fusebox-Deadline"] = "7.5" } }
      srv:close()
    end)
    assert.is_true(got[1] > 0.3 and got[1] <= 0.5, tostring(got[1]))
    for i = 2, 11 do assert.are.equal("none", got[i], "request " .. i) end
    assert.are.equal(7.5, got[12])
  end)

  it("bounds the request's own timeout, and none left is a failure", function()
    fb.run(function()
      local srv = assert(fb.http.serve { port = 0, background = true, handler = function()
        fb.sleep(2)
        return 200, {}, "slow"
      end })
      local url = "http://127.0.0.1:" .. srv:port() .. "/"
      local t0 = fb.now()
      local ctxs = fb.policy { deadline = 0.2 }
      local r, err = ctxs:call(function() return fb.http.request { url = url, timeout = 30 } end)
      assert.is_nil(r)
      assert.is_true(fb.now() - t0 < 1, "waited " .. (fb.now() - t0))
      assert.truthy(err == "timeout" or fb.rejection(err) == "deadline exceeded", err)
      srv:close()
    end)
  end)
end)
