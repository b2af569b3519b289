-- fusebox.lua -- the Lua half of the fusebox module.
--
-- Receives the C half (constructors, clock, scheduler) and adds what must
-- be Lua: breaker:call(), because the guarded function may yield inside
-- it, and the hot paths (pick, acquire/record), which reach the C core
-- through LuaJIT's FFI at a few nanoseconds a call instead of tens.

local core = ...
local ffi = require "ffi"

pcall(ffi.cdef, core.cdef) -- already declared if the module is reloaded
local api = ffi.cast("const struct fb_lua_api *", core.api)
local rt = ffi.cast("const fb_runtime *", core.rt)

local type, error, pcall, xpcall, select = type, error, pcall, xpcall, select
local format = string.format
local traceback = debug.traceback

local function now()
  return api.now(rt)
end

local fb = {
  version = core.version,
  now = core.now,
  sleep = core.sleep,
  spawn = core.spawn,
  random = core.random,
  seed = core.seed,
  run = core.run,
  running = core.running,
  registry = core.registry,
  balancer = core.balancer,
  breaker = core.breaker,
}

local function argerror(n, fname, msg)
  error(format("bad argument #%d to '%s' (%s)", n, fname, msg), 3)
end

local function check_name(v, n, fname)
  if type(v) ~= "string" then
    argerror(n, fname, "service name must be a string, got " .. type(v))
  elseif v == "" then
    argerror(n, fname, "service name must not be empty")
  end
end

-- Per-object Lua state, keyed weakly by the userdata. A state table
-- never refers back to its userdata (5.1 weak tables are not ephemerons).
local function object_state(build)
  local states = setmetatable({}, { __mode = "k" })
  return function(ud, fname)
    local st = states[ud]
    if st then return st end
    st = build(ud, fname)
    states[ud] = st
    return st
  end
end

-- The core pointer in a userdata's payload; NULL once it was collected.
local function payload(ud, ctype, fname)
  local p = ffi.cast(ctype, ud)[0]
  if p == nil then error(format("calling '%s' on a closed object", fname), 3) end
  return p
end

---------------------------------------------------------------- registry

local registry_mt = core.meta.registry
local registry = registry_mt.methods

local registry_state = object_state(function(ud, fname)
  if getmetatable(ud) ~= registry_mt then
    error(format("calling '%s' on bad self (registry expected)", fname), 3)
  end
  return {
    ptr = payload(ud, "fb_registry **", fname),
    services = {}, -- name -> fb_service*, filled on first sight
    views = setmetatable({}, { __mode = "v" }), -- instance id -> view
  }
end)

local function service_of(st, name)
  local svc = st.services[name]
  if svc == nil then
    svc = api.registry_service(st.ptr, name)
    if svc == nil then return nil end
    st.services[name] = svc -- services live as long as their registry
  end
  return svc
end

-- The Lua face of an instance: one table per instance, reused for as
-- long as anyone holds it, so picks allocate nothing.
local function view_of(st, inst)
  local id = api.instance_id(inst)
  local v = st.views[id]
  if v == nil then
    v = { host = ffi.string(api.instance_host(inst)), port = api.instance_port(inst) }
    st.views[id] = v
  end
  return v
end

local live_out = ffi.new("fb_instance *const *[1]")

-- reg:discover(service) -> array of {host=, port=}, live, in registration order
function registry:discover(service)
  local st = registry_state(self, "discover")
  check_name(service, 1, "discover")
  local out = {}
  local svc = service_of(st, service)
  if svc == nil then return out end
  local n = api.service_live(svc, now(), live_out)
  local live = live_out[0]
  for i = 0, n - 1 do
    out[i + 1] = view_of(st, live[i])
  end
  return out
end

registry_mt.__index = registry
registry_mt.__tostring = function(self)
  return format("fusebox.registry (%p)", self)
end

---------------------------------------------------------------- balancer

local balancer_mt = core.meta.balancer
local balancer = balancer_mt.methods

