-- Policies on virtual time: retry, timeout, bulkhead, rate limiter, and
-- their composition fb.policy{...}.
local fb = require "fusebox"

-- n draws of fb.random from a run seeded with seed
local function draws(seed, n)
  local out = {}
  T.vrun(function() for i = 1, n do out[i] = fb.random() end end, seed)
  return out
end

local function delays(opts, n, seed)
  local out
  T.vrun(function() out = fb.retry(opts):delays(n) end, seed)
  return out
end

local function near(expected, actual)
  assert.are.equal(#expected, #actual)
  for i = 1, #expected do
    assert.is_true(math.abs(expected[i] - actual[i]) < 1e-12,
      string.format("delay %d: expected %.17g, got %.17g", i, expected[i], actual[i]))
  end
end

describe("retry", function()
  it("backs off constant, linear and exponential, capped by max", function()
    near({ 0.5, 0.5, 0.5, 0.5 }, delays({ backoff = "constant", base = 0.5 }, 4))
    near({ 0.5, 1, 1.5, 2, 2 }, delays({ backoff = "linear", base = 0.5, max = 2 }, 5))
    near({ 0.1, 0.2, 0.4, 0.8, 1.6 }, delays({ base = 0.1 }, 5))
    near({ 1, 3, 9, 10, 10 }, delays({ base = 1, multiplier = 3, max = 10 }, 5))
  end)

  it("jitters full, equal and decorrelated from the seeded stream", function()
    local u = draws(42, 5)
    local d = { 1, 2, 4, 5, 5 } -- exponential, base 1, max 5
    local full, equal = {}, {}
    for i = 1, 5 do
      full[i] = u[i] * d[i]
      equal[i] = d[i] / 2 + u[i] * d[i] / 2
    end
    near(full, delays({ base = 1, max = 5, jitter = "full" }, 5, 42))
    near(equal, delays({ base = 1, max = 5, jitter = "equal" }, 5, 42))
    local dec, prev = {}, 1
    for i = 1, 5 do
      prev = math.min(10, 1 + u[i] * (3 * prev - 1))
      dec[i] = prev
    end
    near(dec, delays({ base = 1, max = 10, jitter = "decorrelated" }, 5, 42))
  end)

  it("replays the same jittered delays with the same seed only", function()
    local opts = { base = 1, jitter = "full" }
    assert.are.same(delays(opts, 8, 7), delays(opts, 8, 7))
    assert.are_not.same(delays(opts, 8, 7), delays(opts, 8, 8))
  end)

  it("sleeps the delays between attempts and returns the first success", function()
    local at, result = {}, nil
    T.vrun(function()
      local r = fb.retry { attempts = 5, base = 1, jitter = "full" }
      result = { r:call(function(a, b)
        at[#at + 1] = fb.now()
        if #at < 4 then return nil, "not yet" end
        return a + b, "second"
      end, 2, 3) }
    end, 9)
    local u = draws(9, 3)
    near({ 0, u[1], u[1] + 2 * u[2], u[1] + 2 * u[2] + 4 * u[3] }, at)
    assert.are.same({ 5, "second" }, result)
  end)

  it("hands back the last nil, err and re-raises the last raised error", function()
    T.vrun(function()
      local r = fb.retry { attempts = 3, base = 0 }
      local n = 0
      local v, err = r:call(function() n = n + 1; return nil, "failure " .. n end)
      assert.is_nil(v)
      assert.are.equal("failure 3", err)
      n = 0
      local ok, e = pcall(r.call, r, function() n = n + 1; error("boom " .. n, 0) end)
      assert.is_false(ok)
      assert.are.equal("boom 3", e)
      -- nil alone or nothing at all is a success, not a failure
      n = 0
      assert.is_nil(r:call(function() n = n + 1; return nil end))
      assert.are.equal(1, n)
    end)
  end)

  it("asks retry_on about raised and returned errors alike", function()
    T.vrun(function()
      local seen = {}
      local r = fb.retry { attempts = 5, base = 0, retry_on = function(err)
        seen[#seen + 1] = err
        return err ~= "fatal"
      end }
      local errs = { "a", "b", "fatal", "never" }
      local n = 0
      local ok, e = pcall(r.call, r, function()
        n = n + 1
        if n == 2 then error(errs[n], 0) end
        return nil, errs[n]
      end)
      assert.is_true(ok)
      assert.are.equal(3, n)
      assert.are.same({ "a", "b", "fatal" }, seen)
      assert.is_nil(e)
    end)
  end)

  it("rejects bad options naming the field", function()
    local ok, err = pcall(function() local r = fb.retry { attempts = 0 }; return r end)
    assert.is_false(ok)
    assert.truthy(err:find("policy_spec.lua:%d+: bad argument #1 to 'retry' %(attempts: must be an integer >= 1, got 0%)"), err)
    -- one p:call always ends: a timeout of 1e-300 s times every attempt out
    ok, err = pcall(fb.retry, { attempts = 1001 })
    assert.truthy(err:find("attempts: must be in 1..1000 attempts, got 1001", 1, true), err)
    ok, err = pcall(fb.policy_from_json, '{"retry": {"attempts": 77777771}}')
    assert.truthy(err:find("attempts: must be in 1..1000 attempts, got 77777771", 1, true), err)
    ok, err = pcall(fb.retry, { jitter = "some" })
    assert.truthy(err:find('jitter: must be one of none, full, equal, decorrelated, got "some"', 1, true), err)
    ok, err = pcall(fb.retry, { tries = 3 })
    assert.truthy(err:find("tries: unknown field (known: attempts, backoff, base, budget, jitter, max, multiplier, retry_on)", 1, true), err)
  end)
end)

describe("timeout", function()
  it("returns the results when the call is in time", function()
    T.vrun(function()
      local t = fb.timeout(2)
      local a, b, c = t:call(function(x) fb.sleep(1.5); return x, nil, "z" end, "x")
      assert.are.same({ "x", nil, "z" }, { a, b, c })
      assert.are.equal(1.5, fb.now())
      local v, err = t:call(function() return nil, "value failure" end)
      assert.is_nil(v)
      assert.are.equal("value failure", err)
      local ok, e = pcall(t.call, t, function() fb.sleep(1); error("raised", 0) end)
      assert.is_false(ok)
      assert.are.equal("raised", e)
      assert.are.equal(0, t.timeouts)
    end)
  end)

  it("gives up at the deadline; the abandoned child finishes harmlessly", function()
    local finished_at, t
    T.vrun(function()
      t = fb.timeout(1)
      local v, err = t:call(function() fb.sleep(5); finished_at = fb.now(); return "late" end)
      assert.is_nil(v)
      assert.are.equal("timeout: no result within 1s", err)
      assert.are.equal("timeout", fb.rejection(err))
      assert.are.equal(1, fb.now())
      -- a late error must not crash the run either
      v = t:call(function() fb.sleep(2); error("late error") end)
      assert.is_nil(v)
      assert.are.equal(2, fb.now())
      -- the late results must not wake this unrelated wait early
      assert.is_false(fb.wait("nothing", 10))
      assert.are.equal(12, fb.now())
    end)
    assert.are.equal(5, finished_at)
    assert.are.equal(2, t.timeouts)
    assert.are.equal(2, t.late)
  end)

  it("rejects a non-positive duration", function()
    local ok, err = pcall(fb.timeout, 0)
    assert.is_false(ok)
    assert.truthy(err:find("bad argument #1 to 'timeout' (seconds: must be a positive number, got 0)", 1, true), err)
  end)
end)

describe("bulkhead", function()
  -- Spawns one caller per name, in order, each holding a slot for hold
  -- seconds after start_at; returns the log of starts and rejections.
  local function crowd(bh, names, hold, start_at)
    local log = {}
    for i, name in ipairs(names) do
      fb.spawn(function()
        fb.sleep(start_at and start_at[i] or 0)
        local v, err = bh:call(function()
          log[#log + 1] = name .. "@" .. fb.now()
          fb.sleep(hold)
          return name
        end)
        if v == nil then log[#log + 1] = name .. " rejected@" .. fb.now() .. ": " .. err end
      end)
    end
    return log
  end

  it("runs at most max_concurrent at once, the rest in FIFO order", function()
    local log, bh
    T.vrun(function()
      bh = fb.bulkhead { max_concurrent = 2, max_queue = 10 }
      log = crowd(bh, { "a", "b", "c", "d", "e" }, 1)
    end)
    assert.are.same({ "a@0", "b@0", "c@1", "d@1", "e@2" }, log)
    assert.are.equal(0, bh.active)
    assert.are.equal(0, bh.waiting)
  end)

  it("hands a freed slot to the longest waiter, not to a newcomer", function()
    local log
    T.vrun(function()
      local bh = fb.bulkhead { max_concurrent = 1, max_queue = 10 }
      -- e arrives at t=1, when a frees its slot and before b has run
      log = crowd(bh, { "a", "b", "c", "e" }, 1, { 0, 0, 0, 1 })
    end)
    assert.are.same({ "a@0", "b@1", "c@2", "e@3" }, log)
  end)

  it("rejects when the queue is full", function()
    local log
    T.vrun(function()
      local bh = fb.bulkhead { max_concurrent = 1, max_queue = 1 }
      log = crowd(bh, { "a", "b", "c" }, 1)
    end)
    assert.are.same({ "a@0", "c rejected@0: bulkhead full: 1 running, 1 queued (max_queue 1)", "b@1" }, log)
  end)

  it("rejects a waiter after queue_timeout and serves the next one", function()
    local log, bh
    T.vrun(function()
      bh = fb.bulkhead { max_concurrent = 1, max_queue = 5, queue_timeout = 0.5 }
      log = crowd(bh, { "a", "b", "c" }, 2, { 0, 0, 1.8 })
    end)
    assert.are.same({ "a@0", "b rejected@0.5: bulkhead full: no slot within 0.5s (queue_timeout)", "c@2" }, log)
    assert.are.equal("bulkhead full", fb.rejection("bulkhead full: no slot within 0.5s (queue_timeout)"))
    assert.are.equal(0, bh.active)
    assert.are.equal(0, bh.waiting)
  end)

  it("frees the slot when fn raises and passes nil, err through", function()
    T.vrun(function()
      local bh = fb.bulkhead { max_concurrent = 1, max_queue = 1 }
      local got
      fb.spawn(function() got = { bh:call(function() return "b ran at " .. fb.now() end) } end)
      local ok, err = pcall(bh.call, bh, function() fb.sleep(1); error("boom", 0) end)
      assert.is_false(ok)
      assert.are.equal("boom", err)
      fb.sleep(0)
      assert.are.same({ "b ran at 1" }, got)
      assert.are.same({ nil, "no" }, { bh:call(function() return nil, "no" end) })
      assert.are.equal(0, bh.active)
    end)
  end)
end)

describe("rate limiter", function()
  it("allows a burst, then one call per 1/rate seconds", function()
    T.vrun(function()
      local rl = fb.rate_limiter { rate = 10, burst = 3 }
      for _ = 1, 3 do assert.is_true(rl:acquire()) end
      local ok, after = rl:acquire()
      assert.is_false(ok)
      assert.is_true(math.abs(after - 0.1) < 1e-9)
      fb.sleep(0.05)
      ok, after = rl:acquire()
      assert.is_false(ok)
      assert.is_true(math.abs(after - 0.05) < 1e-9)
      fb.sleep(0.05)
      assert.is_true(rl:acquire())
      fb.sleep(60) -- refills up to burst, no further
      for _ = 1, 3 do assert.is_true(rl:acquire()) end
      assert.is_false(rl:acquire())
    end)
  end)

  it("calls fn with a token and rejects with when the next one comes", function()
    T.vrun(function()
      local rl = fb.rate_limiter { rate = 4, burst = 1 }
      assert.are.same({ 1, 2 }, { rl:call(function(a, b) return a, b end, 1, 2) })
      local v, err = rl:call(function() error("not called") end)
      assert.is_nil(v)
      assert.are.equal("rate limited: next token in 0.250s", err)
      assert.are.equal("rate limited", fb.rejection(err))
    end)
  end)
end)

describe("policy", function()
  -- a layer that logs each call it sees, then passes it on
  local function recorder(log, name)
    return { call = function(_, fn, ...) log[#log + 1] = name; return fn(...) end }
  end

  it("composes fallback -> retry -> breaker -> rate_limit -> bulkhead -> timeout -> fn", function()
    local log = {}
    T.vrun(function()
      local p = fb.policy {
        timeout = recorder(log, "timeout"), bulkhead = recorder(log, "bulkhead"),
        rate_limit = recorder(log, "rate_limit"), breaker = recorder(log, "breaker"),
        retry = { attempts = 2, base = 0, retry_on = function(e) log[#log + 1] = "retry:" .. e; return true end },
        fallback = function(e) log[#log + 1] = "fallback:" .. e; return "fell back" end,
      }
      assert.are.same({ "fallback", "retry", "breaker", "rate_limit", "bulkhead", "timeout" }, p:names())
      local n = 0
      assert.are.equal("fell back", p:call(function() n = n + 1; log[#log + 1] = "fn"; return nil, "e" .. n end))
    end)
    assert.are.same({ "breaker", "rate_limit", "bulkhead", "timeout", "fn", "retry:e1",
      "breaker", "rate_limit", "bulkhead", "timeout", "fn", "fallback:e2" }, log)
  end)

  it("lets the breaker see every attempt, nil, err failures included", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 3, timeout = 10 }
      local p = fb.policy { retry = { attempts = 3, base = 0.1 }, breaker = cb }
      local v, err = p:call(function() return nil, "down" end)
      assert.is_nil(v)
      assert.are.equal("down", err)
      assert.are.equal("OPEN", cb.state)
      -- open: rejected without calling fn, and retry_on can tell
      local called = false
      local ok, e = pcall(p.call, p, function() called = true end)
      assert.is_false(ok)
      assert.are.equal("circuit open", fb.rejection(e))
      assert.is_false(called)
    end)
  end)

  it("spends no rate-limit token on an open breaker, no bulkhead slot on a rate-limited call", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 1, timeout = 10 }
      local rl = fb.rate_limiter { rate = 1, burst = 2 }
      local bh = fb.bulkhead { max_concurrent = 1 }
      local p = fb.policy { breaker = cb, rate_limit = rl, bulkhead = bh }
      pcall(p.call, p, function() error("down") end)
      assert.are.equal("OPEN", cb.state)
      for _ = 1, 5 do pcall(p.call, p, function() end) end
      assert.is_true(rl:acquire()) -- one token left of two: only the first call took one
      local inner = fb.policy { rate_limit = rl, bulkhead = bh }
      local v, err = inner:call(function() return "ran" end)
      assert.is_nil(v)
      assert.are.equal("rate limited", fb.rejection(err))
      assert.are.equal(0, bh.active)
    end)
  end)

  it("bounds each attempt by the timeout, not the whole retry sequence", function()
    T.vrun(function()
      local p = fb.policy { retry = { attempts = 3, backoff = "constant", base = 1 }, timeout = 2 }
      local n = 0
      local v = p:call(function() n = n + 1; fb.sleep(n < 3 and 5 or 1.5); return "done " .. n end)
      assert.are.equal("done 3", v)
      assert.are.equal(2 + 1 + 2 + 1 + 1.5, fb.now())
    end)
  end)

  it("falls back on raised errors and rejections, and not on success", function()
    T.vrun(function()
      local seen = {}
      local p = fb.policy { rate_limit = { rate = 1, burst = 1 },
        fallback = function(err) seen[#seen + 1] = err; return "cached", 1 end }
      assert.are.same({ "fresh" }, { p:call(function() return "fresh" end) })
      assert.are.same({ "cached", 1 }, { p:call(function() return "fresh" end) })
      fb.sleep(1)
      assert.are.same({ "cached", 1 }, { p:call(function() error("oops", 0) end) })
      assert.are.same({ "rate limited: next token in 1.000s", "oops" }, seen)
    end)
  end)

  it("passes results through when no layer is given", function()
    T.vrun(function()
      local p = fb.policy {}
      assert.are.same({ 1, nil, 3 }, { p:call(function(...) return ... end, 1, nil, 3) })
    end)
  end)

  it("rejects bad layers naming the field path", function()
    local function err_of(opts)
      local ok, err = pcall(fb.policy, opts)
      assert.is_false(ok)
      return err
    end
    assert.truthy(err_of({ breaker = { failure_rate = "high" } }):find(
      "bad argument #1 to 'policy' (breaker.failure_rate: must be a number in 0..1, got \"high\")", 1, true))
    assert.truthy(err_of({ bulkhead = { max_queue = -1 } }):find(
      "bulkhead.max_queue: must be an integer >= 0, got -1", 1, true))
    assert.truthy(err_of({ retry = 3 }):find("retry: must be retry options or a retry, got 3", 1, true))
    assert.truthy(err_of({ timeout = "1s" }):find('timeout: must be a positive number, got "1s"', 1, true))
    assert.truthy(err_of({ retries = {} }):find("retries: unknown field", 1, true))
    -- breaker fields it does not know go to fb.breaker, which judges them
    assert.truthy(err_of({ breaker = { bogus = 1 } }):find("breaker: unknown option 'bogus'", 1, true))
  end)
end)

describe("policies from JSON", function()
  local function tmpfile(text)
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
    return path
  end

  local json = [[{
    "retry": { "attempts": 4, "backoff": "constant", "base": 0.25 },
    "breaker": { "failure_threshold": 3, "timeout": 30 },
    "rate_limit": { "rate": 100, "burst": 10 },
    "bulkhead": { "max_concurrent": 5, "max_queue": 2, "queue_timeout": 1 },
    "timeout": 2
  }]]

  it("loads every layer from a file or from text", function()
    local path = tmpfile(json)
    T.vrun(function()
      for _, p in ipairs { fb.load_policy(path), fb.policy_from_json(path), fb.policy_from_json(json) } do
        assert.are.same({ "retry", "breaker", "rate_limit", "bulkhead", "timeout" }, p:names())
        local n = 0
        local t0 = fb.now()
        assert.are.equal("ok", p:call(function() n = n + 1; if n < 3 then error("x") end; return "ok" end))
        assert.are.equal(0.5, fb.now() - t0)
      end
    end)
    os.remove(path)
  end)

  it("takes functions from code, merged into the JSON", function()
    T.vrun(function()
      local asked = 0
      local p = fb.policy_from_json('{"retry": {"attempts": 3, "base": 0}}', {
        fallback = function(err) return "fallback: " .. err end,
        retry = { retry_on = function() asked = asked + 1; return false end },
      })
      assert.are.equal("fallback: no", p:call(function() return nil, "no" end))
      assert.are.equal(1, asked)
    end)
  end)

  it("names the field path of a bad field, and the source", function()
    local function err_of(text)
      local ok, err = pcall(fb.policy_from_json, text)
      assert.is_false(ok)
      return err
    end
    assert.truthy(err_of('{"breaker": {"failure_rate": "high"}}'):find(
      'policy_from_json: JSON text: breaker.failure_rate: must be a number in 0..1, got "high"', 1, true))
    assert.truthy(err_of('{"retry": {"attempts": 2.5}}'):find(
      "retry.attempts: must be an integer >= 1, got 2.5", 1, true))
    assert.truthy(err_of('{"retry": {"jitter": null}}'):find(
      "retry.jitter: must be one of none, full, equal, decorrelated, got null", 1, true))
    assert.truthy(err_of('{"bulkhead": [1, 2]}'):find(
      "bulkhead: must be a table of options, got an array", 1, true))
    assert.truthy(err_of('{"timeout": 0}'):find("timeout: must be a positive number, got 0", 1, true))
    assert.truthy(err_of('{"fallback": "cached"}'):find('fallback: must be a function, got "cached"', 1, true))
    assert.truthy(err_of('{"retry": {"attempts": 2,}}'):find(
      "policy_from_json: JSON text: invalid JSON at line 1, column", 1, true))
    local path = tmpfile('{"rate_limit": {"rate": "fast"}}')
    local ok, err = pcall(fb.load_policy, path)
    assert.is_false(ok)
    assert.truthy(err:find("load_policy: " .. path .. ': rate_limit.rate: must be a positive number, got "fast"', 1, true), err)
    os.remove(path)
    ok, err = pcall(fb.load_policy, "/nonexistent/policy.json")
    assert.is_false(ok)
    assert.truthy(err:find("load_policy: /nonexistent/policy.json: No such file", 1, true), err)
  end)
end)

describe("policy:call under LuaJIT", function()
  -- Not a timing: the abort reasons of the traces recorded while a loop
  -- calls a wrapper `return p:call(fn, i)` (the bench harness's form).
  -- Too many tail calls in one trace abort it, and the call runs ~40x
  -- slower in the interpreter.
  it("is compiled when a wrapper tail-calls it with every layer but timeout", function()
    local traceerr = require("jit.vmdef").traceerr
    local aborts = {}
    local function on_trace(what, _, _, _, code)
      if what == "abort" then aborts[#aborts + 1] = traceerr[code] end
    end
    T.vrun(function()
      local p = fb.policy { retry = { attempts = 3 }, breaker = { failure_threshold = 5 },
        rate_limit = { rate = 1e9, burst = 1e9 }, bulkhead = { max_concurrent = 10 },
        fallback = function() return 0 end }
      local function fn(x) return x end
      local call = function(i) return p:call(fn, i) end
      -- the hot counters other specs left behind decide where traces
      -- start: begin from none, so this records the same traces every run
      jit.flush()
      jit.attach(on_trace, "trace")
      local sum = 0
      for i = 1, 2000 do sum = sum + call(i) end
      jit.attach(on_trace)
      assert.are.equal(2001000, sum)
    end)
    for _, reason in ipairs(aborts) do
      assert.is_nil(reason:find("unroll limit", 1, true), reason)
    end
  end)
end)
