-- Values that were silently wrong or unbounded (issue 13, findings 9-13):
-- JSON null as a policy layer, NUL bytes and limits in JSON, breaker
-- tokens recorded twice or malformed, infinities in sleep/wait/retry and
-- the rate limiter's messages, and bulkhead slots held by dropped
-- coroutines.
local fb = require "fusebox"

local function raises(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

describe("policy layers from JSON", function()
  it("refuses null for a layer, naming the path, never as a built layer", function()
    for _, name in ipairs { "retry", "breaker", "rate_limit", "bulkhead", "timeout" } do
      local err = raises(fb.policy_from_json, '{"' .. name .. '": null}')
      assert.truthy(err:find("policy_from_json: JSON text: " .. name .. ": must be ", 1, true), err)
      assert.truthy(err:find("got null", 1, true), err)
    end
    local err = raises(fb.policy_from_json, '{"fallback": null}')
    assert.truthy(err:find("fallback: must be a function, got null", 1, true), err)
    err = raises(fb.policy_from_json, '{"breaker": {"failure_threshold": null}}')
    assert.truthy(err:find("breaker.failure_threshold: must be an integer >= 1, got null", 1, true), err)
  end)

  it("refuses other userdata as layers in fb.policy", function()
    local err = raises(fb.policy, { breaker = fb.json_null })
    assert.truthy(err:find("bad argument #1 to 'policy' (breaker: must be breaker options or a breaker, got null)", 1, true), err)
    err = raises(fb.policy, { retry = io.stdout })
    assert.truthy(err:find("retry: must be retry options or a retry, got a userdata", 1, true), err)
  end)

  it("still takes a built breaker, and merges code over a JSON null", function()
    local cb = fb.breaker { failure_threshold = 1 }
    local p = fb.policy { breaker = cb }
    T.vrun(function()
      assert.are.same({ nil, "x" }, { p:call(function() return nil, "x" end) })
      assert.are.equal("OPEN", cb.state)
    end)
    p = fb.policy_from_json('{"breaker": null}', { breaker = { failure_threshold = 2 } })
    T.vrun(function() assert.are.equal(1, p:call(function() return 1 end)) end)
  end)
end)

describe("breaker tokens", function()
  it("count once: a replayed token is dropped like a stale one", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 3 }
      local t = cb:permit()
      assert.is_true(cb:record(t, false))
      assert.is_false(cb:record(t, false))
      assert.is_false(cb:record(t, false))
      assert.are.equal("CLOSED", cb.state)
      local m = cb:metrics()
      assert.are.equal(1, m.failures)
      assert.are.equal(2, m.stale)
      -- others out meanwhile keep their own result
      local a, b = cb:permit(), cb:permit()
      assert.is_true(cb:record(a, true))
      assert.is_false(cb:record(a, true))
      assert.is_true(cb:record(b, true))
    end)
  end)

  it("refuse malformed tokens instead of truncating them into real ones", function()
    T.vrun(function()
      local cb = fb.breaker {}
      local t = cb:permit()
      assert.are.equal(0, t)
      for _, bad in ipairs { 0.5, -0.0, 0 / 0, -1, 2 ^ 53 + 2, 1e300, math.huge } do
        local err = raises(cb.record, cb, bad, true)
        assert.truthy(err:find("bad argument #1 to 'record' (not a token of this breaker: ", 1, true), err)
      end
      assert.truthy(raises(cb.record, cb, "0", true):find("token must be a number, got string", 1, true))
      assert.is_true(cb:record(t, true)) -- the real one is still out
    end)
  end)

  it("stay allocation-free", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 1e6 }
      for i = 1, 1000 do cb:record(cb:permit(), i % 10 ~= 0) end
      for i = 1, 100000 do cb:record(cb:permit(), i % 10 ~= 0) end -- traces compiled
      collectgarbage("stop")
      local before = collectgarbage("count")
      for i = 1, 100000 do cb:record(cb:permit(), i % 10 ~= 0) end
      local grown = collectgarbage("count") - before
      collectgarbage("restart")
      -- one allocation a call would be >= 1.6 MB; compiling traces takes a few KB
      assert.is_true(grown < 64, string.format("100000 permit+record allocated %.1f KB", grown))
    end)
  end)

  it("still announce state changes with tokens", function()
    T.vrun(function()
      local cb = fb.breaker { failure_threshold = 1, timeout = 1 }
      local seen = {}
      cb:on("state_change", function(from, to) seen[#seen + 1] = from .. ">" .. to end)
      cb:record(cb:permit(), false)
      fb.sleep(2)
      cb:record(cb:permit(), true)
      assert.are.same({ "CLOSED>OPEN", "OPEN>HALF_OPEN" }, seen)
    end)
  end)
end)

describe("durations and the clock", function()
  it("refuse infinite, NaN and over-long sleeps and waits, naming the function", function()
    T.vrun(function()
      for _, bad in ipairs { math.huge, 1.7e308, 1e9 + 1, 0 / 0, -1 } do
        local err = raises(fb.sleep, bad)
        assert.truthy(err:find("bad argument #1 to 'sleep' (seconds must be a number in 0..1000000000, got ", 1, true), err)
        err = raises(fb.wait, "x", bad)
        assert.truthy(err:find("bad argument #2 to 'wait' (timeout must be a number in 0..1000000000, got ", 1, true), err)
      end
      assert.truthy(raises(fb.wait, "x", math.huge):find("got inf)", 1, true))
      fb.sleep(1e9)
      fb.sleep(1e9)
      assert.are.equal(2e9, fb.now()) -- finite, where two 1.7e308 gave inf
      assert.is_false(fb.wait("x", 1e9))
      assert.are.equal(3e9, fb.now())
    end)
  end)

  it("cap the retry backoff at the longest sleep instead of failing inside", function()
    T.vrun(function()
      local err = raises(fb.retry, { base = 1e308, multiplier = 10 })
      assert.truthy(err:find("bad argument #1 to 'retry' (base: must be in 0..1000000000 seconds, got 1e+308)", 1, true), err)
      local r = fb.retry { base = 1e8, multiplier = 1e300, attempts = 4 }
      assert.are.same({ 1e8, 1e9, 1e9, 1e9 }, r:delays(4))
      assert.are.same({ 0, 0, 0 }, fb.retry { base = 0, multiplier = 1e300 }:delays(3))
      local t0, n = fb.now(), 0
      assert.are.same({ nil, "e" }, { r:call(function() n = n + 1; return nil, "e" end) })
      assert.are.equal(4, n)
      assert.are.equal(t0 + 1e8 + 2e9, fb.now())
      err = raises(fb.policy_from_json, '{"retry": {"max": 1e400}}')
      assert.truthy(err:find("retry.max: must be a positive number, got inf", 1, true)
        or err:find("invalid JSON", 1, true), err)
    end)
  end)

  it("bound timeouts, queue timeouts and rates, and print sane numbers", function()
    assert.truthy(raises(fb.timeout, 1e308):find(
      "bad argument #1 to 'timeout' (seconds: must be in 0..1000000000 seconds, got 1e+308)", 1, true))
    assert.truthy(raises(fb.bulkhead, { queue_timeout = 2e9 }):find(
      "queue_timeout: must be in 0..1000000000 seconds, got 2000000000", 1, true))
    assert.truthy(raises(fb.rate_limiter, { rate = 1e-300 }):find(
      "rate: must be in 1e-09..1000000000 a second, got 1e-300", 1, true))
    assert.truthy(raises(fb.rate_limiter, { rate = 1e300 }):find(
      "rate: must be in 1e-09..1000000000 a second, got 1e+300", 1, true))
    T.vrun(function()
      local rl = fb.rate_limiter { rate = 1e-9 }
      assert.are.equal(1, rl:call(function() return 1 end))
      local _, err = rl:call(function() return 1 end)
      assert.are.equal("rate limited: next token in 1e+09s", err)
      rl = fb.rate_limiter { rate = 4 }
      for _ = 1, 4 do rl:acquire() end
      _, err = rl:call(function() return 1 end)
      assert.are.equal("rate limited: next token in 0.250s", err)
      local cb = fb.breaker { failure_threshold = 1, timeout = 1e300 }
      cb:record(cb:permit(), false)
      err = raises(cb.call, cb, function() end)
      assert.truthy(err:find("circuit open: call rejected (retry after 1e+300s)", 1, true), err)
    end)
  end)
end)

describe("bulkhead slots", function()
  local function one() return 1 end

  it("come back when a coroutine holding one is dropped and collected", function()
    local b = fb.bulkhead { max_concurrent = 1 }
    local co = coroutine.create(function() b:call(function() coroutine.yield() end) end)
    assert.is_true(coroutine.resume(co))
    local v, err = b:call(one)
    assert.is_nil(v)
    assert.truthy(err:find("bulkhead full", 1, true), err)
    co = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    assert.are.equal(1, b:call(one))
    assert.are.equal(1, b.reclaimed)
    assert.are.equal(0, b.active)
  end)

  it("stay with a suspended holder that can still resume, and are freed once", function()
    local b = fb.bulkhead { max_concurrent = 2 }
    local cos = {}
    for i = 1, 2 do
      cos[i] = coroutine.create(function() return b:call(function() coroutine.yield(); return i end) end)
      assert.is_true(coroutine.resume(cos[i]))
    end
    collectgarbage()
    collectgarbage()
    assert.is_nil((b:call(one)))
    assert.are.equal(0, b.reclaimed)
    assert.are.same({ true, 1 }, { coroutine.resume(cos[1]) })
    assert.are.equal(1, b:call(one))
    assert.are.same({ true, 2 }, { coroutine.resume(cos[2]) })
    assert.are.equal(0, b.active)
  end)

  it("hand a reclaimed slot to the longest waiter first", function()
    T.vrun(function()
      local b = fb.bulkhead { max_concurrent = 1, max_queue = 2 }
      local co = coroutine.create(function() b:call(function() coroutine.yield() end) end)
      assert.is_true(coroutine.resume(co))
      local order = {}
      local function note(v) order[#order + 1] = v end
      fb.spawn(function() note(b:call(function() return "waiter" end)) end)
      fb.sleep(1)
      assert.are.same({}, order) -- queued behind the dropped holder
      co = nil -- luacheck: ignore
      collectgarbage()
      collectgarbage()
      note(b:call(function() return "newcomer" end))
      fb.sleep(1)
      assert.are.same({ "waiter", "newcomer" }, order)
      assert.are.equal(1, b.reclaimed)
      assert.are.equal(0, b.active)
    end)
  end)
end)

describe("JSON bytes and limits", function()
  local dec, enc = fb.json_decode, fb.json_encode

  it("keeps NUL bytes in strings and keys, both ways", function()
    assert.are.equal("a\0b", dec('"a\\u0000b"'))
    assert.are.equal("\0", dec('"\\u0000"'))
    assert.are.equal("\\u0000", dec('"\\\\u0000"')) -- an escaped backslash, then text
    local t = dec('{"a":1,"a\\u0000b":2,"\\u0000":"\\u0000\\u0000x"}')
    assert.are.equal(1, t.a)
    assert.are.equal(2, t["a\0b"])
    assert.are.equal("\0\0x", t["\0"])
    local text = assert(enc({ a = 1, ["a\0b"] = 2 }))
    assert.are.equal('{"a":1,"a\\u0000b":2}', text)
    assert.are.same({ a = 1, ["a\0b"] = 2 }, dec(text))
    assert.are.equal('"x\\u0000y"', enc("x\0y"))
    assert.are.equal('{\n\t"a":\t"\\u0000"\n}', enc({ a = "\0" }, true))
  end)

  it("keeps NUL apart from the characters that stand in for it", function()
    local fdd0, fdd1 = "\239\183\144", "\239\183\145"
    assert.are.equal(fdd0 .. "\0" .. fdd1, dec('"\\uFDD0\\u0000\\ufdd1"'))
    assert.are.equal(fdd0 .. "\0" .. fdd1, dec('"' .. fdd0 .. '\\u0000' .. fdd1 .. '"'))
    local v = { fdd0 .. "\0" .. fdd1, fdd1 }
    assert.are.same(v, dec(enc(v)))
    local all = {}
    for k = 0, 31 do all[#all + 1] = "\239\183" .. string.char(0x90 + k) end
    local _, err = dec('["' .. table.concat(all) .. '", "\\u0000"]')
    assert.truthy(err:find("no stand-in left", 1, true), err)
    _, err = enc({ table.concat(all), "\0" })
    assert.are.equal("cannot encode as JSON: NUL bytes in strings that also hold every "
      .. "U+FDD0..U+FDEF (no stand-in left)", err)
    assert.are.equal(table.concat(all), dec(enc(table.concat(all)))) -- no NUL: no stand-in needed
  end)

  it("refuses a raw NUL byte in the text, with a message free of it", function()
    local v, err = dec('"x\0y"')
    assert.is_nil(v)
    assert.are.equal("invalid JSON at line 1, column 3: a NUL byte (in a string, write \\u0000)", err)
  end)

  it("refuses numbers beyond the doubles and reads tiny ones as 0", function()
    local v, err = dec('{"weight": 1e400}')
    assert.is_nil(v)
    assert.are.equal("invalid JSON: a number beyond the doubles (+-1.8e308) at .weight", err)
    _, err = dec('[1, -1e999]')
    assert.are.equal("invalid JSON: a number beyond the doubles (+-1.8e308) at [2]", err)
    assert.are.equal(0, dec("1e-400"))
    assert.are.equal(1.7976931348623157e308, dec("1.7976931348623157e308"))
  end)

  it("refuses a key given twice", function()
    local v, err = dec('{"a": 1, "b": {"c": 1, "c": 2}}')
    assert.is_nil(v)
    assert.are.equal("invalid JSON: a key given twice at .b.c", err)
    _, err = dec('{"a\\u0000": 1, "a\\u0000": 2}')
    assert.truthy(err:find("a key given twice", 1, true), err)
    assert.are.same({ a = 1, ["a\0"] = 2 }, dec('{"a": 1, "a\\u0000": 2}'))
  end)

  it("passes bytes that are not UTF-8 through, and refuses lone surrogates", function()
    assert.are.equal("\255\254", dec('"\255\254"'))
    assert.are.equal('"\255"', enc("\255"))
    assert.is_nil(dec('"\\ud800"'))
    assert.is_nil(dec('"\\udc00"'))
    assert.are.equal("\240\159\152\128", dec('"\\ud83d\\ude00"'))
  end)

  it("nests at most 1000 deep both ways and says so", function()
    assert.is_table(dec(string.rep("[", 1000) .. string.rep("]", 1000)))
    local v, err = dec(string.rep('{"a":', 1000) .. "[1]" .. string.rep("}", 1000))
    assert.is_nil(v)
    assert.are.equal("invalid JSON at line 1, column 5001: nested deeper than 1000 arrays "
      .. "and objects near '[1]}}}}}}}}}}}}}'", err)
    assert.is_table(dec('["' .. string.rep("[", 5000) .. '"]')) -- brackets in a string do not nest
    assert.are.same({ '"[[' .. "\\", 1 }, dec('["\\"[[\\\\", 1]'))
    local t = {}
    local top = t
    for _ = 1, 999 do t[1] = {}; t = t[1] end
    assert.is_string(enc(top))
    t[1] = {}
    _, err = enc(top)
    assert.truthy(err:find("tables nested too deeply", 1, true), err)
  end)
end)
