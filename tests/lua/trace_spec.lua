-- fb.trace.read (events files, nginx access logs) and fb.sim.replay.
local fb = require "fusebox"

local function tmpfile(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

local function calls_of(tr)
  local out = {}
  for n = 1, tr.n do
    out[n] = string.format("%.3f %s %.3f %s", tr.t[n], tr.instances[tr.inst[n]].name,
      tr.latency[n], tr.outcomes[tr.outcome[n]])
  end
  return out
end

describe("the done event", function()
  it("logs each outcome of lb:done, lb:call and fb.client, and the report reads it", function()
    local path = os.tmpname()
    fb.run(function()
      local reg = fb.registry { heartbeat_timeout = 30 }
      local lb = fb.balancer(reg, "round_robin")
      reg:register("api", "10.0.0.1", 80)
      lb:done(lb:pick("api"), false, 0.25)
      pcall(lb.call, lb, "api", function() fb.sleep(0.5); error("boom", 0) end)
      local c = fb.client { balancer = lb }
      c:call("api", function() fb.sleep(1); return "ok" end)
    end, { virtual_time = true, seed = 1, events = path })
    local log = T.slurp(path)
    local page = os.tmpname()
    local _, err, code = T.cli("report " .. path .. " -o " .. page)
    local html = T.slurp(page)
    os.remove(path)
    os.remove(page)
    local done = {}
    for line in log:gmatch("[^\n]+") do
      if line:find('"kind":"done"', 1, true) then done[#done + 1] = line end
    end
    assert.are.same({
      '{"t":0,"kind":"done","host":"10.0.0.1","latency":0.25,"ok":false,"port":80,"service":"api"}',
      '{"t":0.5,"kind":"done","error":"boom","host":"10.0.0.1","latency":0.5,"ok":false,"port":80,"service":"api"}',
      '{"t":1.5,"kind":"done","host":"10.0.0.1","latency":1,"ok":true,"port":80,"service":"api"}',
    }, done)
    assert.are.equal(0, code)
    assert.falsy(err:find("skipped", 1, true), err)
    -- a kind the report knows: neither skipped nor "not drawn"
    assert.truthy(html:find('<section id="skipped" data-count="0" data-unknown="0">', 1, true))
  end)
end)

describe("fb.trace.read", function()
  it("reads an nginx access log, one call per try, and counts what it skips", function()
    local tr = fb.trace.read("tests/fixtures/nginx_trace.log")
    assert.are.equal("nginx", tr.format)
    assert.are.same({
      "1764583199.998 127.0.0.1:18081 0.011 success",
      "1764583199.245 127.0.0.1:18082 1.001 timeout",
      "1764583200.246 127.0.0.1:18083 0.004 success",
      "1764583201.296 127.0.0.1:18081 0.000 http 502",
      "1764583201.296 127.0.0.1:18082 0.001 http 503",
      "1764583201.297 127.0.0.1:18083 0.002 success",
      "1764583201.680 [::1]:18084 0.019 success",
      "1764583201.750 127.0.0.1:18081 0.000 failure",
      "1764583202.870 127.0.0.1:18083 0.030 success",
    }, calls_of(tr))
    assert.are.same({ 1, 2, 4, 7, 8, 9 }, tr.requests) -- the first try of each request
    assert.are.equal(10, tr.lines)
    assert.are.equal(3, tr.skipped)
    assert.are.same({ bad_line = 1, bad_tries = 1, no_upstream = 1, no_instance = 1 }, tr.bad)
    assert.are.same({ 6 }, tr.first_bad.bad_line)
    assert.are.equal("::1", tr.instances[4].host)
    assert.are.equal(18084, tr.instances[4].port)
    assert.truthy(fb.trace.summary(tr):find("9 calls on 4 instances", 1, true))
    assert.truthy(fb.trace.summary(tr):find("1 bad_line (lines 6)", 1, true), fb.trace.summary(tr))
  end)

  it("reads the done events of an events file, skipping bad lines", function()
    local path = tmpfile(table.concat({
      '{"t":0,"kind":"run_start","seed":1}',
      '{"t":1.5,"kind":"done","host":"10.0.0.1","latency":0.5,"ok":true,"port":80,"service":"api"}',
      '{"t":2,"kind":"done","error":"timeout: 0.3s","host":"10.0.0.2","latency":0.3,"ok":false,"port":80,"service":"api"}',
      '{"t":2.5,"kind":"done","host":"10.0.0.2","latency":0.1,"ok":false,"port":80}',
      '{"t":3,"kind":"done","host":"10.0.0.2","latency":0.1,"ok":"yes","port":80}',
      '{"t":3,"kind":"done","host":"10.0.0.2","latency":-1,"ok":true,"port":80}',
      '{"t":3,"kind":"done","host":"10.0.0.2","latency":1,"ok":true,"port":0}',
      '{"t":3,"kind":"do',
      '{"t":4,"kind":"done","host":"10.0.0.3","latency":0.1,"ok":true,"port":80,"service":"other"}',
      '{"t":4,"kind":"pick","host":"10.0.0.3","port":80,"service":"other"}',
      '{"kind":"done","host":"10.0.0.3","latency":0.1,"ok":true,"port":80}',
    }, "\n"))
    local tr = fb.trace.read(path)
    assert.are.equal("events", tr.format)
    assert.are.same({
      "1.000 10.0.0.1:80 0.500 success",
      "1.700 10.0.0.2:80 0.300 timeout",
      "2.400 10.0.0.2:80 0.100 failure",
      "3.900 10.0.0.3:80 0.100 success",
    }, calls_of(tr))
    assert.are.equal("api", tr.instances[1].service)
    assert.are.same({ bad_event = 4, not_json = 1 }, tr.bad)
    assert.are.same({ 5, 6, 7, 11 }, tr.first_bad.bad_event)
    local only = fb.trace.read(path, { service = "api" })
    assert.are.equal(2, only.n)
    os.remove(path)
  end)

  it("reads a done line as the JSON parser reads it, in its fast path too", function()
    -- hex and inf are no JSON: the line is not a call; an escape may spell
    -- "done"; a trailing CR or blank line is no line of its own; a NUL
    -- is no line to pass over (tests/fuzz/crashes/trace_scan)
    local path = tmpfile(table.concat({
      '{"t":0x10,"kind":"done","host":"10.0.0.1","latency":0.5,"ok":true,"port":80}',
      '{"t":1,"kind":"done","host":"10.0.0.1","latency":inf,"ok":true,"port":80}',
      '{"t":2,"kind":"do\\u006ee","host":"10.0.0.2","latency":0.5,"ok":true,"port":80}',
      '{"t":3,"kind":"done","host":"10.0.0.3","latency":2.5e-1,"ok":false,"port":8.0e1}\r',
      '   ',
      '{"t":4,"kind":"pick","host":"10.0.0.3","port":80}',
      '{"t":5,"kind":"done\0\0","host":"10.0.0.1","latency":0.5,"ok":true,"port":80}',
    }, "\n"))
    local tr = fb.trace.read(path)
    assert.are.same({ "1.500 10.0.0.2:80 0.500 success", "2.750 10.0.0.3:80 0.250 failure" }, calls_of(tr))
    assert.are.same({ not_json = 3 }, tr.bad) -- the NUL: the decoder refuses it
    assert.are.equal(6, tr.lines)
    os.remove(path)
  end)

  it("survives hostile lines in either format, skipping each it cannot use", function()
    local lines = {
      '{"t":1e999,"kind":"done","host":"h","latency":0,"ok":true,"port":1}',
      '{"t":1,"kind":"done","host":"h\\"x","latency":0,"ok":true,"port":1}',
      '{"t":1,"kind":"done","host":"","latency":0,"ok":true,"port":1}',
      '{"t":1,"kind":"done","host":"h","latency":0,"ok":true,"port":1.5}',
      '{"t":1,"kind":"done","host":"h","latency":0,"ok":true,"port":1,"service":"a\\"b"}',
      '{"t":1,"kind":"done","host":{"a":1},"latency":0,"ok":true,"port":1}',
      '{"t":1,"kind":"done","host":"h","latency":0,"ok":true,"port":1}x',
      '[1,2,3]', '"done"', '{"t":"1","kind":"done"}', string.rep("[", 5000),
      '1.0 0.1 "h:1, h:2, ' .. string.rep("h:3, ", 100) .. 'h:4" "200" "0.1"',
      '1.0 0.1 "h:99999" "200" "0.1"', '1.0 0.1 ":80" "200" "0.1"',
      '1.0 0.1 "h:1" "200" "-1"', '1.0 0.1 "h:1" "2x" "0.1"',
    }
    for i = 1, 200 do -- bytes of every kind, newlines aside
      local b = {}
      for j = 1, (i * 7) % 97 + 1 do b[j] = string.char((i * 31 + j * 17) % 256) end
      lines[#lines + 1] = (table.concat(b):gsub("\n", " "))
    end
    local path = tmpfile(table.concat(lines, "\n"))
    for _, fmt in ipairs({ "events", "nginx" }) do
      local tr = fb.trace.read(path, { format = fmt })
      local skipped = 0
      for why, k in pairs(tr.bad) do if why ~= "no_instance" then skipped = skipped + k end end
      assert.are.equal(tr.skipped, skipped)
      assert.truthy(tr.skipped > 0 and tr.skipped <= tr.lines)
      for n = 1, tr.n do
        assert.truthy(tr.latency[n] >= 0 and tr.t[n] == tr.t[n])
      end
    end
    local ev = fb.trace.read(path, { format = "events" })
    -- the escaped host and service went through the JSON parser, whole
    assert.are.same({ 'h"x:1', "h:1" }, { ev.instances[1].name, ev.instances[2].name })
    assert.are.equal('a"b', ev.instances[2].service)
    assert.are.equal(2, ev.n)
    os.remove(path)
  end)

  it("stops at its limits with clear errors, and skips a line too long", function()
    assert.has_error(function()
      fb.trace.read("tests/fixtures/nginx_trace.log", { max_instances = 2 })
    end, "trace.read: tests/fixtures/nginx_trace.log line 2: more than 2 instances (the max_instances option)")
    assert.has_error(function()
      fb.trace.read("tests/fixtures/nginx_trace.log", { max_calls = 3 })
    end, "trace.read: tests/fixtures/nginx_trace.log line 3: more than 3 calls (the max_calls option)")
    local long = string.rep("x", 300000)
    local path = tmpfile('{"t":1,"kind":"done","host":"h","latency":0,"ok":true,"port":1}\n'
      .. long .. "\n" .. long .. '\n{"t":2,"kind":"done","host":"h","latency":0,"ok":true,"port":1}')
    local tr = fb.trace.read(path, { max_line = 1000 })
    assert.are.equal(2, tr.n)
    assert.are.same({ too_long = 2 }, tr.bad)
    assert.are.same({ 2, 3 }, tr.first_bad.too_long)
    os.remove(path)
    assert.has_error(function() fb.trace.read("/nonexistent/x.log") end,
      "trace.read: cannot read '/nonexistent/x.log': /nonexistent/x.log: No such file or directory")
    assert.has_error(function() fb.trace.read("x", { format = "csv" }) end,
      "bad argument #2 to 'read' (format must be \"events\" or \"nginx\", got csv)")
    assert.has_error(function() fb.trace.read("x", { max_line = 0 }) end,
      "bad argument #2 to 'read' (max_line must be a positive integer, got 0)")
    assert.has_error(function() fb.trace.read("x", { bogus = 1 }) end,
      "bad argument #2 to 'read' (unknown option 'bogus' (known: format, max_calls, max_instances, max_line, service))")
    assert.has_error(function() fb.trace.read(nil) end, "bad argument #1 to 'read' (path must be a string, got nil)")
  end)
end)

-- Per (instance, bucket, outcome) counts of calls, keyed "host:port b outcome".
local function bucket_counts(tr, width)
  local c = {}
  for n = 1, tr.n do
    local key = string.format("%s %d %s", tr.instances[tr.inst[n]].name,
      math.floor((tr.t[n] - tr.t0) / width), tr.outcomes[tr.outcome[n]])
    c[key] = (c[key] or 0) + 1
  end
  return c
end

-- The backend killed at 0.6 s: the one with failures and no success
-- after 0.7 s.
local function killed_of(tr)
  local ok, failed = {}, {}
  for n = 1, tr.n do
    if tr.t[n] - tr.t0 > 0.7 then
      local name = tr.instances[tr.inst[n]].name
      if tr.outcome[n] == 1 then ok[name] = true else failed[name] = true end
    end
  end
  for name in pairs(failed) do
    if not ok[name] then return name end
  end
end

describe("fb.sim.replay", function()
  local recorded -- one real-time run, read once: its trace
  setup(function()
    local events = os.tmpname()
    local _, err, code = T.cli("run --events " .. events .. " tests/fixtures/trace_record.lua")
    assert(code == 0, err)
    recorded = fb.trace.read(events)
    os.remove(events)
  end)

  it("replays a real-time run's trace with its per-instance outcome counts per bucket", function()
    local tr, width = recorded, 0.1
    assert.are.equal(3, #tr.instances)
    assert.are.equal(0, tr.skipped)
    assert.truthy(tr.n > 300, tr.n)
    local want = bucket_counts(tr, width)
    assert.truthy(killed_of(tr), "a backend failed after it was killed")
    local got, per = {}, {}
    T.vrun(function()
      local rp = fb.sim.replay { trace = tr, bucket = width }
      rp:arrivals(function(call)
        local b = math.floor(fb.now() / width)
        local _, err = rp:call(call.instance)
        local key = string.format("%s %d %s", call.instance, b, err or "success")
        got[key] = (got[key] or 0) + 1
        local pb = call.instance .. " " .. b
        per[pb] = (per[pb] or 0) + 1
      end)
    end, 7)
    -- Each replayed call draws its outcome from its bucket's frequencies
    -- p = k / n: the count is binomial, so it stays within 4 standard
    -- deviations, sqrt(n p (1 - p)), of k (plus 1 for a call landing in
    -- a neighbouring bucket by a rounding of its time).
    local checked = 0
    for key, k in pairs(want) do
      local name, b = key:match("^(%S+) (%d+)")
      local n = per[name .. " " .. b] or 0
      local p = k / math.max(n, 1)
      local sigma = math.sqrt(n * p * (1 - p))
      local diff = math.abs((got[key] or 0) - k)
      assert.truthy(diff <= 4 * sigma + 1, string.format("%s: trace %d, replay %d of %d", key, k, got[key] or 0, n))
      checked = checked + 1
    end
    for key, k in pairs(got) do
      assert.truthy(want[key] or k <= 1, key .. " replayed but not in the trace")
    end
    assert.truthy(checked >= 20, checked)
  end)

  it("runs a production policy, balancer and breakers, unchanged against the trace", function()
    local killed = killed_of(recorded)
    local ok_calls, failed, m = 0, 0, nil
    T.vrun(function()
      local reg = fb.registry { heartbeat_timeout = 30 }
      local rp = fb.sim.replay { trace = recorded, bucket = 0.1, registry = reg }
      local c = fb.client { registry = reg, balancer = "round_robin",
        per_instance_breaker = { failure_threshold = 5, timeout = 0.2 } }
      rp:arrivals(function()
        local v = c:call("api", function(inst) return rp:call(inst) end)
        if v then ok_calls = ok_calls + 1 else failed = failed + 1 end
      end)
      fb.sleep(1.3)
      local host, port = killed:match("^(.+):(%d+)$")
      m = c:breaker(host, tonumber(port)):metrics()
    end, 3)
    assert.truthy(ok_calls > failed * 3, ok_calls .. " vs " .. failed)
    -- the killed backend's breaker opened (ejecting it) and, as every
    -- replayed call to it fails from then on, never closed again
    assert.are_not.equal("CLOSED", m.state, fb.json_encode(m))
    assert.truthy(m.failures >= 5, m.failures)
  end)

  it("starts arrivals in time order, ties in trace order, however the trace is ordered", function()
    -- 5000 calls at times out of order, many tied (a reversed stretch,
    -- runs, shuffles): the order table.sort gives by (time, call number)
    local tr = { n = 0, t = {}, inst = {}, latency = {}, outcome = {}, outcomes = { "success" },
      instances = {}, t0 = 0, t1 = 0 }
    for i = 1, 7 do -- a tie's order shows in its instances
      tr.instances[i] = { name = "10.0.0." .. i .. ":80", host = "10.0.0." .. i, port = 80 }
    end
    local x = 12345
    for n = 1, 5000 do
      x = (x * 1103515245 + 12345) % 2147483648
      local t = n <= 1000 and (1000 - n) / 100 or n <= 3000 and math.floor(n / 7) / 100 or (x % 500) / 100
      tr.n, tr.t[n], tr.inst[n], tr.latency[n], tr.outcome[n] = n, t, n % 7 + 1, 0.001, 1
      tr.t1 = math.max(tr.t1, t)
    end
    local want = {}
    for n = 1, tr.n do want[n] = n end
    table.sort(want, function(a, b)
      if tr.t[a] ~= tr.t[b] then return tr.t[a] < tr.t[b] end
      return a < b
    end)
    local got = {}
    T.vrun(function()
      local rp = fb.sim.replay { trace = tr }
      rp:arrivals(function(call) got[#got + 1] = call.t .. " " .. call.instance end)
    end, 1)
    assert.are.equal(tr.n, #got)
    for k = 1, tr.n do
      local n = want[k]
      local expect = tr.t[n] .. " " .. tr.instances[tr.inst[n]].name
      if got[k] ~= expect then
        error(string.format("arrival %d: %s, want call %d: %s", k, got[k], n, expect))
      end
    end
  end)

  it("replays byte for byte under one seed, and differently under another", function()
    local function run(seed)
      local path = os.tmpname()
      fb.run(function()
        local rp = fb.sim.replay { trace = recorded, bucket = 0.05, samples = 8 }
        rp:arrivals(function(call) rp:call(call.instance) end)
      end, { virtual_time = true, seed = seed, events = path })
      local log = T.slurp(path)
      os.remove(path)
      return log
    end
    local a, b, c = run(1), run(1), run(2)
    assert.truthy(#a > 10000)
    assert.are.equal(a, b)
    assert.are_not.equal(a, c)
  end)

  it("fills a bucket without calls from the one before, and checks its options", function()
    local path = tmpfile(table.concat({
      '{"t":0.5,"kind":"done","host":"h","latency":0.5,"ok":true,"port":1}',
      '{"t":3.1,"kind":"done","host":"h","latency":0.1,"ok":false,"port":1}',
    }, "\n"))
    local seen = {}
    T.vrun(function()
      local rp = fb.sim.replay { trace = path }
      for _, at in ipairs({ 0, 1.5, 2.5, 3.5, 100 }) do
        fb.sleep(at - fb.now())
        local t0 = fb.now()
        local v, err = rp:call("h:1")
        seen[#seen + 1] = string.format("%g %s %g", at, tostring(v or err), fb.now() - t0)
      end
      assert.has_error(function() rp:call("h:2") end, "bad argument #1 to 'call' (not an instance of the trace (got h:2))")
      assert.has_error(function() fb.sim.replay { trace = path, bucket = 0 } end,
        "bad argument #1 to 'replay' (bucket must be a positive number, got 0)")
      assert.has_error(function() fb.sim.replay { trace = path, bucket = 1e-9 } end,
        "bad argument #1 to 'replay' (bucket must be wide enough for at most max_buckets (1000000) buckets over the trace's 3 s, got 1e-09)")
      assert.has_error(function() fb.sim.replay { trace = path, registry = fb.registry {} } end,
        "bad argument #1 to 'replay' (service must be given: instance h:1 of trace '" .. path .. "' has no service)")
      assert.has_error(function() fb.sim.replay { trace = 3 } end,
        "bad argument #1 to 'replay' (trace must be a path or a trace from fb.trace.read, got number)")
      assert.has_error(function() fb.sim.replay { trace = "/nonexistent" } end,
        "bad argument #1 to 'replay' (trace.read: cannot read '/nonexistent': /nonexistent: No such file or directory)")
      assert.has_error(function() fb.sim.replay { trace = path, bogus = 1 } end)
    end)
    os.remove(path)
    assert.are.same({ "0 ok 0.5", "1.5 ok 0.5", "2.5 ok 0.5", "3.5 failure 0.1", "100 failure 0.1" }, seen)
  end)
end)
