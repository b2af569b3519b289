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
