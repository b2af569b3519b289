-- pick(service, {exclude = ...}) for every algorithm and for strategies,
-- reg:eject(inst, until) ending by the clock alone, and static registries.
local fb = require "fusebox"

local function errmsg(fn, ...)
  local ok, err = pcall(fn, ...)
  assert.is_false(ok)
  return tostring(err)
end

local function three(opts)
  local reg = fb.registry(opts)
  for p = 18081, 18083 do reg:register("api", "127.0.0.1", p) end
  return reg
end

describe("pick with exclude", function()
  local algos = {}
  for a in ("round_robin random weighted_round_robin least_request peak_ewma consistent_hash maglev"):gmatch("%S+") do algos[#algos + 1] = a end

  for _, algo in ipairs(algos) do
    it("never returns an excluded instance (" .. algo .. ")", function()
      T.vrun(function()
        local reg = three()
        local lb = fb.balancer(reg, algo)
        for k = 1, 100 do
          local key = k % 2 == 0 and ("k" .. k) or nil
          local tried = {}
          for _ = 1, 3 do
            local v = lb:pick("api", { key = key, exclude = tried })
            assert.is_not_nil(v)
            for _, t in ipairs(tried) do assert.are_not.equal(t, v) end
            tried[#tried + 1] = v
            lb:done(v, true, 0.001)
          end
          assert.is_nil(lb:pick("api", { key = key, exclude = tried }))
        end
        -- ids work as views do; in flight counts only what was returned
        local a = reg:discover("api")[1]
        local b = lb:pick("api", { exclude = { a.id } })
        assert.are_not.equal(a, b)
        assert.equal(1, b.inflight)
        assert.equal(0, a.inflight)
      end)
    end)
  end

  it("filters a Lua strategy's candidates", function()
    T.vrun(function()
      local reg = three()
      local lb = fb.balancer(reg, function(list) return list[1] end)
      local first = lb:pick("api")
      local second = lb:pick("api", { exclude = { first } })
      assert.are_not.equal(first, second)
      assert.is_nil(lb:pick("api", { exclude = reg:discover("api") }))
    end)
  end)

  it("says what is wrong with its options", function()
    T.vrun(function()
      local reg = three()
      local lb = fb.balancer(reg, "round_robin")
      local other = fb.registry()
      other:register("api", "10.0.0.1", 80)
      assert.truthy(errmsg(function() lb:pick("api", { exclude = 3 }) end)
        :find("bad argument #2 to 'pick' (exclude must be an array of instances or ids, got number)", 1, true))
      assert.truthy(errmsg(function() lb:pick("api", { exclude = other:discover("api") }) end)
        :find("exclude[1] is not an instance of this balancer's registry nor an id", 1, true))
      assert.truthy(errmsg(function() lb:pick("api", { exlude = {} }) end)
        :find("unknown option 'exlude' (known: exclude, key)", 1, true))
      local many = {}
      for k = 1, 257 do many[k] = k end
      assert.truthy(errmsg(function() lb:pick("api", { exclude = many }) end)
        :find("exclude has 257 entries, at most 256", 1, true))
      assert.truthy(errmsg(function() lb:pick("api", { key = 1 }) end)
        :find("key must be a string, got number", 1, true))
    end)
  end)
end)

describe("reg:eject", function()
  it("takes an instance out until a time, and it comes back on time", function()
    T.vrun(function()
      local reg = three()
      local lb = fb.balancer(reg, "round_robin")
      local dead = reg:discover("api")[2]
      assert.equal(0, dead.ejected_until)
      assert.is_true(reg:eject(dead, fb.now() + 5))
      assert.equal(fb.now() + 5, dead.ejected_until)
      for _ = 1, 30 do
        local v = lb:pick("api")
        assert.are_not.equal(dead, v)
        lb:done(v, true, 0)
      end
      fb.sleep(4.9)
      assert.are_not.equal(dead, lb:pick("api"))
      assert.are_not.equal(dead, lb:pick("api"))
      fb.sleep(0.1) -- no call, no timer: the clock alone ends it
      local seen = false
      for _ = 1, 3 do seen = seen or lb:pick("api") == dead end
      assert.is_true(seen)
      -- readmitted early by an until in the past; ids work too
      reg:eject(dead.id, fb.now() + 100)
      reg:eject(dead, 0)
      seen = false
      for _ = 1, 3 do seen = seen or lb:pick("api") == dead end
      assert.is_true(seen)
    end)
  end)

  it("checks its arguments", function()
    local reg = three()
    assert.truthy(errmsg(function() reg:eject({}, 1) end)
      :find("bad argument #1 to 'eject' (not an instance of this registry nor an id", 1, true))
    assert.truthy(errmsg(function() reg:eject(reg:discover("api")[1], 0 / 0) end)
      :find("bad argument #2 to 'eject' (until must be a time", 1, true))
    assert.is_false(reg:eject(12345, 1)) -- no such instance
  end)
end)

describe("a static registry", function()
  it("keeps its instances without heartbeats", function()
    T.vrun(function()
      local reg = three{ static = true }
      assert.equal(math.huge, reg:heartbeat_timeout())
      local lb = fb.balancer(reg, "round_robin")
      fb.sleep(1e6)
      assert.equal(3, #reg:discover("api"))
      assert.is_not_nil(lb:pick("api"))
      local huge = three{ heartbeat_timeout = math.huge }
      fb.sleep(1e6)
      assert.equal(3, #huge:discover("api"))
    end)
  end)

  it("refuses what contradicts it", function()
    assert.truthy(errmsg(fb.registry, { static = true, heartbeat_timeout = 5 })
      :find("static registries have no heartbeat_timeout nor reap_after", 1, true))
    assert.truthy(errmsg(fb.registry, { static = "yes" })
      :find("static must be a boolean, got yes", 1, true))
  end)
end)
