-- fb.limiter: the adaptive concurrency limit (src/limiter.c) from Lua: the
-- object, its policy layer and JSON schema, its events and metrics, the
-- fb.http.serve guard, and what the layer costs in allocations.
local fb = require "fusebox"

local vrun = T.vrun

local function errors(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  return err
end

describe("fb.limiter", function()
  it("has each algorithm's defaults (Netflix concurrency-limits')", function()
    local g, a, v = fb.limiter(), fb.limiter { algorithm = "aimd" }, fb.limiter { algorithm = "vegas" }
    assert.are.equal("gradient2", g.algorithm)
    assert.are.equal(20, g.limit)
    assert.are.equal(0, g.inflight)
    assert.are.equal("aimd", a.algorithm)
    assert.are.equal("vegas", v.algorithm)
    assert.are.equal(20, v.limit)
    -- vegas' min is 1, the others' 20: initial 5 fits vegas only
    assert.are.equal(5, fb.limiter { algorithm = "vegas", initial = 5 }.limit)
    assert.matches("initial must be in min..max %(20..200%), got 5",
      errors(fb.limiter, { initial = 5 }))
  end)

  it("refuses bad options, naming them", function()
    local cases = {
      { { algorithm = "bbr" }, "algorithm must be one of 'gradient2', 'aimd', 'vegas', got 'bbr'" },
      { { algorithm = "aimd", queue_size = 1 }, "queue_size applies to algorithm 'gradient2' only" },
      { { backoff_ratio = 0.8 }, "backoff_ratio applies to algorithm 'aimd' only" },
      { { alpha = 2 }, "alpha applies to algorithm 'vegas' only" },
      { { algorithm = "aimd", smoothing = 0.5 }, "smoothing applies to algorithms 'gradient2' and 'vegas' only" },
      { { max = 2e6 }, "max must be at most 1000000, got 2000000" },
      { { min = 50, max = 40, initial = 45 }, "min must not exceed max (50 > 40)" },
      { { min = 0 }, "min must be a positive integer, got 0" },
      { { smoothing = 0 }, "smoothing must be a number in (0, 1]" },
      { { rtt_tolerance = 0.5 }, "rtt_tolerance must be a finite number >= 1" },
      { { algorithm = "aimd", backoff_ratio = 0.3 }, "backoff_ratio must be in [0.5, 1), got 0.3" },
      { { algorithm = "vegas", alpha = 5, beta = 4 }, "beta must be >= alpha" },
      { { classify = 1 }, "classify must be a function, got number" },
      { { nonsense = 1 }, "unknown option 'nonsense'" },
    }
    for _, c in ipairs(cases) do
      assert.matches(c[2], errors(fb.limiter, c[1]), 1, true)
    end
  end)

  it("admits while fewer calls are in flight than the limit, and rejects as a value", function()
    vrun(function()
      local l = fb.limiter { algorithm = "aimd", initial = 2, min = 2, max = 2 }
      local got = {}
      for i = 1, 3 do
        fb.spawn(function() got[i] = { l:call(function() fb.sleep(1); return "ok", i end) } end)
      end
      fb.sleep(0.5)
      assert.are.equal(2, l.inflight)
      fb.sleep(1)
      assert.are.same({ "ok", 1 }, got[1])
      assert.are.same({ "ok", 2 }, got[2])
      assert.are.same({ nil, "concurrency limit reached: limit 2 in flight" }, got[3])
      assert.are.equal("concurrency limit reached", fb.rejection(got[3][2]))
      assert.are.equal(0, l.inflight)
      assert.are.equal(1, l:metrics().rejected)
    end)
  end)

  it("follows AIMD's rule through l:call, a timeout being a drop", function()
    vrun(function()
      local l = fb.limiter { algorithm = "aimd", initial = 2, min = 1, max = 4, min_window = 0 }
      local p = fb.policy { limiter = l, timeout = 1 }
      local limits = {}
      local function step(fn) pcall(p.call, p, fn); limits[#limits + 1] = l.limit end
      step(function() fb.sleep(0.1) return 1 end) -- 1 * 2 >= 2: 3
      step(function() fb.sleep(0.1) return 1 end) -- 2 < 3: kept
      step(function() fb.sleep(5) end)            -- timeout: floor(3 * 0.9) = 2
      step(function() return nil, "boom" end)     -- a plain failure: ignored
      step(function() error("raised") end)        -- ignored too
      step(function() fb.sleep(0.1) return 1 end) -- 2 >= 2: 3
      assert.are.same({ 3, 3, 2, 2, 2, 3 }, limits)
      local m = l:metrics()
      assert.are.equal(3, m.successes)
      assert.are.equal(1, m.dropped)
      assert.are.equal(2, m.ignored)
    end)
  end)

  it("feeds the algorithm one sample a window by default (WindowedLimit's)", function()
    vrun(function()
      local l = fb.limiter { algorithm = "aimd", initial = 4, min = 1, max = 10 }
      local changes = {}
      l:on("limit", function(from, to, at)
        changes[#changes + 1] = { from, to, math.floor(at * 100 + 0.5) / 100 }
      end)
      -- 4 calls in flight at a time, 50 ms each: 80 a second
      for _ = 1, 4 do
        fb.spawn(function()
          while fb.now() < 3.5 do l:call(fb.sleep, 0.05) end
        end)
      end
      fb.sleep(4)
      -- the first sample (t = 0.05) closes the first window, which
      -- never counts; then the first sample after each 1 s window ends
      -- closes it: one change a window, 4 in flight >= 5 / 2 growing it
      assert.are.same({ { 4, 5, 1.05 }, { 5, 6, 2.05 }, { 6, 7, 3.1 } }, changes)
    end)
    assert.matches("max_window must be >= min_window", errors(fb.limiter, { min_window = 2, max_window = 1 }), 1, true)
    assert.are.equal(20, fb.limiter { min_window = 5 }.limit) -- max_window follows
    assert.matches("window_size must be a positive integer, got 0", errors(fb.limiter, { window_size = 0 }), 1, true)
    assert.matches("min_rtt_threshold must be a finite number >= 0", errors(fb.limiter, { min_rtt_threshold = -1 }), 1, true)
  end)

  it("lets classify decide how a failure counts", function()
    vrun(function()
      local l = fb.limiter { algorithm = "aimd", initial = 10, min = 1, max = 20,
        min_window = 0, min_rtt_threshold = 0, classify = function(err) return err == "503" and "dropped" or "success" end }
      l:call(function() return nil, "503" end)
      assert.are.equal(9, l.limit)
      l:call(function() return nil, "404" end)
      assert.are.equal(9, l:metrics().successes + 8)
      local reported = {}
      local prev = fb.reporter(function(what, msg) reported[#reported + 1] = what .. ": " .. msg end)
      local bad = fb.limiter { classify = function() return "maybe" end }
      bad:call(function() return nil, "x" end)
      fb.reporter(prev)
      assert.are.equal(1, bad:metrics().ignored)
      assert.matches("classify failed: it returned maybe", reported[1], 1, true)
    end)
  end)

  it("hands results on and re-raises errors, freeing the slot either way", function()
    vrun(function()
      local l = fb.limiter()
      assert.are.same({ 1, nil, 3 }, { l:call(function() return 1, nil, 3 end) })
      local ok, err = pcall(l.call, l, function() error("bad", 0) end)
      assert.is_false(ok)
      assert.are.equal("bad", err)
      assert.are.equal(0, l.inflight)
      assert.matches("bad argument #1 to 'call' %(function expected, got nil%)", errors(l.call, l))
    end)
  end)

  it("has a permit API with checked arguments", function()
    vrun(function()
      local l = fb.limiter { algorithm = "aimd", initial = 1, min = 1, max = 3, min_window = 0 }
      local p = assert(l:acquire())
      local none, why = l:acquire()
      assert.is_nil(none)
      assert.are.equal("concurrency limit reached: limit 1 in flight", why)
      assert.matches("outcome must be 'success', 'dropped' or 'ignored', got ok",
        errors(l.release, l, p, "ok", 0.1), 1, true)
      assert.matches("rtt must be a number of seconds >= 0, got -1", errors(l.release, l, p, "success", -1), 1, true)
      assert.matches("not a permit of this limiter: 0.5", errors(l.release, l, 0.5, "success", 0.1), 1, true)
      assert.is_true(l:release(p, "success", 0.1))
      assert.are.equal(2, l.limit)
      -- nothing in flight: no permit can be released
      assert.matches("not a permit of this limiter: 1", errors(l.release, l, p, "success", 0.1), 1, true)
      -- a second release of a permit is refused while another call is in
      -- flight too, and frees nothing
      local a, b = l:acquire(), l:acquire()
      assert.are.same({ 1, 2 }, { a, b })
      l:release(b, "ignored", 0)
      assert.matches("not a permit of this limiter: 2", errors(l.release, l, b, "ignored", 0), 1, true)
      assert.are.equal(1, l.inflight)
      l:release(a, "ignored", 0)
      assert.are.equal(0, l.inflight)
      assert.matches("cannot set 'limit'", errors(function() l.limit = 5 end), 1, true)
    end)
  end)

  it("announces each change of the limit to listeners and the event log", function()
    local path = os.tmpname()
    local heard = {}
    fb.run(function()
      local l = fb.limiter { algorithm = "aimd", initial = 1, min = 1, max = 3, name = "api", min_window = 0 }
      l:on("limit", function(from, to, at) heard[#heard + 1] = { from, to, at } end)
      l:on("rejected", function(limit, at) heard[#heard + 1] = { "rejected", limit, at } end)
      fb.spawn(function() l:call(function() fb.sleep(1) return 1 end) end) -- 1 -> 2 at t=1
      fb.sleep(0.5)
      l:call(function() end)                                               -- rejected at 0.5
      fb.sleep(1)
      assert.matches("unknown event 'x' %(known: limit, rejected%)", errors(l.on, l, "x", print))
    end, { virtual_time = true, seed = 1, events = path })
    local log = T.slurp(path)
    os.remove(path)
    assert.are.same({ { "rejected", 1, 0.5 }, { 1, 2, 1 } }, heard)
    assert.matches('{"t":0.5,"kind":"reject","limit":1,"limiter":1,"name":"api"}', log, 1, true)
    assert.matches('{"t":1,"kind":"limit","from":1,"limiter":1,"name":"api","to":2}', log, 1, true)
    assert.matches('"rejections":1', log, 1, true) -- the summary counts it
  end)

  it("exports its limit, in-flight calls and rejections as metrics", function()
    vrun(function()
      local l = fb.limiter { algorithm = "vegas", initial = 3, name = "db" }
      fb.export("guard", l)
      local held = { l:acquire(), l:acquire(), l:acquire() }
      assert.is_nil(l:acquire())
      local text = fb.metrics()
      fb.export("guard", nil)
      for _, p in ipairs(held) do l:release(p, "ignored", 0) end
      assert.matches('# TYPE fusebox_limiter_limit gauge', text, 1, true)
      assert.matches('fusebox_limiter_limit{limiter="guard",algorithm="vegas",name="db"} 3', text, 1, true)
      assert.matches('fusebox_limiter_inflight{limiter="guard",algorithm="vegas",name="db"} 3', text, 1, true)
      assert.matches('fusebox_limiter_rejected_total{limiter="guard",algorithm="vegas",name="db"} 1', text, 1, true)
    end)
  end)

  it("survives a listener that closes it", function()
    vrun(function()
      local l = fb.limiter { algorithm = "aimd", initial = 1, min = 1, max = 5, min_window = 0 }
      local heard = 0
      l:on("limit", function() heard = heard + 1; getmetatable(l).__gc(l) end)
      l:on("limit", function() heard = heard + 1 end)
      local ok, err = pcall(l.call, l, function() fb.sleep(0.1) return 1 end)
      assert.is_true(ok, err)
      assert.are.equal(2, heard) -- the others still hear this change
      assert.matches("closed limiter", errors(l.call, l, function() end), 1, true)
    end)
  end)

  it("is a clean 'closed' error after __gc", function()
    local l = fb.limiter()
    l:call(function() end)
    local gc = getmetatable(l).__gc
    gc(l); gc(l)
    assert.matches("calling 'call' on a closed limiter", errors(l.call, l, function() end), 1, true)
    assert.matches("closed", errors(function() return l.limit end), 1, true)
    assert.matches("^fusebox.limiter closed", tostring(l))
    assert.matches("fusebox.limiter expected, got fusebox.breaker",
      errors(gc, fb.breaker()), 1, true)
  end)
end)

describe("the limiter policy layer", function()
  it("sits between the rate limit and the bulkhead", function()
    local p = fb.policy { bulkhead = {}, limiter = {}, rate_limit = {}, retry = {} }
    assert.are.same({ "retry", "rate_limit", "limiter", "bulkhead" }, p:names())
  end)

  it("counts a full bulkhead inside it as a drop", function()
    vrun(function()
      local l = fb.limiter { algorithm = "aimd", initial = 10, min = 1, max = 10,
        min_window = 0, min_rtt_threshold = 0 }
      local p = fb.policy { limiter = l, bulkhead = { max_concurrent = 1 } }
      fb.spawn(function() p:call(function() fb.sleep(1) end) end)
      fb.sleep(0.1)
      local _, err = p:call(function() end)
      assert.are.equal("bulkhead full", fb.rejection(err))
      assert.are.equal(9, l.limit)
      fb.sleep(2)
    end)
  end)

  it("is checked by the JSON schema, with paths", function()
    local cases = {
      { '{"limiter": {"algorithm": "fast"}}', "limiter.algorithm: must be one of gradient2, aimd, vegas, got \"fast\"" },
      { '{"limiter": {"max": 0}}', "limiter.max: must be an integer >= 1, got 0" },
      { '{"limiter": {"max": 2000000}}', "limiter.max: must be in 1..1000000 calls, got 2000000" },
      { '{"limiter": {"smoothing": 2}}', "limiter.smoothing: must be a number in (0, 1], got 2" },
      { '{"limiter": {"backoff_ratio": 0.2}}', "limiter.backoff_ratio: must be a number in [0.5, 1), got 0.2" },
      { '{"limiter": {"intial": 5}}', "limiter.intial: unknown field (known: algorithm, alpha" },
      { '{"limiter": null}', "limiter: must be limiter options or a limiter, got null" },
      { '{"limiter": {"initial": 300}}', "limiter: initial must be in min..max (20..200), got 300" },
      { '{"limiter": {"algorithm": "aimd", "alpha": 2}}', "limiter: alpha applies to algorithm 'vegas' only" },
    }
    for _, c in ipairs(cases) do
      assert.matches(c[2], errors(fb.policy_from_json, c[1]), 1, true)
    end
    local p = fb.policy_from_json('{"limiter": {"algorithm": "gradient2", "initial": 20, "min": 1, "max": 1000}}')
    assert.are.same({ "limiter" }, p:names())
  end)

  it("allocates nothing per call", function()
    local p = fb.policy { limiter = { algorithm = "gradient2", initial = 20, min = 1, max = 1000 } }
    local function f(x) return x end
    -- Trace memory counts in the heap, and what the JIT records here
    -- depends on the hot counters other specs left (jit.flush keeps
    -- them): after the warm-up a first window may still compile and
    -- re-record (once under ASan, after every other spec, it grew past
    -- 16 KiB); the second is the calls alone.
    jit.flush()
    for _ = 1, 1000 do p:call(f, 1) end -- compile, and size what grows once
    local function window()
      collectgarbage("collect")
      collectgarbage("stop")
      local before = collectgarbage("count")
      for i = 1, 100000 do p:call(f, i) end
      local grown = collectgarbage("count") - before
      collectgarbage("restart")
      return grown
    end
    window()
    local grown = window()
    -- at most the compiler's own few KiB, where 8 bytes a call would be 800
    assert.is_true(grown < 16, ("%.1f KiB for 100000 calls"):format(grown))
  end)
end)

describe("the fb.http.serve guard", function()
  local function get(port)
    return fb.http.request { url = "http://127.0.0.1:" .. port .. "/" }
  end

  it("answers 503 with Retry-After when the limiter rejects, without running the handler", function()
    local results, ran = {}, 0
    fb.run(function()
      local l = fb.limiter { algorithm = "aimd", initial = 1, min = 1, max = 1 }
      local srv = assert(fb.http.serve { port = 0, limiter = l, retry_after = 2, handler = function()
        ran = ran + 1
        fb.sleep(0.3)
        return 200, nil, "done"
      end })
      local done = 0
      fb.spawn(function() results[1] = { get(srv:port()) }; done = done + 1 end)
      fb.sleep(0.1)
      results[2] = { get(srv:port()) }
      while done < 1 do fb.sleep(0.05) end
      assert.are.equal(0, l.inflight)
      assert.are.equal(1, l:metrics().successes)
      srv:close()
    end)
    assert.are.equal(1, ran)
    assert.are.equal(200, results[1][1])
    assert.are.equal("done", results[1][3])
    assert.are.equal(503, results[2][1])
    assert.are.equal("2", results[2][2]["retry-after"])
    assert.are.same({ error = "concurrency limit reached: limit 1 in flight" }, fb.json_decode(results[2][3]))
  end)

  it("counts a handler's 503 or 504 as a drop, another 5xx as ignored", function()
    local l = fb.limiter { algorithm = "aimd", initial = 10, min = 1, max = 10, min_window = 0 }
    fb.run(function()
      local statuses = { 503, 504, 500, 200 }
      local srv = assert(fb.http.serve { port = 0, limiter = l, handler = function(req)
        fb.sleep(0.01)
        return tonumber(req.path:sub(2)), nil, ""
      end })
      for _ = 1, 2 do
        for _, s in ipairs(statuses) do
          assert.are.equal(s, (fb.http.request { url = "http://127.0.0.1:" .. srv:port() .. "/" .. s }))
        end
      end
      srv:close()
    end)
    local m = l:metrics()
    assert.are.equal(4, m.dropped)  -- 503 and 504, twice
    assert.are.equal(2, m.ignored)  -- 500, twice
    assert.are.equal(2, m.successes)
  end)

  it("takes limiter options, and checks them and retry_after", function()
    fb.run(function()
      local srv = assert(fb.http.serve { port = 0, limiter = { algorithm = "vegas" },
        handler = function() return 503, nil, "" end })
      assert.are.equal(503, (get(srv:port())))
      srv:close()
      assert.matches("limiter: queue_size applies to algorithm 'gradient2' only",
        errors(fb.http.serve, { port = 0, handler = print, limiter = { algorithm = "aimd", queue_size = 1 } }), 1, true)
      assert.matches("limiter must be a limiter or its options, got number",
        errors(fb.http.serve, { port = 0, handler = print, limiter = 5 }), 1, true)
      assert.matches("retry_after must be an integer 0..1000000000 (seconds), got 1.5",
        errors(fb.http.serve, { port = 0, handler = print, limiter = {}, retry_after = 1.5 }), 1, true)
      assert.matches("retry_after applies with a limiter only",
        errors(fb.http.serve, { port = 0, handler = print, retry_after = 1 }), 1, true)
    end)
  end)
end)

describe("the report", function()
  it("draws a limiter's rejections as a series of its own and knows its events", function()
    local script, out = os.tmpname() .. ".lua", os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
local fb = require "fusebox"
local l = fb.limiter { algorithm = "aimd", initial = 1, min = 1, max = 2, name = "api" }
fb.spawn(function() l:call(function() fb.sleep(1) end) end)
fb.sleep(0.5)
l:call(function() end)
fb.sleep(1)
]])
    f:close()
    local _, err, code = T.cli("run --virtual-time --seed 1 --report " .. out .. " " .. script)
    local html = T.slurp(out)
    os.remove(script)
    os.remove(out)
    assert.are.equal(0, code, err)
    assert.truthy(html:find("limiter api", 1, true))
    assert.falsy(html:find("Not drawn:", 1, true))
  end)
end)

describe("examples/adaptive_limit.lua", function()
  it("shows the limit keeping goodput and latency where a fixed bulkhead collapses", function()
    local out, err, code = T.cli("run --virtual-time --seed 1 examples/adaptive_limit.lua")
    assert.are.equal(0, code, err)
    local after = {}
    for okps, timeouts in out:gmatch("after the doubling: (%d+) ok/s, (%d+) timeouts") do
      after[#after + 1] = { tonumber(okps), tonumber(timeouts) }
    end
    assert.are.equal(3, #after, out)
    assert.is_true(after[1][1] >= 95 and after[1][2] == 0, out)   -- bulkhead 40: capacity, queued
    assert.is_true(after[2][1] <= 20 and after[2][2] > 1000, out) -- bulkhead 120: collapse
    assert.is_true(after[3][1] >= 95 and after[3][2] == 0, out)   -- the limiter
    -- the last window's p99: the bulkhead of 40 queues (~400 ms), the
    -- limiter keeps close to the 100 ms service time
    local p99 = {}
    for v in out:gmatch("50%-60s%s+%d+%s+%d+%s+%d+%s+%d+%s+%d+%s+(%d+)") do p99[#p99 + 1] = tonumber(v) end
    assert.is_true(p99[1] >= 350, out)
    assert.is_true(p99[3] <= 200, out)
  end)
end)

describe("a permit held by a dropped coroutine", function()
  local function one() return 1 end

  it("comes back once the coroutine is collected", function()
    local l = fb.limiter { algorithm = "aimd", initial = 1, min = 1, max = 1 }
    local co = coroutine.create(function() l:call(function() coroutine.yield() end) end)
    assert.is_true(coroutine.resume(co))
    local v, err = l:call(one)
    assert.is_nil(v)
    assert.are.equal("concurrency limit reached", fb.rejection(err))
    co = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.are.equal(1, l:call(one))
    assert.are.equal(0, l.inflight)
    assert.are.equal(1, l:metrics().ignored)
  end)

  it("stays with a suspended holder that can still resume", function()
    local l = fb.limiter { algorithm = "aimd", initial = 1, min = 1, max = 1 }
    local co = coroutine.create(function() return l:call(function() coroutine.yield(); return "late" end) end)
    assert.is_true(coroutine.resume(co))
    collectgarbage()
    collectgarbage()
    assert.is_nil((l:call(one)))
    assert.are.same({ true, "late" }, { coroutine.resume(co) })
    assert.are.equal(1, l:call(one))
    assert.are.equal(0, l.inflight)
  end)
end)
