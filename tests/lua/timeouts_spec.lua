-- Timeouts are their own outcome: in the event log, the breaker's record,
-- the service's call_end, the summary, the report and the metrics.
local slurp = T.slurp

local function count(s, pattern)
  local n = 0
  for _ in s:gmatch(pattern) do n = n + 1 end
  return n
end

describe("a policy timeout", function()
  -- tests/fixtures/timeouts_scenario.lua: 40 calls over 40 s of virtual
  -- time, each timed out at 0.2 s, the service answering at 0.5 s
  local out, err, code, log, html
  setup(function()
    local events, page = os.tmpname(), os.tmpname()
    out, err, code = T.cli(string.format("run --virtual-time --seed 1 --events %s --report %s "
      .. "tests/fixtures/timeouts_scenario.lua", events, page))
    log, html = slurp(events), slurp(page)
    os.remove(events)
    os.remove(page)
  end)

  it("runs the scenario", function()
    assert.are.equal(0, code, err)
  end)

  it("is logged as a timeout by the breaker and by the service", function()
    assert.are.equal(40, count(log, '"kind":"outcome"[^\n]*"outcome":"timeout"'))
    assert.are.equal(0, count(log, '"kind":"outcome"[^\n]*"outcome":"failure"'))
    -- the service's late answer is what its caller saw: a timeout
    assert.are.equal(40, count(log, '"kind":"call_end"[^\n]*"outcome":"timeout"'))
    assert.are.equal(0, count(log, '"kind":"call_end"[^\n]*"outcome":"success"'))
    assert.are.equal(40, count(log, '"kind":"call_end"[^\n]*"late":true'))
    assert.truthy(log:find('"calls":40,"successes":0,"failures":0,"timeouts":40,"rejections":0', 1, true), log:sub(-300))
  end)

  it("is counted in the summary", function()
    assert.truthy(err:find("40 calls, 0 successes, 0 failures, 40 timeouts, 0 rejections", 1, true), err)
  end)

  it("is counted in the report's header and rows", function()
    assert.truthy(html:find('<td id="total-calls">40</td>', 1, true))
    assert.truthy(html:find('<td id="total-success">0</td>', 1, true))
    assert.truthy(html:find('<td id="total-timeout">40</td>', 1, true))
    assert.truthy(html:find('<td id="total-late">40</td>', 1, true))
    assert.truthy(html:find('<td id="total-breaker-failure">0</td>', 1, true))
    assert.truthy(html:find('<td id="total-breaker-timeout">40</td>', 1, true))
    assert.truthy(html:find('data-series="slow" data-total="40" data-success="0" '
      .. 'data-failure="0" data-timeout="40" data-rejected="0"', 1, true))
    assert.truthy(html:find('data-series="breaker 1" data-total="40" data-success="0" '
      .. 'data-failure="0" data-timeout="40" data-rejected="0"', 1, true))
  end)

  it("has a metrics label of its own", function()
    assert.truthy(out:find('fusebox_breaker_calls_total{breaker="api",outcome="timeout"} 40', 1, true), out)
    assert.truthy(out:find('fusebox_breaker_calls_total{breaker="api",outcome="failure"} 0', 1, true), out)
    assert.truthy(out:find('fusebox_breaker_calls_total{breaker="api",outcome="success"} 0', 1, true), out)
  end)
end)

