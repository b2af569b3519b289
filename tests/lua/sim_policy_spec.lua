-- fb.sim.policy: the policy under comparison (fusebox compare --policy,
-- fusebox run --policy), or the scenario's default; each call logged as a
-- request event, results and raised errors passed on unchanged.
local fb = require "fusebox"
local KEY = "fusebox.compare_policy" -- src/cli.h FB_CLI_POLICY

local function events(fn)
  local path = os.tmpname()
  fb.run(fn, { virtual_time = true, seed = 1, events = path })
  local out = {}
  for line in io.lines(path) do
    local e = fb.json_decode(line)
    if e.kind == "request" then out[#out + 1] = e end
  end
  os.remove(path)
  return out
end

local function write(text, suffix)
  local path = os.tmpname() .. suffix
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  return path
end

describe("fb.sim.policy", function()
  after_each(function() debug.getregistry()[KEY] = nil end)

  it("builds the default outside compare, and logs what each call's caller saw", function()
    local got = {}
    local reqs = events(function()
      local p = fb.sim.policy { timeout = 1 }
      got[1] = { p:call(function() fb.sleep(0.25); return "v", "extra" end) }
      got[2] = { p:call(function() return nil, "boom" end) }
      got[3] = { p:call(function() fb.sleep(5) return "late" end) }
    end)
    assert.are.same({ "v", "extra" }, got[1])
    assert.are.same({ nil, "boom" }, got[2])
    assert.is_nil(got[3][1])
    assert.are.equal("timeout", fb.rejection(got[3][2]))
    assert.are.equal(3, #reqs)
    assert.are.equal("success", reqs[1].outcome)
    assert.are.equal(0.25, reqs[1].latency)
    assert.are.equal("failure", reqs[2].outcome)
    assert.is_nil(reqs[2].rejection)
    assert.are.equal("failure", reqs[3].outcome)
    assert.are.equal("timeout", reqs[3].rejection)
    assert.are.equal(1, reqs[3].latency)
  end)

  it("logs a raised rejection and raises it on, unchanged", function()
    local errs = {}
    local reqs = events(function()
      local p = fb.sim.policy { breaker = { failure_threshold = 1, timeout = 10 } }
      p:call(function() return nil, "down" end)
      local ok, err = pcall(p.call, p, function() return "never" end)
      errs[1], errs[2] = ok, err
    end)
    assert.is_false(errs[1])
    assert.are.equal("circuit open", fb.rejection(errs[2]))
    assert.are.equal(2, #reqs)
    assert.are.equal("circuit open", reqs[2].rejection)
  end)

  it("builds the --policy file: JSON through the schema, Lua returning options or a policy", function()
    local json = write('{"retry": {"attempts": 2, "base": 0}}', ".json")
    local lua = write('local fb = require "fusebox"\nreturn fb.policy { retry = { attempts = 3, base = 0 } }', ".lua")
    for path, tries in pairs { [json] = 2, [lua] = 3 } do
      debug.getregistry()[KEY] = path
      local n = 0
      T.vrun(function()
        local p = fb.sim.policy { timeout = 1 } -- the file wins over the default
        assert.are.same({ "retry" }, p.policy:names())
        p:call(function() n = n + 1; return nil, "no" end)
      end)
      assert.are.equal(tries, n)
      os.remove(path)
    end
  end)

  it("raises one line naming the file and the field for a bad file", function()
    local bad = write('{"breaker": {"failure_threshold": 0}}', ".json")
    debug.getregistry()[KEY] = bad
    local ok, err = pcall(fb.sim.policy)
    assert.is_false(ok)
    assert.are.equal(bad .. ": breaker.failure_threshold: must be an integer >= 1, got 0", err)
    os.remove(bad)
    local num = write("return 7", ".lua")
    debug.getregistry()[KEY] = num
    ok, err = pcall(fb.sim.policy)
    assert.are.equal(num .. ": must return a policy or fb.policy options, got number", err)
    os.remove(num)
  end)

  it("without --policy and without a default, says how to give one", function()
    local ok, err = pcall(fb.sim.policy)
    assert.is_false(ok)
    assert.matches("fb.sim.policy: no policy under comparison", err, 1, true)
    ok, err = pcall(fb.sim.policy, 42)
    assert.matches("bad argument #1 to 'policy' (a policy or policy options expected, got number)", err, 1, true)
    local p = fb.sim.policy { timeout = 1 }
    ok, err = pcall(p.call, nil, function() end)
    assert.matches("fusebox.sim.policy expected", err, 1, true)
  end)
end)
