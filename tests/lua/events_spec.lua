-- The event log (--events, fb.run{events=}), the summary, and fusebox test.
local fb = require "fusebox"

local slurp = T.slurp

local function lines(s)
  local out = {}
  for line in s:gmatch("[^\n]+") do out[#out + 1] = line end
  return out
end

describe("the event log", function()
  it("writes one JSON object per line, from run_start to run_end", function()
    local path = os.tmpname()
    fb.run(function()
      local reg = fb.registry { heartbeat_timeout = 30 }
      local lb = fb.balancer(reg, "round_robin")
      reg:register("api", "10.0.0.1", 80)
      lb:pick("api")
      fb.emit("note", { text = "hi", n = 2, ok = true, list = { 1, 2 }, nested = { b = 1, a = "x" } })
      fb.sleep(31)
      reg:discover("api")
      reg:deregister("api", "10.0.0.1", 80)
    end, { virtual_time = true, seed = 9, events = path, script = "inline" })
    local got = lines(slurp(path))
    os.remove(path)
    assert.are.same({
      '{"t":0,"kind":"run_start","seed":9,"script":"inline","virtual_time":true}',
      '{"t":0,"kind":"register","service":"api","host":"10.0.0.1","port":80}',
      '{"t":0,"kind":"pick","host":"10.0.0.1","port":80,"service":"api"}',
      '{"t":0,"kind":"note","list":[1,2],"n":2,"nested":{"a":"x","b":1},"ok":true,"text":"hi"}',
      '{"t":31,"kind":"expire","service":"api","host":"10.0.0.1","port":80,"last_heartbeat":0}',
      '{"t":31,"kind":"deregister","service":"api","host":"10.0.0.1","port":80}',
      '{"t":31,"kind":"run_end","ok":true,"summary":{"duration":31,"calls":0,"successes":0,'
        .. '"failures":0,"timeouts":0,"rejections":0,"breaker_time":{"CLOSED":0,"OPEN":0,"HALF_OPEN":0}}}',
    }, got)
  end)

  it("logs calls, rejections and state changes, and sums them up", function()
    local path = os.tmpname()
    fb.run(function()
      local cb = fb.breaker { failure_threshold = 2, timeout = 5 }
      local svc = fb.sim.service { name = "s", failure_rate = 1, latency = 1, errors = { refused = 1 } }
      for _ = 1, 4 do fb.sim.call(cb, svc) end -- 2 failures, then 2 rejections
      fb.sleep(6)
      assert.has_error(function() cb:call(error) end) -- the HALF_OPEN probe fails
      fb.sleep(1)
    end, { virtual_time = true, seed = 1, events = path })
    local log = slurp(path)
    os.remove(path)
    assert.truthy(log:find('{"t":1,"kind":"call_end","call":1,"error":"refused","latency":1,"outcome":"failure","service":"s"}', 1, true), log)
    assert.truthy(log:find('{"t":2,"kind":"state_change","breaker":%d+,"from":"CLOSED","to":"OPEN"}'), log)
    assert.truthy(log:find('{"t":2,"kind":"reject","breaker":%d+}'), log)
    assert.truthy(log:find('{"t":8,"kind":"state_change","breaker":%d+,"from":"HALF_OPEN","to":"OPEN"}'), log)
    assert.truthy(log:find('"summary":{"duration":9,"calls":2,"successes":0,"failures":2,"timeouts":0,"rejections":2,'
      .. '"breaker_time":{"CLOSED":2,"OPEN":7,"HALF_OPEN":0}}', 1, true), log)
  end)

  it("rejects fields it cannot log, without logging half an event", function()
    local path = os.tmpname()
    fb.run(function()
      assert.has_error(function() fb.emit("x", { t = 1 }) end, "emit: field names 't' and 'kind' are reserved")
      assert.has_error(function() fb.emit("x", { f = print }) end, "emit: cannot log a function value")
      assert.has_error(function() fb.emit("x", { [1.5] = 1, a = 1 }) end)
      assert.has_error(function() fb.emit("", {}) end)
    end, { virtual_time = true, seed = 1, events = path })
    local got = lines(slurp(path))
    os.remove(path)
    assert.are.equal(2, #got) -- run_start, run_end
    fb.emit("nothing", { a = 1 }) -- no sink: a no-op
  end)

  it("logs put's name, value pairs as emit logs a table of them", function()
    local core -- the runtime's module table, as http_spec reaches it
    for i = 1, 64 do
      local name, v = debug.getupvalue(fb.reporter, i)
      if name == "core" then core = v break end
    end
    local events = core.import "fusebox.events"
    local path = os.tmpname()
    fb.run(function()
      fb.emit("call_end", { service = "a", call = 3, outcome = "failure", error = "boom", late = true,
        latency = 0.25, list = { 1, { x = "y" } } })
      events.put("call_end", "service", "a", "call", 3, "outcome", "failure", "error", "boom",
        "late", true, "latency", 0.25, "list", { 1, { x = "y" } }, "result", nil)
      events.put("call_start")
      assert.has_error(function() events.put("x", "t", 1) end, "emit: field names 't' and 'kind' are reserved")
      assert.has_error(function() events.put("x", "a", 1, "a", 2) end, "emit: field 'a' given twice")
      assert.has_error(function() events.put("x", "a") end, "put: a field name without a value (2 arguments)")
      assert.has_error(function() events.put("x", 1, 2) end, "emit: field names must be strings, got a number")
      assert.has_error(function() events.put("x", "f", print) end, "emit: cannot log a function value")
    end, { virtual_time = true, seed = 1, events = path })
    local got = lines(slurp(path))
    os.remove(path)
    local want = '{"t":0,"kind":"call_end","call":3,"error":"boom","late":true,"latency":0.25,'
      .. '"list":[1,{"x":"y"}],"outcome":"failure","service":"a"}'
    assert.are.equal(want, got[2])
    assert.are.equal(want, got[3])
    assert.are.equal('{"t":0,"kind":"call_start"}', got[4])
    assert.are.equal(5, #got) -- and run_end: no half events
    assert.truthy(got[5]:find('"calls":2,"successes":0,"failures":2', 1, true), got[5])
    events.put("nothing", "a", 1) -- no sink: a no-op
  end)

  it("says when the file cannot be created", function()
    local ok, err = pcall(fb.run, function() end, { events = "/nonexistent/dir/x.jsonl" })
    assert.is_false(ok)
    assert.truthy(err:find("cannot create events file '/nonexistent/dir/x.jsonl'", 1, true), err)
  end)

  it("is byte-identical for the same seed, and differs for another", function()
    local function run(seed)
      local path = os.tmpname()
      local _, err, code = T.cli(string.format(
        "run --virtual-time --seed %d --events %s tests/fixtures/events_scenario.lua", seed, path))
      assert.are.equal(0, code, err)
      local log = slurp(path)
      os.remove(path)
      return log, err
    end
    local a, summary = run(4)
    local b = run(4)
    assert.is_true(#lines(a) > 300)
    assert.are.equal(a, b)
    assert.are_not.equal(a, (run(5)))
    for _, kind in ipairs { "run_start", "register", "expire", "pick", "call_start", "call_end",
                            "reject", "state_change", "instance", "run_end" } do
      assert.truthy(a:find('"kind":"' .. kind .. '"', 1, true), kind)
    end
    assert.truthy(summary:find("fusebox: summary after %d+%.%d+s: %d+ calls, %d+ successes, %d+ failures, %d+ timeouts, %d+ rejections"), summary)
    assert.truthy(summary:find("OPEN %d+%.%d+s"), summary)
  end)

  it("prints the summary alone with --summary", function()
    local out, err, code = T.cli("run --virtual-time --seed 1 --summary tests/fixtures/events_scenario.lua")
    assert.are.equal(0, code)
    assert.are.equal("", out)
    assert.truthy(err:find("calls,", 1, true), err)
  end)
end)

describe("fusebox test", function()
  it("runs a directory of scenarios as TAP with a summary line", function()
    local out, _, code = T.cli("test tests/scenarios")
    assert.are.equal(0, code, out)
    assert.truthy(out:find("^1%.%.%d+\n"), out)
    assert.truthy(out:find("\nok 1 %- tests/scenarios/"), out)
    assert.truthy(out:find("\n%d+ passed, 0 failed\n$"), out)
  end)

  it("shows a failure's time and seed and the command that replays it", function()
    local out, _, code = T.cli("test --seed 3 tests/fixtures/failing_scenario.lua tests/scenarios/breaker_opens.lua")
    assert.are.equal(1, code)
    assert.truthy(out:find("not ok 1 - tests/fixtures/failing_scenario.lua", 1, true), out)
    assert.truthy(out:find("ok 2 - tests/scenarios/breaker_opens.lua", 1, true), out)
    local t = out:match("failed at t=(%d+%.%d+) %(virtual time%), seed 3")
    assert.truthy(t, out)
    local msg = out:match("#   ([^\n]*expectation failed at t=[^\n]*)")
    assert.truthy(msg and msg:find("(seed 3): call ", 1, true), out)
    local cmd = out:match("replay: fusebox (run %-%-virtual%-time %-%-seed 3 [^\n]+)")
    assert.are.equal("run --virtual-time --seed 3 tests/fixtures/failing_scenario.lua", cmd)
    assert.truthy(out:find("\n1 passed, 1 failed\n$"), out)
    local _, err, rcode = T.cli(cmd) -- the replay fails the same way, at the same time
    assert.are.equal(1, rcode)
    assert.truthy(err:find(msg, 1, true), err)
    local _, _, other = T.cli("test --seed 4 tests/fixtures/failing_scenario.lua")
    assert.are.equal(1, other)
  end)

  it("rejects bad usage", function()
    local _, err, code = T.cli("test --seed x tests/scenarios")
    assert.are.equal(2, code)
    assert.truthy(err:find("--seed needs an integer in 0..18446744073709551615", 1, true), err)
    _, err, code = T.cli("test /nonexistent/scenarios")
    assert.are.equal(2, code)
    assert.truthy(err:find("cannot read '/nonexistent/scenarios'", 1, true), err)
    for _, args in ipairs { "--timeout 0", "--timeout x", "--max-virtual-time -1", "--timeout" } do
      local out
      out, err, code = T.cli("test " .. args .. " tests/scenarios")
      assert.are.equal(2, code, args)
      assert.are.equal("", out, args)
      assert.truthy(err:find("^fusebox: [^\n]*positive number of seconds[^\n]*\n$"), err)
    end
  end)

  it("is an error on a directory without scenarios, in one line", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir " .. dir) == 0 or true)
    local out, err, code = T.cli("test " .. dir)
    os.execute("rmdir " .. dir)
    assert.are.equal(2, code)
    assert.are.equal("", out)
    assert.are.equal("fusebox: no scenarios (.lua files) in '" .. dir .. "'\n", err)
  end)

  it("stops a loop that never yields at its wall-clock limit, saying where", function()
    local t0 = os.time()
    local out, _, code = T.cli("test --timeout 1 tests/fixtures/limits/spin.lua tests/scenarios/breaker_opens.lua")
    assert.is_true(os.time() - t0 < 20, "took " .. (os.time() - t0) .. " s")
    assert.are.equal(1, code, out)
    assert.truthy(out:find("not ok 1 - tests/fixtures/limits/spin.lua\n#   failed at t=3.000 (virtual time), seed 1:\n"
      .. "#   tests/fixtures/limits/spin.lua:6: wall-clock limit of 1.000 s reached (a loop that never yields?)", 1, true), out)
    assert.truthy(out:find("replay: fusebox run --virtual-time --seed 1 tests/fixtures/limits/spin.lua", 1, true), out)
    assert.truthy(out:find("\nok 2 - tests/scenarios/breaker_opens.lua\n", 1, true), out) -- the next one still runs
    assert.truthy(out:find("\n1 passed, 1 failed\n$"), out)
  end)

  it("stops a never-yielding loop even when the scenario catches the error", function()
    local out, _, code = T.cli("test tests/fixtures/limits/caught_spin.lua")
    assert.are.equal(1, code, out)
    assert.truthy(out:find("failed at t=2.000 (virtual time), seed 1:\n"
      .. "#   tests/fixtures/limits/caught_spin.lua:7: wall-clock limit of 1.000 s reached", 1, true), out)
    assert.truthy(out:find("\n0 passed, 1 failed\n$"), out)
  end)

  it("stops a scenario at its virtual-time limit, with where its coroutines were", function()
    local out, _, code = T.cli("test --seed 7 tests/fixtures/limits/sleeps_forever.lua")
    assert.are.equal(1, code, out)
    assert.truthy(out:find("failed at t=100.000 (virtual time), seed 7:\n"
      .. "#   fusebox: virtual time limit of 100.000 s reached, the run still going", 1, true), out)
    local _, n = out:gsub("sleeps_forever.lua:4: in function", "")
    assert.are.equal(2, n, out) -- both coroutines, at their line
    assert.truthy(out:find("replay: fusebox run --virtual-time --seed 7 tests/fixtures/limits/sleeps_forever.lua", 1, true), out)
    -- the flag applies to files that do not set their own; the default is a virtual day
    local path = os.tmpname() .. ".lua"
    local f = assert(io.open(path, "w"))
    f:write('local fb = require "fusebox"\nwhile true do fb.sleep(3600) end\n')
    f:close()
    out = T.cli("test " .. path)
    assert.truthy(out:find("failed at t=86400.000 (virtual time)", 1, true), out)
    out = T.cli("test --max-virtual-time 7200 " .. path)
    assert.truthy(out:find("failed at t=7200.000 (virtual time)", 1, true), out)
    out = T.cli("test --max-virtual-time 7200 tests/fixtures/limits/sleeps_forever.lua")
    assert.truthy(out:find("failed at t=100.000 (virtual time)", 1, true), out)
    os.remove(path)
  end)

  it("fails a scenario whose header line is wrong", function()
    local out, _, code = T.cli("test tests/fixtures/limits/bad_header.lua")
    assert.are.equal(1, code, out)
    assert.truthy(out:find("not ok 1 - tests/fixtures/limits/bad_header.lua\n"
      .. "#   its '-- fusebox test:' line: --timeout needs a positive number of seconds, got 'soon'\n", 1, true), out)
  end)

  it("prints the plan first, so a run killed from outside is still readable", function()
    local out = os.tmpname()
    os.execute(string.format("timeout -s KILL 2 %s test --timeout 60 tests/fixtures/limits/spin.lua >%s 2>/dev/null",
      T.fusebox_bin, out))
    local f = assert(io.open(out))
    local s = f:read("*a")
    f:close()
    os.remove(out)
    assert.are.equal("1..1\n", s)
  end)

  it("prints huge virtual times briefly, in the runner and in expectations", function()
    local path = os.tmpname() .. ".lua"
    local f = assert(io.open(path, "w"))
    f:write('-- fusebox test: --max-virtual-time 1e10\nlocal fb = require "fusebox"\nfb.sleep(1e9)\nfb.expect(false, "late")\n')
    f:close()
    local out = T.cli("test " .. path)
    os.remove(path)
    assert.truthy(out:find("failed at t=1e+09 (virtual time), seed 1:", 1, true), out)
    assert.truthy(out:find("expectation failed at t=1e+09 (seed 1): late", 1, true), out)
    assert.is_true(#out < 2000, out)
  end)

  it("takes every 64-bit seed exactly, and shows it in the replay command", function()
    local out, _, code = T.cli("test --seed 18446744073709551615 tests/fixtures/failing_scenario.lua")
    assert.are.equal(1, code)
    assert.truthy(out:find("(seed 18446744073709551615): ", 1, true), out)
    assert.truthy(out:find("replay: fusebox run --virtual-time --seed 18446744073709551615 ", 1, true), out)
  end)
end)
