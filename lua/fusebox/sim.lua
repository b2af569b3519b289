-- fusebox/sim.lua -- fb.sim: unreliable services and instances that live
-- and die, for scenarios run in virtual time.
--
-- A service model is declared once and called like a function:
--   local svc = fb.sim.service { failure_rate = 0.7, latency = 0.02 }
--   local value, err = svc(...)   -- sleeps the drawn latency first
-- Failures come back as values (nil, err): a raised error costs about a
-- microsecond in LuaJIT, which alone would cap a simulation near a million
-- calls a second. `raise = true` raises err instead.
--
-- Every model draws from its own random stream. A named model's stream
-- depends only on the run's seed and its name (and how many models of
-- that name came before it in the run), so adding, removing or reordering
-- other models never changes its draws; an unnamed model's stream is
-- numbered in creation order, like a balancer's. Model times (outages, degrade, flap, recover_after) are
-- seconds since the model was made.

local core = select(2, ...)
local base = core.import "fusebox.base"
local events = core.import "fusebox.events"
local breaker = core.import "fusebox.breaker"
local policy = core.import "fusebox.policy"
local trace = core.import "fusebox.trace"
local ffi = require "ffi"

local api, now, check_arg, check_self, timed_out = base.api, base.now, base.check_arg, base.check_self, base.timed_out
local abandoned, orphans = policy.abandoned, policy.orphans
local rt = ffi.cast("fb_runtime *", core.rt)
local breaker_mt = core.meta.breaker
local host = core.import "fusebox.host"
local sleep, wait, wake, daemon = host.sleep, host.wait, host.wake, host.daemon
local events_on, logged, emit, put = events.on, events.logged, events.emit, events.put
local call_start, call_end, request = events.call_start, events.call_end, events.request
local format, type, error, pcall, tostring = string.format, type, error, pcall, tostring
local pairs, ipairs, select, setmetatable, getmetatable = pairs, ipairs, select, setmetatable, getmetatable
local log, exp, sqrt, cos, floor, pi = math.log, math.exp, math.sqrt, math.cos, math.floor, math.pi
local sort = table.sort

local M = {}

-- ------------------------------------------------------------ streams

local stream = {}
stream.__index = stream
local stream_name = "fusebox.sim.stream"

-- stream() -> an independent random stream with :random([m [, n]])
function M.stream()
  local r = ffi.new("fb_rng")
  api.stream_init(rt, r)
  return setmetatable({ rng = r, draw = base.random(r) }, stream)
end

-- s:random([m [, n]]): math.random's contract on this stream
function stream:random(...)
  check_self(self, stream, stream_name, "random")
  return self.draw(...)
end

-- ---------------------------------------------------------- validation

-- Raised as plain strings inside build(); service() re-raises them at the
-- user's call with the field named.
local function bad(field, want, got)
  error(format("%s must be %s, got %s", field, want, tostring(got)), 0)
end

local function number(spec, key, field, lo, hi, default)
  local v = spec[key]
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v < lo or v > hi then
    local want = hi == math.huge and format("a number >= %g", lo)
      or format("a number in [%g, %g]", lo, hi)
    bad(field, want, v)
  end
  return v
end

local function positive(spec, key, field, default)
  local v = spec[key]
  if v == nil then return default end
  if type(v) ~= "number" or not (v > 0) or v == math.huge then
    bad(field, "a positive number", v)
  end
  return v
end

