-- fusebox/balancer.lua -- balancer methods written in Lua: pick(), done(),
-- call(), and balancers driven by strategies written in Lua.
--
-- How a pick is identified: it is not; picks are counted. Each pick adds
-- one to its instance's in-flight count (in the core, shared by every
-- balancer over the registry) and done() takes one off, refusing when
-- none is in flight. So done() twice for a single pick is an error, the
-- count never goes negative, and an instance from another registry is
-- rejected; with several picks of one instance in flight, a second done()
-- for one of them is only caught once the count would go negative.
-- call() pairs its pick and done() itself.

local core = select(2, ...)
local base = core.import "fusebox.base"
local registry = core.import "fusebox.registry"
local events = core.import "fusebox.events"
local ffi = require "ffi"
local api, now, check_name, argerror = base.api, base.now, base.check_name, base.argerror
local loop_now = base.loop_now
local service_of, view_of, id_of = registry.service_of, registry.view_of, registry.id_of
local picked_view = registry.picked_view
local format, type, error, pcall, xpcall, tostring, ipairs = string.format, type, error, pcall, xpcall, tostring, ipairs
local floor, huge = math.floor, math.huge
local traceback = debug.traceback

local core = base.core
local balancer_mt = core.meta.balancer
local balancer = balancer_mt.methods
local EINVAL, ECLOSED, ESERVICES = -1, ffi.C.FBL_ECLOSED, ffi.C.FBL_ESERVICES

local M = {}

-- Raises "calling 'fname' on a closed balancer" (or registry) from deep
-- inside a method: the object was closed under us, by a strategy or a
-- finalizer calling its __gc.
local function closed_under(fname, what) base.closed(fname, what or "balancer") end