local balancer_state = object_state(function(ud, fname)
  if getmetatable(ud) ~= balancer_mt then
    error(format("calling '%s' on bad self (balancer expected)", fname), 3)
  end
  return {
    ptr = payload(ud, "fb_balancer **", fname),
    registry = registry_state(ud:registry(), fname),
  }
end)

-- lb:pick(service) -> {host=, port=} or nil when no instance is live
function balancer:pick(service)
  local st = balancer_state(self, "pick")
  check_name(service, 1, "pick")
  local reg = st.registry
  local svc = service_of(reg, service)
  if svc == nil then return nil end
  local inst = api.balancer_pick(st.ptr, svc, now())
  if inst == nil then return nil end
  return view_of(reg, inst)
end

balancer_mt.__index = balancer
balancer_mt.__tostring = function(self)
  return format("fusebox.balancer %s (%p)", self:algorithm(), self)
end

----------------------------------------------------------------- breaker

local breaker_mt = core.meta.breaker
local breaker = breaker_mt.methods
local STATE_NAMES = { [0] = "CLOSED", "OPEN", "HALF_OPEN" }
local SUCCESS, FAILURE = 0, 1

local breaker_state = object_state(function(ud, fname)
  if getmetatable(ud) ~= breaker_mt then
    error(format("calling '%s' on bad self (breaker expected)", fname), 3)
  end
  return {
    ud_transition = breaker.transition,
    ptr = payload(ud, "fb_breaker **", fname),
    seen = 0,       -- state changes already announced to listeners
    listeners = {}, -- event -> array of functions
  }
end)

local EVENTS = { state_change = true }

-- cb:on(event, fn): fn(from, to, now) after each state change
function breaker:on(event, fn)
  local st = breaker_state(self, "on")
  if not EVENTS[event] then
    argerror(1, "on", format("unknown event '%s' (known: state_change)", tostring(event)))
  end
  if type(fn) ~= "function" then
    argerror(2, "on", "listener must be a function, got " .. type(fn))
  end
  local list = st.listeners[event] or {}
  list[#list + 1] = fn
  st.listeners[event] = list
  return self
end

-- Announces state changes the core made since the last announcement. The
-- breaker is consistent by now, so a listener may call into it; one that
-- raises is reported and the others still run.
local function announce(self, st)
  local total = api.breaker_transitions(st.ptr)
  local list = st.listeners.state_change
  while st.seen < total do
    local from, to, at = st.ud_transition(self, st.seen)
    st.seen = st.seen + 1
    if list and from then
      for i = 1, #list do
        local ok, err = xpcall(list[i], traceback, from, to, at)
        if not ok then core.report("state_change listener failed", tostring(err)) end
      end
    end
  end
end

local function finish(self, st, permit, t0, ok, ...)
  local t1 = now()
  api.breaker_record(st.ptr, permit, ok and SUCCESS or FAILURE, t1 - t0, t1)
  if api.breaker_transitions(st.ptr) ~= st.seen then announce(self, st) end
  if ok then return ... end
  error((...), 0)
end

-- cb:call(fn, ...) -> fn's results; raises fn's error after recording the
-- failure, or "circuit open" without calling fn while the breaker is open.
function breaker:call(fn, ...)
  local st = breaker_state(self, "call")
  if type(fn) ~= "function" then
    argerror(1, "call", "function expected, got " .. type(fn))
  end
  local ptr = st.ptr
  local t0 = now()
  local permit = api.breaker_acquire(ptr, t0)
  if api.breaker_transitions(ptr) ~= st.seen then announce(self, st) end
  if permit < 0 then
    error(format("circuit open: call rejected (retry after %.3fs)",
      api.breaker_retry_after(ptr, t0)), 2)
  end
  return finish(self, st, permit, t0, pcall(fn, ...))
end

local breaker_properties = {
  state = function(st) return STATE_NAMES[api.breaker_state(st.ptr)] end,
}

breaker_mt.__index = function(self, key)
  local m = breaker[key]
  if m ~= nil then return m end
  local prop = breaker_properties[key]
  if prop then return prop(breaker_state(self, key)) end
  return nil
end
breaker_mt.__tostring = function(self)
  return format("fusebox.breaker %s (%p)", self.state, self)
end

return fb
