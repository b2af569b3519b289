-- The breaker through the Lua API: call/try/acquire/permit semantics,
-- options and their errors, manual control, events, metrics. All on
-- virtual time.
local fb = require "fusebox"

local function fails() error("boom", 0) end
local function nil_err() return nil, "down" end
local function ok() return "fine", 2 end

-- Captures what fb.reporter receives during fn: returns the reports.
local function reports(fn)
  local got = {}
  local saved = fb.reporter(function(what, msg) got[#got + 1] = what .. ": " .. msg end)
  local ok_, err = pcall(fn)
  fb.reporter(saved)
  assert(ok_, err)
  return got
end

describe("breaker", function()
  it("keeps the document's semantics: strict timeout, success_threshold", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 3, timeout = 5, success_threshold = 2 }
      for _ = 1, 3 do assert.is_false(pcall(cb.call, cb, fails)) end
      assert.are.equal("OPEN", cb.state)
      fb.sleep(5)
      local okc, err = pcall(cb.call, cb, ok)
      assert.is_false(okc)
      assert.matches("circuit open", err)
      fb.sleep(0.001)
      assert.are.same({ "fine", 2 }, { cb:call(ok) })
      assert.are.equal("HALF_OPEN", cb.state)
      cb:call(ok)
      assert.are.equal("CLOSED", cb.state)
    end)
  end)

  it("counts a nil, err return as a failure and hands it back", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 2 }
      local r, err = cb:call(nil_err)
      assert.is_nil(r)
      assert.are.equal("down", err)
      assert.are.same({ nil, "down" }, { cb:call(nil_err) })
      assert.are.equal("OPEN", cb.state)
      assert.are.equal(2, cb:metrics().failures)
    end)
  end)

  it("re-raises errors as they were, tables included", function()
    T.vrun(function()
      local cb = fb.breaker()
      local e = { code = 7 }
      local okc, got = pcall(cb.call, cb, function() error(e) end)
      assert.is_false(okc)
      assert.are.equal(e, got)
    end)
  end)

  it("asks is_failure about raised errors and nil, err returns", function()
    T.vrun(function()
      local seen = {}
      local cb = fb.breaker { failure_threshold = 1, is_failure = function(err)
        seen[#seen + 1] = err
        if err == "not found" then return false end
        if err == "cancelled" then return "ignore" end
        return true
      end }
      assert.are.same({ nil, "not found" }, { cb:call(function() return nil, "not found" end) })
      assert.is_false(pcall(cb.call, cb, function() error("cancelled", 0) end))
      assert.are.equal("CLOSED", cb.state)
      local m = cb:metrics()
      assert.are.equal(1, m.successes)
      assert.are.equal(1, m.ignored)
      assert.are.same({ "not found", "cancelled" }, seen)
      cb:call(nil_err)
      assert.are.equal("OPEN", cb.state)
    end)
  end)

  it("counts a call as a failure when is_failure raises, and reports it", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 1, is_failure = function() error("oops") end }
      local got = reports(function() cb:call(nil_err) end)
      assert.are.equal(1, #got)
      assert.matches("is_failure predicate failed: .*oops", got[1])
      assert.are.equal("OPEN", cb.state)
    end)
  end)

  it("reads the clock where a decision needs it: a failure that opens it is stamped", function()
    T.vrun(function()
      -- no listener, no slow-call rule: the successes and the first
      -- failure need no time; the opening failure, the rejection and the
      -- probe do (issue 15)
      local cb = fb.breaker { failure_threshold = 2, timeout = 5, success_threshold = 1 }
      fb.sleep(3)
      local t0 = fb.now()
      assert.equal("fine", (cb:call(ok)))
      assert.is_nil(cb:try(nil_err))
      assert.is_nil(cb:try(nil_err))
      assert.equal("OPEN", cb.state)
      local _, to, at = cb:transition(0)
      assert.equal("OPEN", to)
      assert.equal(t0, at)
      local r, msg, wait = cb:try(ok)
      assert.is_nil(r)
      assert.equal("circuit open", msg)
      assert.equal(5, wait)
      fb.sleep(5.5)
      assert.equal("fine", (cb:call(ok)))
      assert.equal("CLOSED", cb.state)
      assert.equal(t0 + 5.5, select(3, cb:transition(2)))
    end)
  end)

  it("gives an outcome listener added during an untimed call numbers", function()
    T.vrun(function()
      local cb = fb.breaker {}
      local got
      cb:call(function()
        cb:on("outcome", function(o, d, t, dropped) got = { o, d, t, dropped } end)
      end)
      assert.same({ "success", 0, fb.now(), false }, got)
      local token = cb:permit()
      assert.is_true(cb:record(token, true, 0.25))
      assert.same({ "success", 0.25, fb.now(), false }, got)
    end)
  end)

  it("try returns nil, 'circuit open', retry_after instead of raising", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 1, timeout = 4 }
      assert.are.same({ "fine", 2 }, { cb:try(ok) })
      cb:try(nil_err)
      fb.sleep(1)
      local r, msg, wait = cb:try(ok)
      assert.is_nil(r)
      assert.are.equal("circuit open", msg)
      assert.are.equal(3, wait)
    end)
  end)

  it("acquire gives permits; a rejection says how long to wait", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 1, timeout = 10 }
      local p = cb:acquire()
      fb.sleep(2)
      assert.is_true(p:failure())
      fb.sleep(1)
      assert.are.equal(1, cb:metrics().time_in_state) -- opened at t=2
      local none, wait = cb:acquire()
      assert.is_nil(none)
      assert.are.equal(9, wait)
      assert.has_error(function() p:success() end, "success: permit already used")
    end)
  end)

  it("drops results from an earlier state and says so", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 1, timeout = 1 }
      local late = cb:acquire()
      local t = cb:permit()
      cb:call(nil_err)
      assert.are.equal("OPEN", cb.state)
      assert.is_false(late:success(0.5))
      assert.is_false(cb:record(t, false))
      assert.are.equal("OPEN", cb.state)
      assert.are.equal(2, cb:metrics().stale)
    end)
  end)

  it("limits half-open probes; ignore frees a slot", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 1, timeout = 1,
        success_threshold = 2, half_open_max_calls = 1 }
      cb:call(nil_err)
      fb.sleep(1.5)
      local p = cb:acquire()
      assert.are.equal("HALF_OPEN", cb.state)
      local okc, err = pcall(cb.call, cb, ok)
      assert.is_false(okc)
      assert.matches("circuit open: call rejected %(half%-open", err)
      assert.is_true(p:ignore())
      assert.are.equal("fine", (cb:call(ok)))
      assert.are.equal("HALF_OPEN", cb.state)
      assert.are.equal("fine", (cb:call(ok)))
      assert.are.equal("CLOSED", cb.state)
    end)
  end)

  it("reopens a stuck half-open state after half_open_max_wait", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 1, timeout = 1,
        half_open_max_calls = 1, half_open_max_wait = 3 }
      cb:call(nil_err)
      fb.sleep(1.5)
      assert.is_number(cb:permit()) -- lost, never recorded
      fb.sleep(3)
      assert.is_nil(cb:permit())
      assert.are.equal("HALF_OPEN", cb.state)
      fb.sleep(0.5)
      assert.is_nil(cb:permit())
      assert.are.equal("OPEN", cb.state)
    end)
  end)

  it("opens in count mode on the rate, and on slow calls", function()
    T.vrun(function()
      local cb = fb.breaker { mode = "count", window = 4, minimum_calls = 4,
        failure_rate = 0.5, slow_call_duration = 1, slow_call_rate = 0.75 }
      cb:call(nil_err)
      cb:call(nil_err)
      cb:call(ok)
      assert.are.equal("CLOSED", cb.state)
      cb:call(ok) -- 2/4 >= 0.5: a success trips it
      assert.are.equal("OPEN", cb.state)
      cb:reset()
      local slow = function() fb.sleep(1.5) return true end
      for _ = 1, 3 do cb:call(slow) end
      cb:call(ok)
      assert.are.equal("OPEN", cb.state)
      local m = cb:metrics()
      assert.are.equal(0.75, m.slow_rate)
      assert.are.equal(3, m.slow)
    end)
  end)

  it("slides the time window", function()
    T.vrun(function()
      local cb = fb.breaker { mode = "time", window = 10, minimum_calls = 2 }
      cb:call(nil_err)
      fb.sleep(10)
      cb:call(nil_err) -- the first one slid out
      assert.are.equal("CLOSED", cb.state)
      assert.are.equal(1, cb:metrics().buffered)
      cb:call(nil_err)
      assert.are.equal("OPEN", cb.state)
    end)
  end)

  it("grows the open timeout on re-open and resets it on close", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 1, timeout = 2,
        timeout_multiplier = 3, timeout_max = 10, success_threshold = 1 }
      cb:call(nil_err)
      fb.sleep(2.5)
      cb:call(nil_err)
      assert.are.equal(6, select(2, cb:acquire()))
      fb.sleep(6.5)
      cb:call(nil_err)
      assert.are.equal(10, cb:metrics().open_timeout)
      fb.sleep(10.5)
      cb:call(ok)
      assert.are.equal("CLOSED", cb.state)
      cb:call(nil_err)
      assert.are.equal(2, cb:metrics().open_timeout)
    end)
  end)

  it("is forced open, disabled and reset by hand", function()
    T.vrun(function()
      local changes = {}
      local cb = fb.breaker { failure_threshold = 1 }
      cb:on("state_change", function(from, to) changes[#changes + 1] = from .. ">" .. to end)
      assert.are.equal(cb, cb:force_open())
      local none, wait = cb:acquire()
      assert.is_nil(none)
      assert.are.equal(math.huge, wait)
      assert.has_error(function() cb:call(ok) end)
      cb:disable()
      for _ = 1, 3 do cb:call(nil_err) end
      assert.are.equal("DISABLED", cb.state)
      assert.are.equal(3, cb:metrics().failures)
      cb:reset()
      assert.are.equal("CLOSED", cb.state)
      assert.are.same({ "CLOSED>FORCED_OPEN", "FORCED_OPEN>DISABLED", "DISABLED>CLOSED" }, changes)
    end)
  end)

  it("tells listeners about outcomes, rejections and state changes, in order", function()
    T.vrun(function()
      local log = {}
      local cb = fb.breaker { failure_threshold = 1, timeout = 5 }
      cb:on("outcome", function(o, d, _, dropped) log[#log + 1] = "outcome " .. o .. " " .. d .. " " .. tostring(dropped) end)
      cb:on("state_change", function(from, to) log[#log + 1] = from .. ">" .. to .. " " .. cb.state end)
      cb:on("rejected", function(wait, now) log[#log + 1] = "rejected " .. wait .. " " .. now end)
      cb:call(function() fb.sleep(1) return nil, "x" end)
      cb:try(ok)
      assert.are.same({ "outcome failure 1 false", "CLOSED>OPEN OPEN", "rejected 5 1" }, log)
    end)
  end)

  it("keeps working when a listener raises", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 1 }
      local after = 0
      cb:on("state_change", function() error("listener bug") end)
      cb:on("state_change", function() after = after + 1 end)
      cb:on("outcome", function() error("outcome bug") end)
      local got = reports(function() cb:call(nil_err) end)
      assert.are.equal(2, #got)
      assert.matches("^outcome listener failed: .*outcome bug", got[1])
      assert.matches("^state_change listener failed: .*listener bug", got[2])
      assert.are.equal(1, after)
      assert.are.equal("OPEN", cb.state)
      got = reports(function() cb:reset() end)
      assert.are.equal(1, #got)
      assert.are.equal(2, after)
      local r
      got = reports(function() r = cb:call(ok) end)
      assert.are.equal("fine", r)
      assert.are.equal(1, #got) -- the outcome listener, still raising
    end)
  end)

  it("reports metrics as a table and as JSON", function()
    T.vrun(function()
      local cb = fb.breaker { mode = "count", window = 10, minimum_calls = 2,
        failure_rate = 0.6 }
      cb:call(ok)
      cb:call(nil_err)
      cb:call(ok)
      cb:call(ok)
      fb.sleep(3)
      local m = cb:metrics()
      assert.are.equal("CLOSED", m.state)
      assert.are.equal(0.25, m.failure_rate)
      assert.are.equal(4, m.buffered)
      assert.are.equal(1, m.failed)
      assert.are.equal(0, m.rejected)
      assert.are.equal(3, m.time_in_state)
      local json = cb:metrics_json()
      assert.matches('^{"state":"CLOSED","failure_rate":0.25,', json)
      assert.matches('"buffered":4', json)
      assert.matches('"time_in_state":3', json)
    end)
  end)

  it("records tokens with true, false or 'ignore'", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 2 }
      assert.is_true(cb:record(cb:permit(), false, 0.1))
      assert.is_true(cb:record(cb:permit(), "ignore"))
      assert.is_true(cb:record(cb:permit(), false))
      assert.are.equal("OPEN", cb.state)
      assert.has_error(function() cb:record(cb:permit(), "yes") end,
        "bad argument #2 to 'record' (outcome must be true, false, 'timeout' or 'ignore', got yes)")
      assert.has_error(function() cb:record(99, true) end,
        "bad argument #1 to 'record' (not a token of this breaker: 99)")
      assert.has_error(function() cb:record(0, true, -1) end,
        "bad argument #3 to 'record' (duration must be a number >= 0, got -1)")
    end)
  end)

  describe("rejects bad options", function()
    local cases = {
      { { bogus = 1 }, "unknown option 'bogus'" },
      { { mode = "fast" }, "mode must be one of 'consecutive', 'count', 'time', got 'fast'" },
      { { mode = 3 }, "mode must be one of 'consecutive', 'count', 'time', got 3" },
      { { timeout = -1 }, "timeout must be a positive number, got -1" },
      { { failure_threshold = 1.5 }, "failure_threshold must be a positive integer, got 1.5" },
      { { window = 10 }, "window applies to modes 'count' and 'time' only" },
      { { slow_call_duration = 1 }, "slow_call_duration applies to modes 'count' and 'time' only" },
      { { mode = "count", failure_threshold = 3 }, "failure_threshold applies to mode 'consecutive' only" },
      { { mode = "count", window = 2.5 }, "window must be a positive integer, got 2.5" },
      { { mode = "count", window = 2000000 }, "window must be at most 1000000 calls" },
      { { mode = "count", window = 5, minimum_calls = 6 }, "minimum_calls must not exceed window in mode 'count' (6 > 5)" },
      { { mode = "time", failure_rate = 0 }, "failure_rate must be a number in (0, 1], got 0" },
      { { mode = "time", slow_call_rate = "high" }, "slow_call_rate must be a number in (0, 1], got string" },
      { { timeout_multiplier = 0.5 }, "timeout_multiplier must be a finite number >= 1, got 0.5" },
      { { timeout = 10, timeout_max = 5 }, "timeout_max must be >= timeout (5 < 10)" },
      { { half_open_max_calls = 0 }, "half_open_max_calls must be a positive integer, got 0" },
      { { half_open_max_wait = 0 }, "half_open_max_wait must be a positive number, got 0" },
      { { is_failure = true }, "is_failure must be a function, got boolean" },
    }
    for _, case in ipairs(cases) do
      it(case[2], function()
        local okc, err = pcall(fb.breaker, case[1])
        assert.is_false(okc)
        assert.are.equal(1, select(2, err:find("bad argument #1 to ", 1, true)) and 1)
        assert.truthy(err:find(case[2], 1, true), err)
      end)
    end
  end)

  it("checks its arguments", function()
    T.vrun(function()
      local cb = fb.breaker()
      assert.has_error(function() cb:call(42) end,
        "bad argument #1 to 'call' (function expected, got number)")
      assert.has_error(function() cb:on("nope", print) end)
      assert.has_error(function() cb:on("outcome", 1) end,
        "bad argument #2 to 'on' (listener must be a function, got number)")
      local p = cb:acquire()
      assert.has_error(function() p:success(-1) end,
        "bad argument #1 to 'success' (duration must be a number >= 0, got -1)")
      assert.is_true(p:success(0))
    end)
  end)
end)