-- M.state(lb, fname) -> st: registry (its registry's state), strategy,
-- name, lists, random (and ud, slot: see fusebox.base)
M.state = base.object_state(balancer_mt, "balancer", function(ud, _, fname)
  local env = debug.getfenv(ud)
  if ffi.cast("void **", env.registry)[0] == nil then -- its __gc called by hand
    error(format("calling '%s' on a balancer whose registry is closed", fname), 4)
  end
  local st = {
    registry = registry.state(env.registry, fname),
    strategy = env.strategy, -- nil for the built-in algorithms
    name = env.name,
    outlier = env.outlier or false, -- its outlier detector (false: none,
                             -- so every state has the same shape)
    lists = {},              -- service -> candidates seen by the strategy
  }
  -- a strategy's ctx.random: math.random's contract, over the balancer's
  -- generator, read through the slot at each draw (closed: an error)
  st.random = env.strategy and base.random(function() return api.balancer_rng(st.slot) end, "balancer")
  return st
end)

local version_out = ffi.new("double[1]")

-- The instances a strategy sees: rebuilt only when the service's version
-- changes. `views` and `index` are ours; `list` is the strategy's, so a
-- strategy that scribbles on its list cannot change what an index means.
-- Making views allocates, and a finalizer run then may change the
-- service: a list built across a change is not kept.
local function candidates(st, svc, service, t)
  local n = api.balancer_candidates(st.slot, svc, t, version_out)
  if n == ECLOSED then closed_under("pick") end
  if n == 0 then return nil end
  local version = version_out[0]
  local c = st.lists[service]
  if c and c.version == version then return c end
  c = { version = version, views = {}, index = {}, list = {} }
  for i = 0, n - 1 do
    local id = api.balancer_candidate_id(st.slot, svc, t, i)
    if id < 0 then break end
    local v = view_of(st.registry, id)
    if v == false then closed_under("pick", "registry") end
    if v then
      local k = #c.views + 1
      c.views[k], c.index[v], c.list[k] = v, k, v
    end
  end
  if #c.views == 0 then return nil end
  if api.balancer_candidates(st.slot, svc, t, version_out) ~= n
    or version_out[0] ~= version then
    c.version = -1 -- changed while we built it: rebuild next time
  end
  st.lists[service] = c
  return c
end

local function describe(v)
  if type(v) == "string" then return format("%q", v) end
  return tostring(v)
end

-- The most instances one pick may exclude (FB_EXCLUDE_MAX in fusebox.h).
local EXCLUDE_MAX = 256
local exclude_buf = ffi.new("double[?]", EXCLUDE_MAX)

-- Copies the ids of exclude (views of st's registry, or ids) into
-- exclude_buf; returns their count.
local function exclusions(st, exclude, fname)
  if type(exclude) ~= "table" then
    argerror(2, fname, "exclude must be an array of instances or ids, got " .. type(exclude), 1)
  end
  local n = #exclude
  if n > EXCLUDE_MAX then
    argerror(2, fname, format("exclude has %d entries, at most %d", n, EXCLUDE_MAX), 1)
  end
  for k = 1, n do
    local x = exclude[k]
    local id = type(x) == "number" and x or id_of(st.registry, x)
    if id == nil then
      argerror(2, fname, format("exclude[%d] is not an instance of this balancer's "
        .. "registry nor an id (got %s)", k, describe(x)), 1)
    end
    exclude_buf[k - 1] = id
  end
  return n
end

-- The candidates c without the nex ids in exclude_buf, as a fresh list
-- (c itself is cached); nil when none is left.
local function without(st, c, nex)
  local skip = {}
  for k = 0, nex - 1 do skip[exclude_buf[k]] = true end
  local r = { views = {}, index = {}, list = {} }
  for _, v in ipairs(c.views) do
    if not skip[id_of(st.registry, v)] then
      local k = #r.views + 1
      r.views[k], r.index[v], r.list[k] = v, k, v
    end
  end
  if #r.views == 0 then return nil end
  return r
end

local function strategy_pick(st, svc, service, key, nex)
  local t = now()
  local c = candidates(st, svc, service, t)
  if c ~= nil and nex > 0 then c = without(st, c, nex) end
  if c == nil then return nil end
  local ctx = { key = key, service = service, now = t, random = st.random }
  local ok, r = xpcall(st.strategy, traceback, c.list, ctx)
  if not ok then
    error(format("balancer strategy '%s' failed: %s", st.name, tostring(r)), 0)
  end
  local i = c.index[r]
  if i == nil and type(r) == "number" and r >= 1 and r <= #c.views and r == floor(r) then
    i = r
  end
  if i == nil then
    error(format("balancer strategy '%s' returned %s: want one of the %d instances "
      .. "it was given, or an index 1..%d\n%s", st.name, describe(r), #c.views,
      #c.views, traceback()), 0)
  end
  local v = c.views[i]
  if api.balancer_take(st.slot, id_of(st.registry, v)) == ECLOSED then closed_under("pick") end
  return v
end

-- The service pointer for a built-in pick: the cached one, which the pick
-- entry checks against the registry's services-removed count (answering
-- ESERVICES when it may be stale), so a pick makes one FFI call, not two.
local function pick_id(st, service, key, t)
  local reg = st.registry
  local svc = reg.services[service]
  if svc ~= nil then
    local id = api.balancer_pick_key(st.slot, svc, key, key and #key or 0, t, reg.removed)
    if id ~= ESERVICES then return id, svc end
  end
  svc = service_of(reg, service)
  if not svc then return svc end
  return api.balancer_pick_key(st.slot, svc, key, key and #key or 0, t, reg.removed), svc
end

-- With an event sink on, the service each view was last picked from, so
-- done() can name it in its event (a view is one instance of one service).
local picked_service = setmetatable({}, { __mode = "k" })

-- The "done" event: one call's outcome at one instance, what a trace
-- (fb.trace.read) is made of. Callers check events.on() first.
local function emit_done(service, inst, ok, latency, err)
  events.emit("done", { service = service, host = inst.host, port = inst.port, ok = ok,
    latency = latency, error = err })
end

local function do_pick(st, service, key, nex)
  local v
  if st.strategy then
    local svc = service_of(st.registry, service)
    if not svc then
      if svc == false then closed_under("pick", "registry") end
      return nil
    end
    v = strategy_pick(st, svc, service, key, nex)
  else
    local t = loop_now() -- for expiry and the algorithm's decision
    local id, svc
    if nex > 0 then -- a retry skipping what it tried: a lookup of its own
      svc = service_of(st.registry, service)
      id = svc and api.balancer_pick_excluding(st.slot, svc, key, key and #key or 0,
        exclude_buf, nex, t) or svc
    else
      id, svc = pick_id(st, service, key, t)
    end
    if not id then
      if id == false then closed_under("pick", "registry") end
      return nil
    end
    if id < 0 then
      if id == ECLOSED then closed_under("pick") end
      return nil
    end
    v = picked_view(st.registry, svc, service, id, t)
    if not v then
      if v == false then closed_under("pick", "registry") end
      return nil
    end
  end
  if v and events.on() then
    picked_service[v] = service
    events.emit("pick", { service = service, host = v.host, port = v.port })
  end
  return v
end

-- lb:pick(service [, key | {key = , exclude = {inst or id, ...}}]) -> an
-- instance view, or nil when none is live (or every one is excluded: a
-- retry skipping the peers it already tried). The pick is in flight
-- until lb:done(inst, ok, latency).
function balancer:pick(service, key)
  local st = M.state(self, "pick")
  check_name(service, 1, "pick")
  local nex = 0
  if type(key) == "table" then
    local opts = key
    for k in pairs(opts) do
      if k ~= "key" and k ~= "exclude" then
        argerror(2, "pick", format("unknown option '%s' (known: exclude, key)", tostring(k)))
      end
    end
    key = opts.key
    if opts.exclude ~= nil then nex = exclusions(st, opts.exclude, "pick") end
  end
  if key ~= nil and type(key) ~= "string" then
    argerror(2, "pick", "key must be a string, got " .. type(key))
  end
  return do_pick(st, service, key, nex)
end

-- The outlier detector's events since the last done(), into the event
-- log and to its listeners (d:on): "eject" {service, host, port, id,
-- reason, until, ejections} and "readmit" {service, host, port, id,
-- reason, at} (the reason it was out). An instance gone meanwhile is
-- named by its id alone. A listener that raises is reported, not raised.
local function outlier_events(st)
  local list = core.outlier_events(st.outlier)
  if list == nil then return end
  local on, log = debug.getfenv(st.outlier).listeners, events.on()
  for _, e in ipairs(list) do
    local kind = e.eject and "eject" or "readmit"
    local f = { reason = e.reason, id = e.id, service = e.service, host = e.host, port = e.port }
    if e.eject then f["until"], f.ejections = e["until"], e.ejections else f.at = e.at end
    if log then events.emit(kind, f) end
    local fns = on and on[kind]
    if fns then base.emit_listeners(fns, "outlier " .. kind, f) end
  end
end
M.outlier_events = outlier_events

-- What done() passes for ok: a success, a failure, a gateway failure.
local OK_CODE = { [true] = 1, [false] = 0, gateway = -1 }

-- lb:done(inst, ok, latency) -> true, or false if inst was deregistered
-- meanwhile: reports one pick's outcome (latency in seconds). ok is true,
-- false, or "gateway": a failure the outlier detector also counts as a
-- gateway failure (HTTP 502/503/504, a connect failure).
function balancer:done(inst, ok, latency)
  local st = M.state(self, "done")
  local id = id_of(st.registry, inst)
  if id == nil then
    argerror(1, "done", format("not an instance of this balancer's registry (got %s)",
      describe(inst)))
  end
  -- comparisons, not OK_CODE[ok]: a trace pays a hash lookup per done for that
  local code = ok == true and 1 or ok == false and 0 or OK_CODE[ok]
  if code == nil then
    argerror(2, "done", "ok must be true, false or \"gateway\", got "
      .. (type(ok) == "string" and describe(ok) or type(ok)))
  end
  if type(latency) ~= "number" or not (latency >= 0) or latency == huge then
    argerror(3, "done", "latency must be a non-negative number of seconds, got "
      .. describe(latency))
  end
  local rc = api.balancer_done(st.slot, id, code, latency, loop_now())
  if rc == ECLOSED then base.closed("done", "balancer", 2) end
  if rc == EINVAL then
    error(format("done: no pick of %s:%d is in flight (done called twice for one pick?)",
      inst.host, inst.port), 2)
  end
  if rc == 1 then outlier_events(st) end
  -- a gateway failure is a failure to the trace (ok is true or false there)
  if events.on() then emit_done(picked_service[inst], inst, ok == true, latency) end
  return rc >= 0
end

local function finish(st, service, inst, t0, ok, ...)
  local t1 = now()
  local rc = api.balancer_done(st.slot, id_of(st.registry, inst), ok and 1 or 0, t1 - t0, t1)
  if rc == 1 then outlier_events(st) end
  if rc == ECLOSED and ok then closed_under("call") end
  if rc ~= ECLOSED and events.on() then
    emit_done(service, inst, ok, t1 - t0, not ok and tostring((...)):sub(1, 200) or nil)
  end
  if ok then return ... end
  error((...), 0)
end

-- lb:call(service, fn [, key]) -> fn's results: picks an instance, calls
-- fn(inst) (which may sleep), reports its outcome and duration on the
-- runtime's clock; raises fn's error after reporting it as a failure.
function balancer:call(service, fn, key)
  local st = M.state(self, "call")
  check_name(service, 1, "call")
  if type(fn) ~= "function" then
    argerror(2, "call", "function expected, got " .. type(fn))
  end
  if key ~= nil and type(key) ~= "string" then
    argerror(3, "call", "key must be a string, got " .. type(key))
  end
  local inst = do_pick(st, service, key, 0)
  if inst == nil then
    error(format("no live instance of service '%s'", service), 2)
  end
  return finish(st, service, inst, now(), pcall(fn, inst))
end

-- fb.strategy(name, fn): makes fb.balancer(reg, name) use fn.
function M.strategy(name, fn)
  if type(name) ~= "string" or name == "" then
    error("bad argument #1 to 'strategy' (name must be a non-empty string, got "
      .. describe(name) .. ")", 2)
  end
  for _, builtin in ipairs(core.algorithms) do
    if name == builtin then
      error(format("bad argument #1 to 'strategy' ('%s' is a built-in algorithm)", name), 2)
    end
  end
  if type(fn) ~= "function" then
    error("bad argument #2 to 'strategy' (function expected, got " .. type(fn) .. ")", 2)
  end
  core.strategies[name] = fn
end

balancer_mt.__index = balancer
balancer_mt.__newindex = base.read_only("fusebox.balancer")
balancer_mt.__tostring = function(self)
  if getmetatable(self) ~= balancer_mt then return "fusebox.balancer (bad self)" end
  if ffi.cast("void **", self)[0] == nil then
    return format("fusebox.balancer closed (%p)", self)
  end
  return format("fusebox.balancer %s (%p)", self:algorithm(), self)
end

return M
