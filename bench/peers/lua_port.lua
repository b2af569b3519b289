-- bench/peers/lua_port.lua -- a straightforward pure-LuaJIT port of the
-- document's CircuitBreaker, ServiceRegistry and LoadBalancer
-- (/work/shared/seed/microservices-seed.en.md, sections 4.1 and 4.2):
-- same fields, same algorithms (discover() filters the whole instance list
-- on every pick), tables instead of classes, errors instead of exceptions,
-- no lock (LuaJIT has no threads), the prints left out. The clock is a
-- function the benchmark sets, so it can be virtual.
--   luajit bench/peers/lua_port.lua guarded_call | balanced_pick
package.path = arg[0]:gsub("[^/]*$", "") .. "../lua/?.lua;" .. package.path
local bench = require "benchlib"

local clock_now = 0
local function time() return clock_now end

---------------------------------------------------------------- the port

local CLOSED, OPEN, HALF_OPEN = "CLOSED", "OPEN", "HALF_OPEN"

local CircuitBreaker = {}
CircuitBreaker.__index = CircuitBreaker

function CircuitBreaker.new(failure_threshold, timeout, success_threshold)
  return setmetatable({
    failure_threshold = failure_threshold or 5,
    timeout = timeout or 60,
    success_threshold = success_threshold or 3,
    state = CLOSED, failure_count = 0, success_count = 0,
    last_failure_time = nil,
  }, CircuitBreaker)
end

function CircuitBreaker:_on_success()
  if self.state == HALF_OPEN then
    self.success_count = self.success_count + 1
    if self.success_count >= self.success_threshold then
      self.state = CLOSED
      self.failure_count = 0
    end
  else
    self.failure_count = 0
  end
end

function CircuitBreaker:_on_failure()
  self.failure_count = self.failure_count + 1
  self.last_failure_time = time()
  if self.state == HALF_OPEN then
    self.state = OPEN
  elseif self.failure_count >= self.failure_threshold then
    self.state = OPEN
  end
end

local function finish(self, ok, ...)
  if ok then
    self:_on_success()
    return ...
  end
  self:_on_failure()
  error((...), 0)
end

function CircuitBreaker:call(func, ...)
  if self.state == OPEN then
    if time() - self.last_failure_time > self.timeout then
      self.state = HALF_OPEN
      self.success_count = 0
    else
      error("Breaker open, call rejected", 0)
    end
  end
  return finish(self, pcall(func, ...))
end

local ServiceRegistry = {}
ServiceRegistry.__index = ServiceRegistry

function ServiceRegistry.new()
  return setmetatable({ services = {}, heartbeat_timeout = 30 }, ServiceRegistry)
end

function ServiceRegistry:register(service_name, host, port)
  local list = self.services[service_name]
  if not list then
    list = {}
    self.services[service_name] = list
  end
  local instance = { host, port, time() }
  for i = 1, #list do
    if list[i][1] == host and list[i][2] == port then
      list[i] = instance
      return
    end
  end
  list[#list + 1] = instance
end

function ServiceRegistry:discover(service_name)
  local list = self.services[service_name]
  if not list then return {} end
  local current_time, active = time(), {}
  for i = 1, #list do
    local inst = list[i]
    if current_time - inst[3] < self.heartbeat_timeout then
      active[#active + 1] = { inst[1], inst[2] }
    end
  end
  return active
end

local LoadBalancer = {}
LoadBalancer.__index = LoadBalancer

function LoadBalancer.new(registry)
  return setmetatable({ registry = registry, round_robin_index = {} }, LoadBalancer)
end

function LoadBalancer:get_instance(service_name)
  local instances = self.registry:discover(service_name)
  if #instances == 0 then return nil end
  local index = self.round_robin_index[service_name] or 0
  self.round_robin_index[service_name] = index + 1
  return instances[index % #instances + 1]
end

------------------------------------------------------------ benchmarks

local IMPL = "LuaJIT port of the document"

-- Row 1, same schedule as bench/guarded_call.c.
local function guarded_call()
  local CALLS, CALLS_PER_TICK, TICK, FAILURE_RATE = 10000000, 100, 0.5, 0.7
  local random, pcall = math.random, pcall
  local function trivial(x) return x end
  local invoked = 0
  local function unreliable()
    invoked = invoked + 1
    if random() < FAILURE_RATE then error("Service call failed", 0) end
    return "Service call succeeded"
  end
  bench.emit { bench = "guarded call", case = "success", impl = IMPL, n = CALLS,
    runs = bench.repeat_runs(function()
      local cb = CircuitBreaker.new(3, 5)
      local t0 = bench.ns()
      for i = 1, CALLS do cb:call(trivial, i) end
      return (bench.ns() - t0) / CALLS
    end) }
  local FAILING = CALLS / 10
  bench.emit { bench = "guarded call", case = "70% failure", impl = IMPL, n = FAILING,
    note = "rejections raise errors: 1 million calls",
    runs = bench.repeat_runs(function(run)
      local cb = CircuitBreaker.new(3, 5)
      math.randomseed(run or 0)
      clock_now, invoked = 0, 0
      local t0 = bench.ns()
      for _ = 1, FAILING / CALLS_PER_TICK do
        for _ = 1, CALLS_PER_TICK do pcall(cb.call, cb, unreliable) end
        clock_now = clock_now + TICK
      end
      return (bench.ns() - t0) / FAILING
    end) }
end

-- Row 2: every pick runs discover(), O(instances), so the number of picks
-- shrinks as the service grows. Setup writes the instance list directly:
-- register() is a linear scan, O(n^2) to fill one service.
local function balanced_pick()
  for _, n in ipairs { 10, 1000, 100000 } do
    local picks = math.max(50, math.min(500000, math.floor(5e6 / n)))
    local reg = ServiceRegistry.new()
    local list = {}
    for i = 1, n do
      list[i] = { string.format("10.%d.%d.%d", i / 65536 % 256, i / 256 % 256, i % 256), 8080, 0 }
    end
    reg.services["svc"] = list
    bench.emit { bench = "balanced pick", case = "round robin, " .. n .. " instances",
      impl = IMPL, n = picks, runs = bench.repeat_runs(function()
        local lb = LoadBalancer.new(reg)
        local t0 = bench.ns()
        for _ = 1, picks do lb:get_instance("svc") end
        return (bench.ns() - t0) / picks
      end, 3) }
    bench.skip("balanced pick", "least request, " .. n .. " instances", IMPL,
      "the document has no least-request strategy")
  end
end

local benchmarks = { guarded_call = guarded_call, balanced_pick = balanced_pick }
local which = benchmarks[arg[1]]
if not which then
  io.stderr:write("usage: luajit lua_port.lua guarded_call|balanced_pick\n")
  os.exit(2)
end
which()
