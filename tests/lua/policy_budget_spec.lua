-- Retry budgets (fb.retry_budget, retry.budget): Finagle's RetryBudget
-- arithmetic over a window of ttl seconds in 10 slices, on virtual time.
local fb = require "fusebox"

local function events_of(fn)
  local path = os.tmpname()
  fb.run(fn, { virtual_time = true, seed = 1, events = path, script = "inline" })
  local out = {}
  for line in T.slurp(path):gmatch("[^\n]+") do out[#out + 1] = fb.json_decode(line) end
  os.remove(path)
  return out
end

local function kinds(evs, kind)
  local out = {}
  for _, e in ipairs(evs) do if e.kind == kind then out[#out + 1] = e end end
  return out
end

describe("retry budget arithmetic", function()
  it("starts with the reserve, min_per_second * ttl (Finagle's defaults: 10 s, 10/s, 0.2)", function()
    T.vrun(function()
      local b = fb.retry_budget()
      assert.are.equal(100, b:balance())
      local s = b:stats()
      assert.are.same({ 10, 10, 0.2 }, { s.ttl, s.min_per_second, s.ratio })
      assert.are.equal(50, fb.retry_budget { ttl = 5 }:balance())
      assert.are.equal(0, fb.retry_budget { min_per_second = 0 }:balance())
    end)
  end)

  it("lets ratio * deposits + reserve - withdrawals retries through, exactly", function()
    T.vrun(function()
      local b = fb.retry_budget { ttl = 10, min_per_second = 0, ratio = 0.5 }
      for _ = 1, 4 do b:deposit() end
      assert.are.equal(2, b:balance())
      assert.is_true(b:withdraw())
      assert.is_true(b:withdraw())
      assert.is_false(b:withdraw())
      b:deposit()                         -- 5 * 0.5 - 2 = 0.5: not a whole retry
      assert.are.equal(0, b:balance())
      assert.is_false(b:withdraw())
      b:deposit()                         -- 6 * 0.5 - 2 = 1
      assert.is_true(b:withdraw())
      local s = b:stats()
      assert.are.same({ 6, 3, 6, 3, 2 }, { s.deposits, s.withdrawals, s.deposited, s.withdrawn, s.exhausted })
      -- 0.1 * 10 and 0.7 * 10 round in binary: still whole retries
      local c = fb.retry_budget { min_per_second = 0, ratio = 0.1 }
      for _ = 1, 10 do c:deposit() end
      assert.is_true(c:withdraw())
      assert.is_false(c:withdraw())
      local d = fb.retry_budget { min_per_second = 0, ratio = 0.7 }
      for _ = 1, 10 do d:deposit() end
      assert.are.equal(7, d:balance())
    end)
  end)

  it("forgets deposits and withdrawals slice by slice after ttl", function()
    T.vrun(function()
      -- ttl 10: slices of 1 s; a count made at t lives while now < floor(t) + 10
      local b = fb.retry_budget { ttl = 10, min_per_second = 0, ratio = 0.1 }
      for _ = 1, 10 do b:deposit() end -- slice 0
      fb.sleep(5.5)
      for _ = 1, 20 do b:deposit() end -- slice 5
      assert.are.equal(3, b:balance())
      assert.is_true(b:withdraw())     -- slice 5
      local want = {                   -- time -> balance
        { 9.999, 2 }, { 10, 1 }, { 14.999, 1 }, { 15, 0 }, { 16, 0 },
      }
      for _, tw in ipairs(want) do
        fb.sleep(tw[1] - fb.now())
        assert.are.equal(tw[2], b:balance(), "at t=" .. tw[1])
      end
      assert.are.equal(0, b:stats().deposits)
      assert.are.equal(0, b:stats().withdrawals)
    end)
  end)

  it("renews the reserve as withdrawals leave the window", function()
    T.vrun(function()
      local b = fb.retry_budget { ttl = 5, min_per_second = 2, ratio = 0 } -- reserve 10, slices of 0.5 s
      for i = 1, 10 do assert.is_true(b:withdraw(), "retry " .. i) end
      assert.is_false(b:withdraw())
      fb.sleep(4.999)
      assert.is_false(b:withdraw())
      fb.sleep(0.001)                  -- t = 5: slice 0 has left the window
      assert.are.equal(10, b:balance())
    end)
  end)

  it("starts empty in every run (a clock that went back)", function()
    local b
    T.vrun(function()
      b = fb.retry_budget { min_per_second = 0, ratio = 1 }
      fb.sleep(100)
      for _ = 1, 5 do b:deposit() end
      assert.are.equal(5, b:balance())
    end)
    T.vrun(function() assert.are.equal(0, b:balance()) end)
  end)
end)

describe("retry with a budget", function()
  local function outage(opts, n)
    local calls, errs = 0, {}
    T.vrun(function()
      local p = fb.policy { retry = opts }
      for i = 1, n do
        local _, err = p:call(function() calls = calls + 1; return nil, "503" end)
        errs[i] = err
      end
    end)
    return calls, errs
  end

  it("refuses retries beyond the ratio with a value of its own kind", function()
    local calls, errs = outage({ attempts = 3, base = 0, budget = { ratio = 0.2, min_per_second = 0 } }, 20)
    -- call k may retry while 0.2 k - retries >= 1: calls 5, 10, 15, 20 retry once each
    assert.are.equal(24, calls)
    local exhausted = 0
    for i, err in ipairs(errs) do
      if i % 5 == 0 then
        assert.are.equal("retry budget exhausted", fb.rejection(err), err)
      end
      if fb.rejection(err) == "retry budget exhausted" then exhausted = exhausted + 1 end
      assert.truthy(err:find("last failure: 503", 1, true), err)
    end
    assert.are.equal(20, exhausted) -- the retry after each one's last allowed attempt
    -- without a budget every call makes its 3 attempts
    assert.are.equal(60, (outage({ attempts = 3, base = 0 }, 20)))
  end)

  it("is shared by the policies and clients given it", function()
    T.vrun(function()
      local b = fb.retry_budget { min_per_second = 0, ratio = 0.5 }
      local p1 = fb.policy { retry = { attempts = 2, base = 0, budget = b } }
      local p2 = fb.policy { retry = { attempts = 2, base = 0, budget = b } }
      local reg = fb.registry {}
      reg:register("svc", "10.0.0.1", 80)
      local c = fb.client { registry = reg, policy = { retry = { attempts = 2, base = 0, budget = b } },
        per_instance_breaker = false }
      local fail = function() return nil, "503" end
      p1:call(fail)          -- deposit 1: 0.5, no retry
      p2:call(fail)          -- deposit 2: 1, a retry
      c:call("svc", fail)    -- deposit 3: 1.5 - 1 = 0.5, no retry
      local s = b:stats()
      assert.are.same({ 3, 1, 2 }, { s.deposited, s.withdrawn, s.exhausted })
    end)
  end)

  it("logs a refusal as a retry_budget event, and shows in the metrics", function()
    local text
    local evs = events_of(function()
      local b = fb.retry_budget { name = "users", min_per_second = 0, ratio = 0.2 }
      local p = fb.policy { retry = { attempts = 3, base = 0, budget = b } }
      for _ = 1, 5 do p:call(function() return nil, "503" end) end
      text = fb.metrics()
    end)
    local refused = kinds(evs, "retry_budget")
    assert.are.equal(5, #refused)
    assert.are.same({ "users", "exhausted", "retry" }, { refused[1].budget, refused[1].action, refused[1].by })
    assert.truthy(text:find('fusebox_retry_budget_deposits_total{budget="users"} 5\n', 1, true), text)
    assert.truthy(text:find('fusebox_retry_budget_withdrawals_total{budget="users"} 1\n', 1, true), text)
    assert.truthy(text:find('fusebox_retry_budget_exhausted_total{budget="users"} 5\n', 1, true), text)
    assert.truthy(text:find('fusebox_retry_budget_balance{budget="users"} 0\n', 1, true), text)
    local path = os.tmpname()
    local f = assert(io.open(path, "w")); f:write(text); f:close()
    local pipe = io.popen("promtool check metrics < " .. path .. " 2>&1; echo rc=$?")
    local out = pipe:read("*a"); pipe:close()
    os.remove(path)
    assert.are.equal("rc=0\n", out)
  end)
end)

describe("retry budget options", function()
  local cases = {
    { { ttl = 0.5 }, "ttl: must be in 1..60 seconds, got 0.5" },
    { { ttl = 61 }, "ttl: must be in 1..60 seconds, got 61" },
    { { ratio = -0.1 }, "ratio: must be a number >= 0, got -0.1" },
    { { ratio = 1001 }, "ratio: must be in 0..1000" },
    { { min_per_second = "10" }, 'min_per_second: must be a number >= 0, got "10"' },
    { { min_per_second = 0 / 0 }, "min_per_second: must be a number >= 0, got nan" },
    { { percent = 0.2 }, "percent: unknown field (known: min_per_second, name, ratio, ttl)" },
  }

  it("are checked, naming the field", function()
    for _, c in ipairs(cases) do
      local ok, err = pcall(fb.retry_budget, c[1])
      assert.is_false(ok)
      assert.truthy(err:find("bad argument #1 to 'retry_budget' (" .. c[2], 1, true), err)
    end
  end)

  it("are checked in policy JSON with the field's path", function()
    for _, c in ipairs(cases) do
      local json = fb.json_encode { retry = { budget = c[1] } }
      if json then -- NaN has no JSON
        local ok, err = pcall(fb.policy_from_json, json)
        assert.is_false(ok)
        assert.truthy(err:find("retry.budget." .. c[2], 1, true), err)
      end
    end
    local ok, err = pcall(fb.policy_from_json, '{"retry": {"budget": 0.2}}')
    assert.is_false(ok)
    assert.truthy(err:find("retry.budget: must be retry budget options or a retry budget, got 0.2", 1, true), err)
    ok, err = pcall(fb.policy_from_json, '{"retry": {"budget": [1]}}')
    assert.truthy(err:find("retry.budget: must be a table of options, got an array", 1, true), err)
    local p = fb.policy_from_json('{"retry": {"attempts": 3, "budget": {"ratio": 0.2, "min_per_second": 10, "ttl": 10}}}')
    assert.are.same({ "retry" }, p:names())
  end)

  it("take a shared budget from code, never merged into", function()
    T.vrun(function()
      local b = fb.retry_budget { min_per_second = 0, ratio = 1 }
      local p = fb.policy_from_json('{"retry": {"attempts": 2, "base": 0, "budget": {"ratio": 0.1}}}',
        { retry = { budget = b } })
      p:call(function() return nil, "x" end)
      assert.are.equal(1, b:stats().withdrawn)
    end)
  end)
end)