local function check_fields(spec, field, known)
  if type(spec) ~= "table" then bad(field, "a table", type(spec)) end
  for k in pairs(spec) do
    if not known[k] then
      local names = {}
      for name in pairs(known) do names[#names + 1] = name end
      sort(names)
      error(format("unknown field '%s%s' (known: %s)", field == "" and "" or field .. ".",
        tostring(k), table.concat(names, ", ")), 0)
    end
  end
end

local function set(...)
  local s = {}
  for i = 1, select("#", ...) do s[select(i, ...)] = true end
  return s
end

-- ---------------------------------------------------------- latencies

local Z99 = 2.3263478740408408 -- the standard normal's 99th percentile

local LATENCY_FIELDS = {
  constant = set("dist", "value"),
  uniform = set("dist", "min", "max"),
  exponential = set("dist", "mean"),
  lognormal = set("dist", "p50", "p99"),
}

-- Returns the latency law as (kind, a, b): constant a; uniform a + b*u;
-- exponential with mean a; lognormal exp(a + b*z).
local function build_latency(spec)
  if spec == nil then return "constant", 0, 0 end
  if type(spec) == "number" then
    return "constant", number({ v = spec }, "v", "latency", 0, math.huge), 0
  end
  check_fields(spec, "latency", set("dist", "value", "min", "max", "mean", "p50", "p99"))
  local dist = spec.dist
  local fields = LATENCY_FIELDS[dist]
  if not fields then
    bad("latency.dist", "one of constant, uniform, exponential, lognormal", dist)
  end
  check_fields(spec, "latency", fields)
  if dist == "constant" then
    return dist, number(spec, "value", "latency.value", 0, math.huge, 0), 0
  elseif dist == "uniform" then
    local lo = number(spec, "min", "latency.min", 0, math.huge, 0)
    local hi = number(spec, "max", "latency.max", lo, math.huge)
    if hi == nil then bad("latency.max", "a number", nil) end
    return dist, lo, hi - lo
  elseif dist == "exponential" then
    return dist, positive(spec, "mean", "latency.mean") or bad("latency.mean", "a positive number", nil), 0
  end
  local p50 = positive(spec, "p50", "latency.p50") or bad("latency.p50", "a positive number", nil)
  local p99 = positive(spec, "p99", "latency.p99") or bad("latency.p99", "a positive number", nil)
  if p99 < p50 then bad("latency.p99", format(">= latency.p50 (%g)", p50), p99) end
  return dist, log(p50), (log(p99) - log(p50)) / Z99
end

local function draw_latency(m, r)
  local kind = m.dist
  if kind == "constant" then return m.la end
  local u = api.rng_double(r)
  if kind == "uniform" then return m.la + m.lb * u end
  if kind == "exponential" then return -m.la * log(1 - u) end
  -- Box-Muller: one normal from two uniforms; 1 - u is in (0, 1].
  local z = sqrt(-2 * log(1 - u)) * cos(2 * pi * api.rng_double(r))
  return exp(m.la + m.lb * z)
end

-- ------------------------------------------------------- the schedule

local function build_errors(spec)
  if spec == nil then return { "service call failed" }, { 1 }, 1 end
  if type(spec) ~= "table" then bad("errors", "a table of kind = weight", type(spec)) end
  local kinds = {}
  for kind, w in pairs(spec) do
    if type(kind) ~= "string" then bad("errors", "keyed by error kind (strings)", kind) end
    number(spec, kind, "errors." .. kind, 0, math.huge)
    kinds[#kinds + 1] = kind
  end
  sort(kinds) -- pairs() order is not reproducible; draws must be
  local cum, total = {}, 0
  for i, kind in ipairs(kinds) do
    total = total + spec[kind]
    cum[i] = total
  end
  if not (total > 0) then bad("errors", "weights with a positive sum", total) end
  return kinds, cum, total
end

local function build_outages(spec)
  if spec == nil then return nil end
  local shape = base.list_error(spec, "outages")
  if shape then error(shape, 0) end
  local out = {}
  for i, o in ipairs(spec) do
    local field = format("outages[%d]", i)
    check_fields(o, field, set("at", "duration"))
    local at = number(o, "at", field .. ".at", 0, math.huge)
    local d = positive(o, "duration", field .. ".duration")
    if at == nil or d == nil then bad(field, "{at = seconds, duration = seconds}", "a partial one") end
    out[#out + 1] = { at, at + d }
  end
  return out
end

local function build_degrade(spec, base_rate)
  if spec == nil then return nil end
  check_fields(spec, "degrade", set("from", "to", "latency_factor", "failure_rate"))
  local from = number(spec, "from", "degrade.from", 0, math.huge, 0)
  local to = number(spec, "to", "degrade.to", from, math.huge, from)
  return {
    from = from, to = to,
    factor = positive(spec, "latency_factor", "degrade.latency_factor", 1),
    rate = number(spec, "failure_rate", "degrade.failure_rate", 0, 1, base_rate),
  }
end

local function build_flap(spec)
  if spec == nil then return nil end
  check_fields(spec, "flap", set("period", "down", "start"))
  local period = positive(spec, "period", "flap.period") or bad("flap.period", "a positive number", nil)
  local down = positive(spec, "down", "flap.down") or bad("flap.down", "a positive number", nil)
  if down >= period then bad("flap.down", format("less than flap.period (%g)", period), down) end
  return { period = period, down = down, start = number(spec, "start", "flap.start", 0, math.huge, 0) }
end

-- ------------------------------------------------------------ services

local SERVICE_FIELDS = set("name", "failure_rate", "latency", "errors", "hang_rate",
  "hang_time", "outages", "degrade", "flap", "recover_after", "value", "raise")

local service_mt = {}
local nservices = 0

local function build(spec)
  check_fields(spec, "", SERVICE_FIELDS)
  local m = { calls = 0, successes = 0, failures = 0, timeouts = 0 }
  nservices = nservices + 1
  m.name = spec.name or ("service#" .. nservices)
  if type(m.name) ~= "string" then bad("name", "a string", type(m.name)) end
  m.failure_rate = number(spec, "failure_rate", "failure_rate", 0, 1, 0)
  m.hang_rate = number(spec, "hang_rate", "hang_rate", 0, 1, 0)
  m.hang_time = positive(spec, "hang_time", "hang_time", 3600)
  m.dist, m.la, m.lb = build_latency(spec.latency)
  m.kinds, m.cum, m.total = build_errors(spec.errors)
  m.outages = build_outages(spec.outages)
  m.degrade = build_degrade(spec.degrade, m.failure_rate)
  m.flap = build_flap(spec.flap)
  m.recover_at = number(spec, "recover_after", "recover_after", 0, math.huge, math.huge)
  m.value = spec.value == nil and "ok" or spec.value
  m.raise = spec.raise and true or false
  -- Anything that changes with time: checked per call only when present.
  m.timed = m.outages or m.degrade or m.flap or m.recover_at < math.huge
  return m
end

-- Returns failure rate, latency factor and a forced error (or nil) at
-- model time t.
local function conditions(m, t)
  if t >= m.recover_at then return 0, 1, nil end
  local rate, factor = m.failure_rate, 1
  local outages = m.outages
  if outages then
    for i = 1, #outages do
      local o = outages[i]
      if t >= o[1] and t < o[2] then return 1, 1, "unavailable" end
    end
  end
  local f = m.flap
  if f and t >= f.start and (t - f.start) % f.period >= f.period - f.down then
    return 1, 1, "unavailable"
  end
  local d = m.degrade
  if d and t >= d.from then
    local k = t >= d.to and 1 or (t - d.from) / (d.to - d.from)
    factor = 1 + (d.factor - 1) * k
    rate = rate + (d.rate - rate) * k
  end
  return rate, factor, nil
end

local function pick_error(m, r)
  local x, cum = api.rng_double(r) * m.total, m.cum
  for i = 1, #cum do
    if x < cum[i] then return m.kinds[i] end
  end
  return m.kinds[#cum]
end

-- Counts and logs the end of a call as its caller saw it: a hung call,
-- or any result after a timeout layer above gave up on the call, is a
-- timeout (a late result is logged late = true, with the timeout's
-- message; the service's own outcome goes in result).
local function settle(m, id, t0, err)
  local gave_up = orphans.n > 0 and abandoned()
  local timeout = err ~= nil and timed_out(err)
  if gave_up or timeout then
    m.timeouts = m.timeouts + 1
  elseif err then
    m.failures = m.failures + 1
  else
    m.successes = m.successes + 1
  end
  if events_on() then
    local outcome = err == nil and "success" or timeout and "timeout" or "failure"
    if gave_up then
      call_end(m.name, id, "timeout", gave_up, true, outcome, now() - t0)
    elseif err == nil or type(err) == "string" then
      call_end(m.name, id, outcome, err, false, nil, now() - t0)
    else -- a model function's error value of another type: put logs any
      put("call_end", "service", m.name, "call", id, "outcome", outcome, "error", err,
        "latency", now() - t0)
    end
  end
end

-- settle, then the call's results: its values, or nil, err (raised with
-- raise = true).
local function finish(m, id, t0, err, ...)
  settle(m, id, t0, err)
  if err == nil then return ... end
  if m.raise then error(err, 0) end
  return nil, err
end

-- finish for a model whose value is no function, with no varargs: a
-- vararg frame a coroutine resumes in after its sleep is one the JIT
-- does not compile (NYI: varargs, and returning through the frame).
local function finish_plain(m, id, t0, err)
  settle(m, id, t0, err)
  if err == nil then return m.value end
  if m.raise then error(err, 0) end
  return nil, err
end

local function value_of(m, ...)
  local v = m.value
  if type(v) == "function" then return v(...) end
  return v
end

-- A call's draws: its number, its start, how long it takes and its
-- error (nil: none); a hung call takes hang_time and is a timeout.
local function draw_call_of(m)
  local r = m.rng
  local id = m.calls + 1
  m.calls = id
  local t0 = now()
  if logged() then call_start(m.name, id) end
  local rate, factor, err = m.failure_rate, 1, nil
  if m.timed then rate, factor, err = conditions(m, t0 - m.t0) end
  local latency = draw_latency(m, r) * factor
  if err == nil then
    if m.hang_rate > 0 and api.rng_double(r) < m.hang_rate then
      return id, t0, m.hang_time, "timeout"
    end
    if rate > 0 and api.rng_double(r) < rate then err = pick_error(m, r) end
  end
  return id, t0, latency, err
end

-- svc(...) -> value, or nil, err after the drawn latency
local function call_model(m, ...)
  local id, t0, latency, err = draw_call_of(m)
  sleep(latency)
  if err then return finish(m, id, t0, err) end
  return finish(m, id, t0, nil, value_of(m, ...))
end

-- call_model for a model whose value is no function (the arguments go
-- nowhere): the same draws and results, with no varargs.
local function call_plain(m)
  local id, t0, latency, err = draw_call_of(m)
  sleep(latency)
  return finish_plain(m, id, t0, err)
end

-- A model written as a plain function: fn(...) -> value or nil, err.
local function call_function(m, ...)
  local id = m.calls + 1
  m.calls = id
  local t0 = now()
  if logged() then call_start(m.name, id) end
  return m.after(m, id, t0, pcall(m.fn, ...))
end

local function after_function(m, id, t0, ok, v, ...)
  if not ok then
    error(format("fb.sim.service '%s': the model function raised: %s", m.name, tostring(v)), 0)
  end
  if v == nil then return finish(m, id, t0, ... or "service call failed") end
  return finish(m, id, t0, nil, v, ...)
end

service_mt.__call = function(m, ...) return m.call(m, ...) end
service_mt.__tostring = function(m) return format("fb.sim.service '%s'", m.name) end

local names, names_run = {}, -1

-- Seeds model m's stream: by name when it has one (see the top).
local function seed_stream(m, named)
  m.rng = ffi.new("fb_rng")
  if not named then return api.stream_init(rt, m.rng) end
  local run = api.run_id(rt)
  if run ~= names_run then names, names_run = {}, run end
  local n = (names[m.name] or 0) + 1
  names[m.name] = n
  api.stream_init_named(rt, m.rng, m.name, n)
end

-- fb.sim.service(spec | fn [, name]) -> a callable service model
function M.service(spec, name)
  if name ~= nil and (type(name) ~= "string" or name == "") then
    base.argerror(2, "service", "name must be a non-empty string, got " .. tostring(name))
  end
  local m
  if type(spec) == "function" then
    nservices = nservices + 1
    m = { calls = 0, successes = 0, failures = 0, timeouts = 0, fn = spec, call = call_function,
      after = after_function, raise = false, name = name or ("service#" .. nservices) }
  else
    if type(spec) ~= "table" then
      base.argerror(1, "service", "model must be a table or a function, got " .. type(spec))
    end
    local ok, built = pcall(build, spec)
    if not ok then error(format("bad argument #1 to 'service' (%s)", built), 2) end
    m = built
    m.call = type(m.value) == "function" and call_model or call_plain
  end
  m.t0 = now()
  seed_stream(m, (type(spec) == "table" and spec.name) or name)
  return setmetatable(m, service_mt)
end

-- -------------------------------------------------- guarded calls

local function settle(cb, token, t0, v, ...)
  -- the breaker's rule: nil plus an error is a failure, or a timeout
  local outcome = true
  if v == nil and (...) ~= nil then outcome = timed_out((...)) and "timeout" or false end
  cb:record(token, outcome, now() - t0)
  return v, ...
end

-- fb.sim.call(cb, fn, ...) -> fn's results through breaker cb, never
-- raising: fn's nil, err counts as a failure, and a rejected call returns
-- nil, "circuit open" without calling fn. Uses the breaker's token API,
-- so it allocates nothing.
function M.call(cb, fn, ...)
  check_arg(cb, 1, "call", breaker_mt, "fusebox.breaker")
  if type(fn) ~= "function" and getmetatable(fn) ~= service_mt then
    base.argerror(2, "call", "function expected, got " .. type(fn))
  end
  local t0 = now()
  local token = cb:permit()
  if not token then return nil, "circuit open" end
  return settle(cb, token, t0, fn(...))
end

-- ----------------------------------------------------------- instances

local instance = {}
instance.__index = instance
local INSTANCE = "fusebox.sim.instance"

local function say(inst, action, fields)
  if events_on() then
    fields = fields or {}
    fields.action, fields.service, fields.host, fields.port = action, inst.service, inst.host, inst.port
    emit("instance", fields)
  end
end

-- Heartbeats every interval until the instance's generation moves on
-- (crash, stop, restart); a daemon, so a run ends without stopping its
-- instances.
local function heartbeat_loop(inst, gen)
  local what = format("instance %s:%d heartbeat timer", inst.host, inst.port)
  while true do
    wait(what, inst.interval)
    if inst.gen ~= gen then return end
    if now() >= inst.partitioned_until then
      inst.registry:heartbeat(inst.service, inst.host, inst.port)
    end
  end
end

-- Registers at once (the first heartbeat), then heartbeats in the
-- background.
local function start(inst)
  inst.gen = inst.gen + 1
  inst.state = "up"
  inst.partitioned_until = 0
  inst.registry:heartbeat(inst.service, inst.host, inst.port)
  inst.co = daemon(heartbeat_loop, inst, inst.gen)
end

local function halt(inst, state)
  inst.gen = inst.gen + 1
  inst.state = state
  if inst.co then wake(inst.co) end
  inst.co = nil
end

-- inst:crash(): stops heartbeating without deregistering
function instance:crash()
  check_self(self, instance, INSTANCE, "crash")
  halt(self, "crashed")
  say(self, "crash")
end

-- inst:stop(): deregisters and stops heartbeating
function instance:stop()
  check_self(self, instance, INSTANCE, "stop")
  halt(self, "stopped")
  self.registry:deregister(self.service, self.host, self.port)
  say(self, "stop")
end

-- inst:restart(): starts heartbeating again (at once) if it was down
function instance:restart()
  check_self(self, instance, INSTANCE, "restart")
  if self.state == "up" then return end
  say(self, "restart")
  start(self)
end

-- inst:partition(seconds): its heartbeats and calls are lost for that long
function instance:partition(seconds)
  check_self(self, instance, INSTANCE, "partition")
  if type(seconds) ~= "number" or not (seconds > 0) then
    base.argerror(1, "partition", "seconds must be a positive number, got " .. tostring(seconds))
  end
  self.partitioned_until = now() + seconds
  say(self, "partition", { duration = seconds })
end

-- inst:up() -> true if it is running and reachable now
function instance:up()
  check_self(self, instance, INSTANCE, "up")
  return self.state == "up" and now() >= self.partitioned_until
end

-- inst:call(...) -> its model's results, or nil, err when it is down
function instance:call(...)
  check_self(self, instance, INSTANCE, "call")
  self.calls = self.calls + 1
  if self.state ~= "up" then return nil, "connection refused" end
  if now() < self.partitioned_until then return nil, "unreachable" end
  self.served = self.served + 1
  local model = self.model
  if model == nil then return "ok" end
  return model(...)
end

local INSTANCE_FIELDS = set("registry", "service", "host", "port", "interval", "model")

-- fb.sim.instance{registry=, service=, host=, port=, interval=10 [, model=]}
-- -> a running instance that heartbeats every interval seconds
function M.instance(spec)
  if type(spec) ~= "table" then
    base.argerror(1, "instance", "options must be a table, got " .. type(spec))
  end
  local ok, err = pcall(function()
    check_fields(spec, "", INSTANCE_FIELDS)
    if getmetatable(spec.registry) ~= core.meta.registry then bad("registry", "a registry", spec.registry) end
    if type(spec.service) ~= "string" or spec.service == "" then bad("service", "a service name", spec.service) end
    if type(spec.host) ~= "string" or spec.host == "" then bad("host", "a host name", spec.host) end
    local port = spec.port
    if type(port) ~= "number" or port < 1 or port > 65535 or port % 1 ~= 0 then bad("port", "1..65535", port) end
    positive(spec, "interval", "interval")
    if spec.model ~= nil and getmetatable(spec.model) ~= service_mt and type(spec.model) ~= "function" then
      bad("model", "a fb.sim.service or a function", type(spec.model))
    end
  end)
  if not ok then error(format("bad argument #1 to 'instance' (%s)", err), 2) end
  local inst = setmetatable({
    registry = spec.registry, service = spec.service, host = spec.host, port = spec.port,
    interval = spec.interval or 10, model = spec.model, gen = 0, calls = 0, served = 0,
  }, instance)
  start(inst)
  return inst
end

-- ------------------------------------------------------------ replay

-- fb.sim.replay{trace = path | trace, ...}: instance models that follow a
-- trace (fb.trace.read). Trace time is cut into buckets; for each
-- instance and bucket the model keeps the exact count of each outcome and
-- at most `samples` latencies per outcome (reservoir sampling, so memory
-- per bucket is fixed whatever the trace holds). A call at replay time t
-- (seconds since the replay was made) falls in the bucket of trace time
-- t0 + t, draws an outcome with the bucket's frequencies and a latency
-- from that outcome's samples, sleeps it, and returns value or nil,
-- outcome. A bucket where the instance made no call takes the nearest
-- earlier bucket that has some (the first one, before its first call);
-- past the trace's end the last bucket holds. Every draw comes from named
-- streams ("fusebox.replay <name> host:port"), so one seed replays
-- exactly and adding other models moves none of them.

local REPLAY_FIELDS = set("trace", "bucket", "samples", "name", "registry", "service",
  "interval", "value", "max_buckets", "read")
local replay = {}
replay.__index = replay
local REPLAY = "fusebox.sim.replay"

local function replay_options(spec)
  check_fields(spec, "", REPLAY_FIELDS)
  local o = {
    bucket = positive(spec, "bucket", "bucket", 1),
    samples = number(spec, "samples", "samples", 1, 65536, 128),
    max_buckets = number(spec, "max_buckets", "max_buckets", 1, 2 ^ 31, 1000000),
    name = spec.name or "replay",
    interval = positive(spec, "interval", "interval", 10),
    value = spec.value == nil and "ok" or spec.value,
  }
  if o.samples % 1 ~= 0 then bad("samples", "an integer", o.samples) end
  if type(o.name) ~= "string" or o.name == "" then bad("name", "a non-empty string", o.name) end
  local tr = spec.trace
  if type(tr) == "string" then
    local ok, got = pcall(trace.read, tr, spec.read)
    if not ok then error(got, 0) end
    tr = got
  elseif type(tr) ~= "table" or type(tr.instances) ~= "table" or type(tr.n) ~= "number" then
    bad("trace", "a path or a trace from fb.trace.read", type(tr))
  end
  o.trace = tr
  if spec.registry ~= nil and getmetatable(spec.registry) ~= core.meta.registry then
    bad("registry", "a registry", spec.registry)
  end
  if spec.service ~= nil and (type(spec.service) ~= "string" or spec.service == "") then
    bad("service", "a service name", spec.service)
  end
  return o
end

-- Adds a latency to a reservoir of at most cap: the seen-th one replaces
-- a kept one with probability cap / seen (Vitter's algorithm R).
local function keep(samples, seen, cap, latency, r)
  if seen <= cap then samples[seen] = latency; return end
  local j = floor(api.rng_double(r) * seen) + 1
  if j <= cap then samples[j] = latency end
end

-- The buckets of every instance: buckets[i][b] = {total, kinds = {k...},
-- counts[k], seen[k], samples[k]}, only for buckets with calls.
local function build_buckets(tr, o, r)
  local nb = floor((tr.t1 - tr.t0) / o.bucket) + 1
  if nb > o.max_buckets then
    bad("bucket", format("wide enough for at most max_buckets (%d) buckets over the trace's "
      .. "%g s", o.max_buckets, tr.t1 - tr.t0), o.bucket)
  end
  local per = {}
  for i = 1, #tr.instances do per[i] = {} end
  local t, inst, lat, out, t0, w, cap = tr.t, tr.inst, tr.latency, tr.outcome, tr.t0, o.bucket, o.samples
  for n = 1, tr.n do
    local bs = per[inst[n]]
    local b = floor((t[n] - t0) / w)
    local bk = bs[b]
    if bk == nil then
      bk = { total = 0, kinds = {}, counts = {}, seen = {}, samples = {} }
      bs[b] = bk
    end
    local k = out[n]
    local c = bk.counts[k]
    if c == nil then
      bk.kinds[#bk.kinds + 1], bk.samples[k], c = k, {}, 0
    end
    bk.counts[k], bk.total = c + 1, bk.total + 1
    keep(bk.samples[k], c + 1, cap, lat[n], r)
  end
  return per, nb
end

-- The bucket a call at trace bucket b uses for instance i (see above),
-- found once per (instance, bucket) and remembered.
local function bucket_for(m, b)
  if b >= m.nb then b = m.nb - 1 end
  if b < 0 then b = 0 end
  local got = m.resolved[b]
  if got ~= nil then return got end
  local bs = m.buckets
  for j = b, 0, -1 do
    if bs[j] then got = bs[j]; break end
  end
  if got == nil then
    for j = b + 1, m.nb - 1 do
      if bs[j] then got = bs[j]; break end
    end
  end
  m.resolved[b] = got or false
  return got or false
end

local function draw_call(m, rp)
  local bk = bucket_for(m, floor((now() - rp.t0) / rp.bucket))
  if not bk then return 1 end -- no calls at all (a trace made by hand)
  local r = m.rng
  local x, kinds, counts = api.rng_double(r) * bk.total, bk.kinds, bk.counts
  local k = kinds[#kinds]
  for j = 1, #kinds do
    x = x - counts[kinds[j]]
    if x < 0 then k = kinds[j]; break end
  end
  local s = bk.samples[k]
  sleep(s[floor(api.rng_double(r) * #s) + 1])
  return k
end

-- A replayed instance's call when the replay's value is no function: a
-- service model's call with the trace's draws, no varargs and no pcall
-- (replay_model through call_function, the general case, has both).
local function call_replayed(m)
  local id = m.calls + 1
  m.calls = id
  local t0 = now()
  if logged() then call_start(m.name, id) end
  local k = draw_call(m.replayed, m.rp)
  return finish_plain(m, id, t0, k ~= 1 and m.rp.trace.outcomes[k] or nil)
end

local function replay_model(m, rp)
  return function(...)
    local k = draw_call(m, rp)
    if k == 1 then
      local v = rp.value
      if type(v) == "function" then return v(...) end
      return v
    end
    return nil, rp.trace.outcomes[k]
  end
end

-- fb.sim.replay{trace = path | trace, bucket = 1, samples = 128,
-- name = "replay", registry =, service =, interval = 10, value = "ok",
-- max_buckets = 1e6, read = {fb.trace.read's options}} -> a replay
function M.replay(spec)
  if type(spec) ~= "table" then
    base.argerror(1, "replay", "options must be a table, got " .. type(spec))
  end
  local ok, o = pcall(replay_options, spec)
  if not ok then error(format("bad argument #1 to 'replay' (%s)", o), 2) end
  local tr = o.trace
  local build_rng = ffi.new("fb_rng")
  api.stream_init_named(rt, build_rng, "fusebox.replay " .. o.name, 1)
  local ok2, per, nb = pcall(build_buckets, tr, o, build_rng)
  if not ok2 then error(format("bad argument #1 to 'replay' (%s)", per), 2) end
  local rp = setmetatable({ trace = tr, bucket = o.bucket, value = o.value, t0 = now(),
    models = {}, instances = {}, name = o.name }, replay)
  for i, ti in ipairs(tr.instances) do
    local m = { buckets = per[i], nb = nb, resolved = {}, rng = ffi.new("fb_rng") }
    local name = o.name .. " " .. ti.name
    api.stream_init_named(rt, m.rng, "fusebox.replay " .. name, 1)
    local svc = M.service(replay_model(m, rp), name)
    if type(o.value) ~= "function" then
      svc.call, svc.replayed, svc.rp, svc.value = call_replayed, m, rp, o.value
    end
    rp.models[ti.name] = svc
  end
  if spec.registry then
    for _, ti in ipairs(tr.instances) do
      local service = spec.service or ti.service
      if service == nil then
        error(format("bad argument #1 to 'replay' (service must be given: instance %s of "
          .. "trace '%s' has no service)", ti.name, tostring(tr.path)), 2)
      end
      rp.instances[ti.name] = M.instance { registry = spec.registry, service = service,
        host = ti.host, port = ti.port, interval = o.interval, model = rp.models[ti.name] }
    end
  end
  return rp
end

local function model_of(rp, inst, fname)
  local key = inst
  if type(inst) == "table" then key = tostring(inst.host) .. ":" .. tostring(inst.port) end
  local m = type(key) == "string" and rp.models[key]
  if not m then
    base.argerror(1, fname, format("not an instance of the trace (got %s)", tostring(key)), 1)
  end
  return m
end

-- rp:model(inst | "host:port") -> that instance's service model
function replay:model(inst)
  check_self(self, replay, REPLAY, "model")
  return model_of(self, inst, "model")
end

-- rp:call(inst | "host:port", ...) -> the model's results: what the
-- instance answered in the trace at this time (value, or nil, outcome)
function replay:call(inst, ...)
  check_self(self, replay, REPLAY, "call")
  local m = model_of(self, inst, "call")
  return m(...)
end

-- Sorts the call numbers in v[1..n] by start time t, ties by number:
-- a merge sort of runs of 16 made by insertion, in plain loops the JIT
-- compiles. table.sort calls its comparator from C, a Lua call each time:
-- a second for the million calls of a trace. Both orders are total on
-- the finite times a trace holds, so the result is table.sort's.
local RUN = 16

local function before(t, a, b)
  local x, y = t[a], t[b]
  return x < y or (x == y and a < b)
end

local function by_start(v, n, t)
  for lo = 1, n, RUN do
    for i = lo + 1, math.min(lo + RUN - 1, n) do
      local x, j = v[i], i - 1
      while j >= lo and before(t, x, v[j]) do v[j + 1] = v[j]; j = j - 1 end
      v[j + 1] = x
    end
  end
  local from, to, width = v, {}, RUN
  while width < n do
    for lo = 1, n, 2 * width do
      local mid, hi = math.min(lo + width, n + 1), math.min(lo + 2 * width, n + 1)
      local i, j, k = lo, mid, lo
      while i < mid and j < hi do
        if before(t, from[j], from[i]) then to[k] = from[j]; j = j + 1
        else to[k] = from[i]; i = i + 1 end
        k = k + 1
      end
      while i < mid do to[k] = from[i]; i = i + 1; k = k + 1 end
      while j < hi do to[k] = from[j]; j = j + 1; k = k + 1 end
    end
    from, to, width = to, from, 2 * width
  end
  return from
end

-- The calls that start requests, in time order: an nginx trace's first
-- tries; every call of an events trace (which cannot tell a retry from a
-- request).
local function arrival_order(tr)
  local order = {}
  if tr.requests then
    for k = 1, #tr.requests do order[k] = tr.requests[k] end
  else
    for n = 1, tr.n do order[n] = n end
  end
  return by_start(order, #order, tr.t)
end

-- roomy(fn, call): fn(call) on a stack grown first, in the interpreter.
-- A new coroutine's stack holds 40 slots, fewer than a call through a
-- policy's layers takes (retry and timeout: ~50), and a compiled trace
-- that finds the stack short where it ends leaves through its last
-- snapshot, restoring every slot of every frame it entered: ~4,000
-- instructions, once per arrival. Calling reserve, a function of ROOM
-- locals, makes the interpreter grow the stack first (one reallocation);
-- roomy stays interpreted, or its own trace would end short of stack.
local ROOM = 64
local reserve = assert(loadstring("local " .. ("_, "):rep(ROOM - 1) .. "_", "=reserve"))
local function roomy(fn, call)
  reserve()
  return fn(call)
end
jit.off(roomy)

-- rp:arrivals(fn) -> the number of arrivals: spawns fn(call) at each
-- recorded request's start (replay time t - trace.t0), open-loop (late
-- answers hold nothing back); call = {t, host, port, instance =
-- "host:port"}: where the trace sent it. Runs from a coroutine of its own.
function replay:arrivals(fn)
  check_self(self, replay, REPLAY, "arrivals")
  check_arg(fn, 1, "arrivals", "function")
  local tr, order = self.trace, arrival_order(self.trace)
  local spawn = host.spawn
  spawn(function()
    local t, inst, start = tr.t, tr.inst, self.t0
    for k = 1, #order do
      local n = order[k]
      local at = start + (t[n] - tr.t0)
      local wait_for = at - now()
      if wait_for > 0 then sleep(wait_for) end
      local ti = tr.instances[inst[n]]
      -- constants first (a constructor compiled to bytecode keeps only
      -- those: fusebox.policy's new_box says why), then the values
      local call = { t = 0, host = "", port = 0, instance = "" }
      call.t, call.host, call.port, call.instance = t[n] - tr.t0, ti.host, ti.port, ti.name
      spawn(roomy, fn, call)
    end
  end)
  return #order
end

-- ----------------------------------------------------------- swarm

-- Swarm testing (Groce et al.; TigerBeetle's VOPR): rather than every
-- fault at once on every seed, each seed turns each fault kind on or off,
-- so different seeds stress different mixes and a failure needing two
-- kinds together is not drowned by a third. `fusebox explore` lists the
-- mix of each failing seed and shrinks it (--swarm-off).
local SWARM_OFF, SWARM_ON = "fusebox.swarm_off", "fusebox.swarm_on" -- src/cli.h
local MAX_KINDS = 64

local function swarm_kinds(spec)
  if type(spec) ~= "table" then
    base.argerror(1, "swarm", "table of fault kinds expected, got " .. type(spec), 1)
  end
  local kinds, p = {}, {}
  for k, v in pairs(spec) do
    local name, prob = k, 0.5
    if type(k) == "number" then name = v
    elseif type(v) == "number" then prob = v
    elseif v ~= true then
      base.argerror(1, "swarm", format("%s must be a probability 0..1 or true, got %s",
        tostring(k), type(v)), 1)
    end
    if type(name) ~= "string" or not name:find("^[%w_]+$") or #name > 40 then
      base.argerror(1, "swarm", format("fault kinds are names of letters, digits and _ "
        .. "(at most 40), got %q", tostring(name)), 1)
    end
    if not (prob >= 0 and prob <= 1) then
      base.argerror(1, "swarm", format("%s must be a probability 0..1, got %s", name,
        tostring(prob)), 1)
    end
    if p[name] == nil then kinds[#kinds + 1] = name end
    p[name] = prob
  end
  if #kinds > MAX_KINDS then
    base.argerror(1, "swarm", format("at most %d fault kinds, got %d", MAX_KINDS, #kinds), 1)
  end
  sort(kinds)
  return kinds, p
end

-- fb.sim.swarm{ "outage", "slow", errors = 0.3 } -> { outage = bool, ... }:
-- which fault kinds are on for this run's seed, each with probability
-- 0.5 (or the one given). A kind's draw depends only on the seed and its
-- name (its own named stream: no other stream moves), and a kind named
-- in `--swarm-off` is off whatever it draws.
function M.swarm(spec)
  local kinds, p = swarm_kinds(spec)
  local off = {}
  local list = debug.getregistry()[SWARM_OFF]
  if type(list) == "string" then
    for k in list:gmatch("[^,]+") do off[k] = true end
  end
  local on, names, r = {}, {}, ffi.new("fb_rng")
  for _, k in ipairs(kinds) do
    api.stream_init_named(rt, r, "fusebox.swarm " .. k, 1)
    local draw = api.rng_double(r)
    on[k] = draw < p[k] and not off[k]
    if on[k] then names[#names + 1] = k end
  end
  debug.getregistry()[SWARM_ON] = table.concat(names, ",")
  return on
end

-- ---------------------------------------------------------- policy

-- `fusebox compare` runs one scenario under each of several policies:
-- the scenario asks for the one under comparison with fb.sim.policy()
-- and calls through it. Each call logs a request event (what the caller
-- saw: outcome, latency, the rejection's kind), which compare counts
-- next to the service models' call_end (the load offered to each
-- backend, retries and hedges included).
local POLICY = "fusebox.compare_policy" -- src/cli.h FB_CLI_POLICY
local config = core.import "fusebox.config"
local rejection = policy.rejection

-- The policy in file path: JSON (checked by the schema, errors naming
-- the field's path) or Lua returning a policy or fb.policy's options.
-- Raises a one-line message naming the file.
local function policy_file(path)
  if path:find("%.json$") then
    local ok, p = pcall(config.load_policy, path)
    if not ok then error((tostring(p):gsub("^load_policy: ", "")), 0) end
    return p
  end
  local chunk, err = loadfile(path)
  if not chunk then error(err, 0) end
  local ok, v = pcall(chunk)
  if not ok then error(format("%s: %s", path, tostring(v)), 0) end
  if policy.is_policy(v) then return v end
  if type(v) ~= "table" then
    error(format("%s: must return a policy or fb.policy options, got %s", path, type(v)), 0)
  end
  local made, p = pcall(policy.policy, v)
  if not made then
    error(format("%s: %s", path, (tostring(p):gsub("^bad argument #1 to 'policy' %((.*)%)$", "%1"))), 0)
  end
  return p
end
M.policy_file = policy_file

local measured = {}
measured.__index = measured
local measured_name = "fusebox.sim.policy"

-- A raised error (a breaker's rejection raises through a policy) is a
-- failed request too, raised on to the caller as it was.
local function request_done(t0, ok, v, err, ...)
  if not ok then
    request("failure", now() - t0, rejection(v))
    error(v, 0)
  end
  if v == nil and err ~= nil then
    request("failure", now() - t0, rejection(err))
  else
    request("success", now() - t0, nil)
  end
  return v, err, ...
end

-- m:call(fn, ...) -> the policy's p:call(fn, ...), logged as a request
function measured:call(fn, ...)
  check_self(self, measured, measured_name, "call")
  if not events_on() then return self.policy:call(fn, ...) end
  local p = self.policy
  return request_done(now(), pcall(p.call, p, fn, ...))
end

-- fb.sim.policy([default]) -> the policy under comparison (fusebox
-- compare --policy FILE, or fusebox run --policy FILE), else default (a
-- policy or fb.policy's options), wrapped to log each call as a request.
function M.policy(default)
  local path = debug.getregistry()[POLICY]
  local p
  if type(path) == "string" then
    p = policy_file(path)
  elseif default == nil then
    error("fb.sim.policy: no policy under comparison (run the scenario with "
      .. "fusebox compare --policy FILE or fusebox run --policy FILE, or pass a default)", 2)
  elseif policy.is_policy(default) then
    p = default
  elseif type(default) == "table" then
    p = policy.policy(default)
  else
    base.argerror(1, "policy", "a policy or policy options expected, got " .. type(default))
  end
  return setmetatable({ policy = p }, measured)
end

return M
