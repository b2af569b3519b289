-- The fusebox command: running scripts, its errors and exit codes, and
-- the document demos replaying byte for byte under virtual time.
describe("fusebox CLI", function()
  it("prints help and version", function()
    local out, _, code = T.cli("--help")
    assert.are.equal(0, code)
    assert.truthy(out:find("--virtual-time", 1, true))
    assert.truthy(out:find("--seed N", 1, true))
    out, _, code = T.cli("--version")
    assert.are.equal(0, code)
    assert.truthy(out:match("^fusebox %d+%.%d+%.%d+"))
  end)

  it("fails with exit 2 and one line on usage errors", function()
    for _, args in ipairs { "run --bogus x.lua", "run", "run --seed", "run --seed -1 x.lua",
      "frobnicate", "run no/such/script.lua" } do
      local out, err, code = T.cli(args)
      assert.are.equal(2, code, args)
      assert.are.equal("", out)
      local _, lines = err:gsub("\n", "")
      assert.are.equal(1, lines, args .. ": " .. err)
      assert.truthy(err:find("^fusebox: "), err)
    end
  end)

  it("passes arguments, and reports an uncaught error with file:line, traceback, exit 1", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write('local fb = require "fusebox"\nprint(select("#", ...), table.concat({...}, ","), arg[0] ~= nil)\n',
      'fb.spawn(function() fb.sleep(2); error("kaput") end)\nfb.sleep(1)\nprint("slept")\n')
    f:close()
    local out, err, code = T.cli("run --virtual-time " .. path .. " a b")
    os.remove(path)
    assert.are.equal(1, code)
    assert.are.equal("2\ta,b\ttrue\nslept\n", out)
    assert.truthy(err:find(path .. ":3: kaput", 1, true), err)
    assert.truthy(err:find("stack traceback", 1, true), err)
  end)

  it("runs a script that sleeps for minutes at once under --virtual-time", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write('local fb = require "fusebox"\nfb.sleep(600)\nprint(fb.now())\n')
    f:close()
    local out, _, code = T.cli("run --virtual-time " .. path)
    os.remove(path)
    assert.are.equal(0, code)
    assert.are.equal("600\n", out)
  end)

  for _, demo in ipairs { "examples/service_discovery.lua", "examples/circuit_breaker.lua" } do
    it("replays " .. demo .. " identically under --virtual-time --seed 1", function()
      local a, err, code = T.cli("run --virtual-time --seed 1 " .. demo)
      assert.are.equal(0, code, err)
      local b = T.cli("run --virtual-time --seed 1 " .. demo)
      assert.are.equal(a, b)
      assert.truthy(#a > 0)
    end)
  end

  it("shows the document's breaker demo in full", function()
    local out = T.cli("run --virtual-time --seed 1 examples/circuit_breaker.lua")
    local calls = 0
    for line in out:gmatch("Call %d+: [^\n]+") do calls = calls + 1 end
    assert.are.equal(10, calls)
    assert.truthy(out:find("Current breaker state: %u+"))
    -- some seed opens the breaker: the transition is printed
    local opened = false
    for seed = 1, 10 do
      if T.cli("run --virtual-time --seed " .. seed .. " examples/circuit_breaker.lua"):find("CLOSED -> OPEN", 1, true) then
        opened = true
        break
      end
    end
    assert.is_true(opened)
  end)

  it("shows the document's round-robin sequence", function()
    local out = T.cli("run examples/service_discovery.lua")
    local picks = {}
    for host in out:gmatch("%-> %('([%d.]+)'") do picks[#picks + 1] = host end
    assert.are.same({ "192.168.1.10", "192.168.1.11", "192.168.1.10", "192.168.1.11", "192.168.1.20" }, picks)
  end)
end)
