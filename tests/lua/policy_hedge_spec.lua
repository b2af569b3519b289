-- Hedged requests (fb.hedge, policy.hedge) on virtual time: the first
-- success wins, the others are cancelled and ignored by breakers, hedges
-- draw from the retry budget, the delay can be a latency percentile.
local fb = require "fusebox"

local function events_of(fn)
  local path = os.tmpname()
  fb.run(fn, { virtual_time = true, seed = 1, events = path, script = "inline" })
  local out = {}
  for line in T.slurp(path):gmatch("[^\n]+") do out[#out + 1] = fb.json_decode(line) end
  os.remove(path)
  return out
end

describe("hedge", function()
  it("sends a hedge after the delay; the first success wins, the loser is cancelled and ignored", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 1 }
      local p = fb.policy { hedge = { delay = 0.05 }, breaker = cb }
      local seen = {}
      local v, extra = p:call(function(ctx, x)
        local me = { hedge = ctx.hedge, start = fb.now() }
        seen[#seen + 1] = me
        if ctx.hedge == 0 then
          fb.sleep(1)
          me.cancelled = ctx.cancelled
          return nil, "503" -- a late failure: must not open the breaker
        end
        fb.sleep(0.02)
        return "hedge " .. x, 7
      end, "a")
      assert.are.same({ "hedge a", 7 }, { v, extra })
      assert.are.equal(0.07, fb.now())
      fb.sleep(2) -- the loser ends
      assert.are.same({ 0, 0 }, { seen[1].hedge, seen[1].start })
      assert.are.same({ 1, 0.05 }, { seen[2].hedge, seen[2].start })
      assert.is_true(seen[1].cancelled)
      local m = cb:metrics()
      assert.are.same({ 1, 1, 0, "CLOSED" }, { m.successes, m.ignored, m.failures, m.state })
    end)
  end)

  it("sends no hedge when the first answer comes within the delay", function()
    T.vrun(function()
      local h = fb.hedge { delay = 0.05, max_attempts = 3 }
      local n = 0
      for _ = 1, 100 do
        assert.are.equal("ok", h:call(function() n = n + 1; fb.sleep(0.049); return "ok" end))
      end
      assert.are.equal(100, n)
      assert.are.same({ 0, 0, 0 }, { h:stats().sent, h:stats().won, h:stats().cancelled })
    end)
  end)

  it("sends up to max_attempts, one every delay", function()
    T.vrun(function()
      local h = fb.hedge { delay = 0.1, max_attempts = 3 }
      local starts = {}
      local v = h:call(function()
        starts[#starts + 1] = fb.now()
        fb.sleep(#starts == 3 and 0.05 or 10)
        return #starts
      end)
      assert.are.same({ 0, 0.1, 0.2 }, starts)
      assert.are.equal(3, v)
      assert.are.equal(0.25, fb.now())
      assert.are.same({ 2, 1, 2 }, { h:stats().sent, h:stats().won, h:stats().cancelled })
    end)
  end)

  it("sends the next hedge at once after a non-fatal failure; a fatal one ends the call", function()
    T.vrun(function()
      local h = fb.hedge { delay = 1, max_attempts = 3 }
      local starts = {}
      local v = h:call(function()
        starts[#starts + 1] = fb.now()
        fb.sleep(0.01)
        if #starts < 3 then return nil, "503" end
        return "third"
      end)
      assert.are.same({ 0, 0.01, 0.02 }, starts)
      assert.are.equal("third", v)
      local f = fb.hedge { delay = 1, max_attempts = 3, non_fatal = function(err) return err ~= "404" end }
      local n = 0
      local r, err = f:call(function() n = n + 1; fb.sleep(0.01); return nil, "404" end)
      assert.are.same({ nil, "404", 1 }, { r, err, n })
      -- a non_fatal that raises: its error, the other attempts cancelled
      local bad = fb.hedge { delay = 0.001, non_fatal = function() error("judge failed", 0) end }
      local k, cancelled = 0, nil
      local ok, e = pcall(bad.call, bad, function()
        k = k + 1
        if k == 1 then fb.sleep(1); cancelled = fb.context().cancelled; return 1 end
        return nil, "503"
      end)
      assert.are.same({ false, "judge failed" }, { ok, e })
      fb.sleep(2)
      assert.is_true(cancelled)
    end)
  end)

  it("returns the last failure when every attempt failed, and raises a raised one", function()
    T.vrun(function()
      local h = fb.hedge { delay = 0.01, max_attempts = 2 }
      local n = 0
      local r, err = h:call(function() n = n + 1; fb.sleep(0.05 * n); return nil, "fail " .. n end)
      assert.are.same({ nil, "fail 2" }, { r, err })
      local ok, e = pcall(h.call, h, function() fb.sleep(0.001); error({ code = 7 }) end)
      assert.is_false(ok)
      assert.are.same({ code = 7 }, e)
      assert.are.same({ 1, 2, 3, 4, nil, 6, n = 6 },
        { n = 6, h:call(function() return 1, 2, 3, 4, nil, 6 end) })
    end)
  end)

  it("draws hedges from the policy's retry budget, refusing them when it is empty", function()
    T.vrun(function()
      local b = fb.retry_budget { min_per_second = 0, ratio = 0.5 }
      local p = fb.policy { retry = { attempts = 1, budget = b }, hedge = { delay = 0.01 } }
      local n = 0
      for _ = 1, 4 do p:call(function() n = n + 1; fb.sleep(0.05); return "ok" end) end
      -- deposits once a call (the retry layer's): 0.5, 1 -> a hedge, 1.5 - 1, 2 - 1 -> a hedge
      assert.are.equal(6, n)
      local s = b:stats()
      assert.are.same({ 4, 2, 2 }, { s.deposited, s.withdrawn, s.exhausted })
      local h = p.layers[2]
      assert.are.same({ 2, 2 }, { h:stats().sent, h:stats().refused })
      -- a hedge with its own budget deposits in it itself
      local own = fb.retry_budget { min_per_second = 0, ratio = 1 }
      local h2 = fb.hedge { delay = 0.01, budget = own }
      h2:call(function() fb.sleep(0.05); return 1 end)
      assert.are.same({ 1, 1 }, { own:stats().deposited, own:stats().withdrawn })
    end)
  end)

  it("takes the delay from a latency percentile of a bounded sample", function()
    T.vrun(function()
      local h = fb.hedge { delay = { percentile = 0.9, sample = 20 }, max_attempts = 2 }
      local lat = 0
      local function call() return h:call(function() fb.sleep(lat); return true end) end
      for i = 1, 9 do lat = i / 100; call() end
      assert.are.equal(math.huge, h:stats().delay) -- fewer than 10 latencies: no hedge
      lat = 0.10; call()
      assert.is_true(math.abs(h:stats().delay - 0.09) < 1e-12) -- nearest rank: ceil(0.9 * 10) = 9th of 0.01..0.10
      -- the ring keeps the last 20 (hedges' latencies too), recomputed every 2 new ones
      for _ = 1, 20 do lat = 0.5; call() end
      assert.is_true(h:stats().sent > 0)           -- 0.5 s calls over a 0.09 s percentile
      assert.is_true(math.abs(h:stats().delay - 0.5) < 1e-12)
      assert.are.equal(20, #h.ring)
      local sent = h:stats().sent
      lat = 0.4; call()
      assert.are.equal(sent, h:stats().sent)       -- within the percentile: no hedge
      lat = 2; local t0 = fb.now(); call()         -- slower: a hedge at 0.5 s
      assert.are.equal(sent + 1, h:stats().sent)
      assert.are.equal(t0 + 2, fb.now())           -- the hedge is as slow: the first one wins
    end)
  end)

  it("hedges fb.client calls on another instance; its breakers ignore the loser", function()
    T.vrun(function()
      local reg = fb.registry {}
      reg:register("svc", "10.0.0.1", 80)
      reg:register("svc", "10.0.0.2", 80)
      local c = fb.client { registry = reg, balancer = "round_robin",
        policy = { hedge = { delay = 0.05 } }, per_instance_breaker = { failure_threshold = 1 } }
      local hosts = {}
      local v = c:call("svc", function(inst, ctx)
        hosts[#hosts + 1] = inst.host
        if inst.host == "10.0.0.1" then fb.sleep(1); return nil, "slow and failed" end
        fb.sleep(0.01)
        return inst.host .. " " .. ctx.hedge
      end)
      assert.are.equal("10.0.0.2 1", v)
      fb.sleep(2)
      assert.are.same({ "10.0.0.1", "10.0.0.2" }, hosts)
      local m = c:breaker("10.0.0.1", 80):metrics()
      assert.are.same({ 0, 1, "CLOSED" }, { m.failures, m.ignored, m.state })
      assert.are.equal(1, c:breaker("10.0.0.2", 80):metrics().successes)
    end)
  end)

  it("logs hedge events and shows in the metrics", function()
    local text
    local evs = events_of(function()
      local h = fb.hedge { delay = 0.05, name = "users" }
      h:call(function(ctx) fb.sleep(fb.context().hedge == 0 and 1 or 0.01); return 1 end)
      text = fb.metrics()
    end)
    local got = {}
    for _, e in ipairs(evs) do
      if e.kind == "hedge" then got[#got + 1] = e.action .. " " .. e.attempt .. " " .. e.t end
    end
    assert.are.same({ "sent 2 0.05", "won 2 0.06", "cancelled 1 0.06" }, got)
    for _, k in ipairs { 'outcome="sent"} 1', 'outcome="won"} 1', 'outcome="refused"} 0', 'outcome="cancelled"} 1' } do
      assert.truthy(text:find('fusebox_hedges_total{hedge="users",' .. k .. "\n", 1, true), text)
    end
  end)

  it("allocates nothing when no hedge fires, once its workers are warm", function()
    T.vrun(function()
      local h = fb.hedge { delay = 1 }
      local p = fb.policy { hedge = h, retry = { attempts = 2, budget = fb.retry_budget() } }
      local fn = function(ctx, x) return x end
      for _ = 1, 200 do p:call(fn, 1) end
      collectgarbage("stop")
      local before = collectgarbage("count")
      for _ = 1, 20000 do p:call(fn, 1) end
      local grown = (collectgarbage("count") - before) * 1024
      collectgarbage("restart")
      -- a byte or two a call are the compiler's own objects (traces, more
      -- in a process that ran other specs); the smallest table is 32
      assert.is_true(grown < 20000 * 8, grown .. " bytes for 20000 calls")
    end)
  end)
end)

describe("hedge options", function()
  local cases = {
    { { delay = -1 }, "delay: must be a number >= 0, got -1" },
    { { delay = "fast" }, 'delay: must be seconds or { percentile = p }, got "fast"' },
    { { delay = { percentile = 1.5 } }, "delay.percentile: must be a number in (0, 1], got 1.5" },
    { { delay = { percentile = 0 } }, "delay.percentile: must be a number in (0, 1], got 0" },
    { { delay = { sample = 100 } }, "delay.percentile: must be given" },
    { { delay = { percentile = 0.9, sample = 5 } }, "delay.sample: must be in 10..100000 latencies, got 5" },
    { { delay = { p = 0.9 } }, "delay.p: unknown field (known: percentile, sample)" },
    { { max_attempts = 0 }, "max_attempts: must be an integer >= 1, got 0" },
    { { max_attempts = 11 }, "max_attempts: must be in 1..10 attempts, got 11" },
    { { budget = { ratio = -1 } }, "budget.ratio: must be a number >= 0, got -1" },
    { { hedges = 2 }, "hedges: unknown field (known: budget, delay, max_attempts, name, non_fatal)" },
  }

  it("are checked, naming the field", function()
    for _, c in ipairs(cases) do
      local ok, err = pcall(fb.hedge, c[1])
      assert.is_false(ok)
      assert.truthy(err:find("bad argument #1 to 'hedge' (" .. c[2], 1, true), err)
    end
  end)

  it("are checked in policy JSON with the field's path", function()
    for _, c in ipairs(cases) do
      local ok, err = pcall(fb.policy_from_json, fb.json_encode { hedge = c[1] })
      assert.is_false(ok)
      assert.truthy(err:find("hedge." .. c[2], 1, true), err)
    end
    local ok, err = pcall(fb.policy_from_json, '{"hedge": true}')
    assert.is_false(ok)
    assert.truthy(err:find("hedge: must be hedge options or a hedge, got a boolean", 1, true), err)
    local p = fb.policy_from_json('{"hedge": {"delay": {"percentile": 0.95}, "max_attempts": 2}, "retry": {}}')
    assert.are.same({ "retry", "hedge" }, p:names())
  end)
end)
