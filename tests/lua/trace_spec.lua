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
