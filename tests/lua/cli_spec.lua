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

  local function script(body)
    local path = os.tmpname() .. ".lua"
    local f = assert(io.open(path, "w"))
    f:write('local fb = require "fusebox"\n', body)
    f:close()
    return path
  end

  it("takes the whole 64-bit seed range exactly", function()
    local path = script('print(fb.seed(), fb.random(1000000000), fb.random(1000000000))\n')
    local function run(seed)
      local out, err, code = T.cli("run --virtual-time --seed " .. seed .. " " .. path)
      assert.are.equal(0, code, err)
      return out
    end
    local top = run("18446744073709551615")
    assert.truthy(top:find("^18446744073709551615\t"), top)
    local a, b = run("9007199254740992"), run("9007199254740993")
    assert.truthy(b:find("^9007199254740993\t"), b)
    assert.are_not.equal(a:match("\t.*"), b:match("\t.*")) -- above 2^53, no two seeds collide
    assert.are.equal(a, run("9007199254740992"))
    for _, bad in ipairs { "18446744073709551616", "99999999999999999999999", "-1", "1e3" } do
      local out, err, code = T.cli("run --virtual-time --seed " .. bad .. " " .. path)
      assert.are.equal(2, code, bad)
      assert.are.equal("", out)
      assert.are.equal("fusebox: bad seed '" .. bad .. "': want an integer in 0..18446744073709551615 (see fusebox --help)\n", err)
    end
    os.remove(path)
  end)

  it("gives the seed as digits, and takes seeds above 2^53 as digits in fb.seed and fb.run", function()
    T.vrun(function()
      local fb = require "fusebox"
      assert.are.equal("18446744073709551615", fb.seed("18446744073709551615"))
      local x = fb.random()
      fb.seed("18446744073709551615")
      assert.are.equal(x, fb.random())
      assert.are.equal("42", fb.seed(42))
      assert.are.equal("123456789012345", fb.seed(123456789012345)) -- not 1.2345678901234e+14
      for _, bad in ipairs { -1, 0.5, "12x", "", "18446744073709551616", {} } do
        local ok, err = pcall(fb.seed, bad)
        assert.is_false(ok)
        assert.truthy(err:find("bad argument #1 to 'seed' (seed must be an integer in 0..18446744073709551615", 1, true), err)
      end
    end)
    local fb = require "fusebox"
    local ok, err = pcall(fb.run, function() end, { virtual_time = true, seed = "x" })
    assert.is_false(ok)
    assert.truthy(err:find("bad argument #2 to 'run' (seed must be an integer in 0..18446744073709551615 "
      .. "(a string of digits above 2^53), got 'x')", 1, true), err)
  end)

  it("refuses --metrics with --virtual-time, or on a port in use, in one line", function()
    local path = script('print("ran")\n')
    local out, err, code = T.cli("run --virtual-time --metrics 127.0.0.1:0 " .. path)
    assert.are.equal(2, code)
    assert.are.equal("", out)
    assert.are.equal("fusebox: --metrics with --virtual-time: metrics are served in real time only "
      .. "(see fusebox --help)\n", err)
    local fb = require "fusebox"
    fb.run(function() end) -- a real-time runtime in this process
    local taken = assert(fb.serve_metrics { host = "127.0.0.1", port = 0 })
    local port = taken:port()
    out, err, code = T.cli("run --metrics 127.0.0.1:" .. port .. " " .. path)
    taken:close()
    assert.are.equal(2, code)
    assert.are.equal("", out)
    assert.are.equal("fusebox: cannot serve metrics on 127.0.0.1:" .. port .. ": address already in use\n", err)
    out, err, code = T.cli("run --metrics 127.0.0.1:0 " .. path)
    assert.are.equal(0, code, err)
    assert.truthy(out:find("^fusebox: metrics on http://127.0.0.1:%d+/metrics\nran\n$"), out)
    os.remove(path)
  end)

  it("says what a deadlocked run waits on, each on its own line", function()
    local path = script('fb.wait("never comes")\n')
    local _, err, code = T.cli("run --virtual-time " .. path)
    assert.are.equal(1, code)
    assert.truthy(err:find("\n- waiting on never comes\nstack traceback:\n", 1, true), err)
    os.remove(path)
  end)

  it("counts in the summary in the singular and plural, with brief times", function()
    local path = script('local cb = fb.breaker { failure_threshold = 1 }\nlocal svc = fb.sim.service { failure_rate = 1 }\n'
      .. 'fb.sleep(1e9)\nfb.sim.call(cb, svc)\n')
    local _, err, code = T.cli("run --virtual-time --summary " .. path)
    assert.are.equal(0, code, err)
    assert.truthy(err:find("fusebox: summary after 1e+09s: 1 call, 0 successes, 1 failure, 0 timeouts, 0 rejections\n", 1, true), err)
    assert.truthy(err:find("(summed over 1 breaker): CLOSED 1e+09s, OPEN 0.000s", 1, true), err)
    os.remove(path)
  end)
end)
