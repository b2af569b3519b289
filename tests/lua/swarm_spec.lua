-- fb.sim.swarm: which fault kinds a seed turns on (issue 19: swarm
-- testing). Deterministic per seed and kind, independent of every other
-- random stream, forced off by --swarm-off (the registry field explore and
-- fusebox run set), checked arguments.
local fb = require "fusebox"

local function mix(seed, spec)
  local on
  T.vrun(function() on = fb.sim.swarm(spec) end, seed)
  return on
end

describe("fb.sim.swarm", function()
  after_each(function() debug.getregistry()["fusebox.swarm_off"] = nil end)

  it("gives each seed its own mix, the same every time", function()
    local kinds = { "a", "b", "c", "d" }
    local seen = {}
    for seed = 1, 64 do
      local on = mix(seed, kinds)
      assert.are.same(on, mix(seed, kinds))
      local key = (on.a and "a" or "") .. (on.b and "b" or "") .. (on.c and "c" or "") .. (on.d and "d" or "")
      seen[key] = (seen[key] or 0) + 1
    end
    local mixes = 0
    for _ in pairs(seen) do mixes = mixes + 1 end
    assert.is_true(mixes >= 12, "64 seeds made only " .. mixes .. " of the 16 mixes")
  end)

  it("draws a kind by its name alone: adding another kind changes nothing", function()
    for seed = 1, 20 do
      local small, big = mix(seed, { "outage" }), mix(seed, { "zzz", "outage", "aaa" })
      assert.are.equal(small.outage, big.outage)
    end
  end)

  it("moves no other random stream", function()
    local plain, swarmed
    T.vrun(function() plain = fb.random() end, 9)
    T.vrun(function() fb.sim.swarm { "x", "y" }; swarmed = fb.random() end, 9)
    assert.are.equal(plain, swarmed)
  end)

  it("honours probabilities 0 and 1 and keeps --swarm-off kinds off", function()
    local on = mix(3, { never = 0, always = 1, also = true })
    assert.is_false(on.never)
    assert.is_true(on.always)
    debug.getregistry()["fusebox.swarm_off"] = "always,also"
    on = mix(3, { never = 0, always = 1, also = 1 })
    assert.is_false(on.always)
    assert.is_false(on.also)
  end)

  it("leaves the kinds it turned on where explore reads them", function()
    mix(5, { b = 1, a = 1, c = 0 })
    assert.are.equal("a,b", debug.getregistry()["fusebox.swarm_on"])
  end)

  it("rejects what is not a list of fault kinds", function()
    for _, case in ipairs {
      { 42, "table of fault kinds expected, got number" },
      { { "has space" }, "fault kinds are names of letters, digits and _" },
      { { x = 1.5 }, "x must be a probability 0..1, got 1.5" },
      { { x = "often" }, "x must be a probability 0..1 or true, got string" },
    } do
      local ok, err = pcall(mix, 1, case[1])
      assert.is_false(ok)
      assert.matches("bad argument #1 to 'swarm' (" .. case[2], err, 1, true)
    end
    local many = {}
    for i = 1, 65 do many[i] = "k" .. i end
    local ok, err = pcall(mix, 1, many)
    assert.is_false(ok)
    assert.matches("at most 64 fault kinds, got 65", err, 1, true)
  end)
end)
