-- fusebox/health.lua -- active health checks (Envoy/Kong style):
-- fb.health_check{...} probes every live instance of a service each
-- interval, by TCP connect or HTTP GET; unhealthy_threshold failures in
-- a row mark an instance down, healthy_threshold successes bring it back,
-- and each change sets the instance's health in the registry
-- (reg:set_healthy), so every balancer over it skips the instance (down
-- to the panic threshold), and calls on_change(instance, healthy).
-- checker:is_healthy(host, port) answers for one instance. Real time
-- only, like every probe. The health flag is the one a client's outlier
-- ejection sets too: whichever spoke last wins.

local core = select(2, ...)
local base = core.import "fusebox.base"
local host = core.import "fusebox.host"
local tcp = core.import "fusebox.tcp"
local tls = core.import "fusebox.tls"
local argerror = base.argerror
local format, type, tostring, pairs, xpcall, traceback = string.format, type, tostring, pairs, xpcall, debug.traceback

local M = {}

local OPTIONS = {
  registry = true, service = true, type = true, path = true, interval = true, timeout = true,
  healthy_threshold = true, unhealthy_threshold = true, on_change = true, tls = true,
  workers = true,
}

local checker = {}
checker.__index = checker

local function key(host, port) return host .. ":" .. port end

-- One probe, by the scheduler's own I/O (fusebox's sockets; nginx's
-- cosockets): true if the instance answered in time.
local function probe(c, inst) return host.probe(c.kind, inst, c.path, c.timeout, c.tls) end

local function record(c, inst, ok)
  local k = key(inst.host, inst.port)
  local st = c.states[k]
  if not st then
    st = { healthy = true, ok = 0, failed = 0 }
    c.states[k] = st
  end
  if ok then st.ok, st.failed = st.ok + 1, 0 else st.ok, st.failed = 0, st.failed + 1 end
  local flip = (st.healthy and st.failed >= c.unhealthy_threshold)
    or (not st.healthy and st.ok >= c.healthy_threshold)
  if not flip then return end
  st.healthy = not st.healthy
  c.registry:set_healthy(c.service, inst.host, inst.port, st.healthy)
  if c.on_change then
    local done, err = xpcall(c.on_change, traceback, { host = inst.host, port = inst.port }, st.healthy)
    if not done then core.report("health on_change listener failed", tostring(err)) end
  end
end

-- One round: every live instance probed in parallel, each within timeout.
local function round(c)
  local live = c.registry:discover(c.service)
  local pending = #live
  local me = coroutine.running()
  for i = 1, #live do
    local inst = live[i]
    host.spawn(function()
      local ok = probe(c, inst)
      if not c.stopped then record(c, inst, ok) end
      pending = pending - 1
      if pending == 0 then host.wake(me) end
    end)
  end
  if pending > 0 then host.wait("health check round", c.timeout * 2) end
end

local function check_number(v, def, name, positive_int)
  if v == nil then return def end
  if type(v) ~= "number" or not (v > 0) or (positive_int and v % 1 ~= 0) then
    error(format("bad argument #1 to 'health_check' (%s must be a positive %s, got %s)", name,
      positive_int and "integer" or "number", tostring(v)), 3)
  end
  return v
end

-- fb.health_check{registry=, service=, type="tcp"|"http", path="/",
-- interval=5, timeout=1, healthy_threshold=2, unhealthy_threshold=2,
-- on_change=fn(instance, healthy), workers="one"|"all", tls=nil} ->
-- checker; with tls (as fb.tcp.connect's) a probe is an HTTPS request,
-- or for "tcp" a TLS handshake, and fails when it fails (a certificate
-- that expired); checker.probing: whether this process probes (workers =
-- "one": only the scheduler's primary process, nginx's worker 0)
function M.new(opts)
  tcp.check_real("health_check")
  if type(opts) ~= "table" then argerror(1, "health_check", "options table expected, got " .. type(opts)) end
  for k in pairs(opts) do
    if not OPTIONS[k] then argerror(1, "health_check", format("unknown option '%s'", tostring(k))) end
  end
  if getmetatable(opts.registry) ~= core.meta.registry then argerror(1, "health_check", "registry expected") end
  base.check_name(opts.service, 1, "health_check")
  local workers = opts.workers or "one"
  if workers ~= "one" and workers ~= "all" then
    argerror(1, "health_check", "workers must be 'one' or 'all', got " .. tostring(workers))
  end
  local kind = opts.type or "tcp"
  if kind ~= "tcp" and kind ~= "http" then
    argerror(1, "health_check", "type must be 'tcp' or 'http', got " .. tostring(kind))
  end
  tls.client(opts.tls, 1, "health_check")
  local c = setmetatable({
    registry = opts.registry, service = opts.service, kind = kind, path = opts.path or "/",
    tls = opts.tls,
    interval = check_number(opts.interval, 5, "interval"),
    timeout = check_number(opts.timeout, 1, "timeout"),
    healthy_threshold = check_number(opts.healthy_threshold, 2, "healthy_threshold", true),
    unhealthy_threshold = check_number(opts.unhealthy_threshold, 2, "unhealthy_threshold", true),
    on_change = opts.on_change, states = {}, stopped = false,
  }, checker)
  -- One process probes (nginx: worker 0, not every worker: Kong#6788);
  -- in the others the checker stays idle and reports every instance
  -- healthy: what worker 0 marks down reaches them through health the
  -- registry shares across processes, or through on_change. workers =
  -- "all" probes from every process, for registries that share nothing.
  c.probing = workers == "all" or host.primary()
  if not c.probing then return c end
  c.loop = host.spawn(function()
    while not c.stopped and not host.exiting() do
      round(c)
      if not c.stopped then host.wait("health check interval", c.interval) end
    end
  end)
  return c
end

-- checker:is_healthy(host, port) -> false once marked down (unknown
-- instances count as healthy until their checks say otherwise)
function checker:is_healthy(host, port)
  base.check_self(self, checker, "fusebox.health_check", "is_healthy")
  if type(host) ~= "string" then argerror(1, "is_healthy", "host must be a string, got " .. type(host)) end
  if type(port) ~= "number" then argerror(2, "is_healthy", "port must be a number, got " .. type(port)) end
  local st = self.states[key(host, port)]
  return st == nil or st.healthy
end

-- checker:pick(lb) -> lb:pick(service): the balancer already skips the
-- instances this checker marked down
function checker:pick(lb)
  base.check_self(self, checker, "fusebox.health_check", "pick")
  if getmetatable(lb) ~= core.meta.balancer then
    argerror(1, "pick", "fusebox.balancer expected, got " .. type(lb))
  end
  return lb:pick(self.service)
end

-- checker:stop(): no more rounds; the checker's coroutine ends
function checker:stop()
  base.check_self(self, checker, "fusebox.health_check", "stop")
  self.stopped = true
  if self.loop then host.wake(self.loop) end
end

return M