describe("timeouts as an outcome", function()
  local fb = require "fusebox"

  -- Runs fn in virtual time with an event log; the log's text.
  local function logged(fn)
    local path = os.tmpname()
    fb.run(fn, { virtual_time = true, seed = 1, events = path })
    local log = slurp(path)
    os.remove(path)
    return log
  end

  it("the breaker records a timeout as a failure that counts apart", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 3, timeout = 5 }
      local seen = {}
      cb:on("outcome", function(outcome) seen[#seen + 1] = outcome end)
      local v, err = cb:call(function() return nil, "timeout: no result within 1s" end)
      assert.is_nil(v)
      assert.are.equal("timeout: no result within 1s", err)
      assert.has_error(function() cb:call(error, "timeout") end, "timeout")
      cb:record(cb:permit(), "timeout") -- the third failure in a row opens it
      assert.are.equal("OPEN", cb.state)
      local m = cb:metrics()
      assert.are.same({ 3, 0, 0, 3 }, { m.calls, m.successes, m.failures, m.timeouts })
      assert.are.same({ "timeout", "timeout", "timeout" }, seen)
      fb.sleep(6)
      assert.is_true(cb:acquire():timeout(0.5)) -- a probe that timed out reopens it
      assert.are.equal("OPEN", cb.state)
      assert.are.equal(4, cb:metrics().timeouts)
    end)
  end)

  it("is_failure still decides, and a plain failure stays a failure", function()
    T.vrun(function()
      local cb = fb.breaker { is_failure = function(err) return err ~= "timeout: slow is fine" end }
      cb:call(function() return nil, "timeout: slow is fine" end)
      cb:call(function() return nil, "refused" end)
      cb:call(function() return nil, "a timeout: not at the start" end)
      local m = cb:metrics()
      assert.are.same({ 1, 2, 0 }, { m.successes, m.failures, m.timeouts })
    end)
  end)

  it("fb.sim logs a hung call and a late answer as timeouts and counts them", function()
    local svc
    local log = logged(function()
      svc = fb.sim.service { name = "s", latency = 1, hang_rate = 0.5, hang_time = 2 }
      local cb = fb.breaker { failure_threshold = 1000 }
      local p = fb.policy { timeout = 1.5 }
      for _ = 1, 20 do fb.sim.call(cb, p.call, p, svc) end
      local m = cb:metrics()
      -- answers at 1 s come in time; hung calls are given up on at 1.5 s
      assert.are.equal(20, m.calls)
      assert.are.equal(0, m.failures)
      assert.are.equal(m.calls - m.successes, m.timeouts)
      assert.is_true(m.timeouts > 0 and m.successes > 0)
      fb.sleep(1)
    end)
    assert.are.equal(20, svc.calls)
    assert.are.equal(0, svc.failures)
    local late, timeouts, successes = 0, 0, 0
    for line in log:gmatch("[^\n]+") do
      if line:find('"kind":"call_end"', 1, true) then
        if line:find('"late":true', 1, true) then
          late = late + 1
          -- the hung call's own outcome is kept
          assert.truthy(line:find('"error":"timeout: no result within 1.5s"', 1, true), line)
          assert.truthy(line:find('"result":"timeout"', 1, true), line)
        end
        if line:find('"outcome":"timeout"', 1, true) then timeouts = timeouts + 1 end
        if line:find('"outcome":"success"', 1, true) then successes = successes + 1 end
      end
    end
    assert.are.equal(svc.timeouts, timeouts)
    assert.are.equal(svc.timeouts, late)
    assert.are.equal(svc.successes, successes)
    assert.are.equal(20, timeouts + successes)
  end)

  it("a late answer under nested timeouts is a timeout when any caller gave up", function()
    local log = logged(function()
      local svc = fb.sim.service { name = "s", latency = 2 }
      local inner, outer = fb.timeout(5), fb.timeout(1)
      local v, err = outer:call(inner.call, inner, svc)
      assert.is_nil(v)
      assert.are.equal("timeout: no result within 1s", err)
      fb.sleep(2)
      assert.are.same({ 0, 1 }, { svc.successes, svc.timeouts })
      assert.are.same({ 0, 1, 1 }, { inner.timeouts, outer.timeouts, outer.late })
      -- without a timeout giving up, an answer is an answer
      assert.are.equal("ok", inner:call(svc))
    end)
    assert.truthy(log:find('"error":"timeout: no result within 1s","late":true,"latency":2,'
      .. '"outcome":"timeout","result":"success"', 1, true), log)
    assert.truthy(log:find('"latency":2,"outcome":"success"', 1, true), log)
  end)

  it("cb:record refuses an unknown outcome, naming the four", function()
    T.vrun(function()
      local cb = fb.breaker {}
      assert.has_error(function() cb:record(cb:permit(), "late") end,
        "bad argument #2 to 'record' (outcome must be true, false, 'timeout' or 'ignore', got late)")
    end)
  end)
end)
