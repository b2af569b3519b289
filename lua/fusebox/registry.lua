-- fusebox/registry.lua -- registry methods written in Lua: discover(),
-- and the instance views balancers hand out.
--
-- A view is one table per instance with the fields host, port, id, and
-- fields read live from the core on access: weight, zone, meta, healthy,
-- inflight, successes, failures, latency, ejected_until (0: never
-- ejected; see reg:eject). Every field is read-only: the
-- view holds its data under keys no field name can be ("\0host", ...),
-- so every write to a field reaches __newindex, which raises; the
-- metatable is
-- protected (getmetatable(view) is "fusebox.instance"). One metatable
-- serves every view, so a trace through picks of many instances (or
-- registries) does not specialise on one; the data sits in the view
-- itself, not in a side table or a second table, since each further
-- table touched per pick costs a cache miss once views outgrow the cache;
-- and its copy of host is made by FFI calls alone, so the trace of a loop
-- that meets new instances does not stitch. Views are cached
-- by the slot of their instance id (ids are generation << 32 | slot) in
-- plain arrays: picks allocate nothing, and the cache is bounded by the
-- most instances ever registered at once. A view outliving its instance
-- (deregistered) keeps host, port and id, and its live fields read nil.
--
-- Lifetime: a view holds its registry's state, which holds the registry
-- (fusebox.base's object_state), so a live view keeps its registry alive.
-- Views hold ids, never pointers. A registry closed by hand (its __gc
-- called) or in the same collection as a finalizer reading a view makes
-- live fields raise "its registry is closed".

local core = select(2, ...)
local base = core.import "fusebox.base"
local ffi = require "ffi"
local api, now, check_name = base.api, base.now, base.check_name
local format, error, rawget, tostring = string.format, error, rawget, tostring
local setmetatable, getmetatable = setmetatable, getmetatable
local debug_getmetatable = debug.getmetatable
local C = ffi.C
local ECLOSED = C.FBL_ECLOSED
local huge = math.huge

local registry_mt = base.core.meta.registry
local registry = registry_mt.methods

local M = {}

-- The live fields the core counts, by what api.instance_stat reads.
local stats = {
  weight = C.FBL_WEIGHT, healthy = C.FBL_HEALTHY, inflight = C.FBL_INFLIGHT,
  successes = C.FBL_SUCCESSES, failures = C.FBL_FAILURES, latency = C.FBL_LATENCY,
  ejected_until = C.FBL_EJECTED,
}
local HEALTHY, PORT, HOST, ZONE = C.FBL_HEALTHY, C.FBL_PORT, C.FBL_HOST, C.FBL_ZONE

-- Instance strings are copied here by the core (see lua_api.h): a
-- pointer into the core could be freed by a finalizer before it is read.
local strbuf, strcap = ffi.new("char[?]", 256), 256

-- The string what (HOST | ZONE) of instance id: nil when the instance is
-- gone (or has no zone), false when the registry is closed. No Lua runs
-- between the copy and ffi.string, so no finalizer can overwrite strbuf.
local function instance_string(slot, id, what)
  local n = api.instance_string(slot, id, what, strbuf, strcap)
  while n > strcap do
    strcap = n
    strbuf = ffi.new("char[?]", n)
    n = api.instance_string(slot, id, what, strbuf, strcap)
  end
  if n >= 0 then return ffi.string(strbuf, n) end
  if n == ECLOSED then return false end
  return nil
end

-- The keys of a view's own entries: array slots, which no field name can
-- be (only a deliberate rawset gets past __newindex), so that a view is
-- one allocation: LuaJIT keeps a small array part inside the table's own
-- block, where a hash part is a second one, and a pick + done on a random
-- view of 1,000 paid a cache miss for each.
-- A view is cached under its instance's slot, the id's low 32 bits
-- (generation << 32 | slot): bit.tobit takes them in two instructions,
-- where id % 2^32 is a floor and three more on the path of every pick.
local tobit = require("bit").tobit

local REG, ID, HOST_K, PORT_K = 1, 2, 3, 4

local function read_only(_, key)
  error(format("instance views are read-only (cannot set '%s')", tostring(key)), 2)
end

local function registry_closed(v, key)
  error(format("cannot read '%s' of instance %s:%d: its registry is closed",
    tostring(key), rawget(v, HOST_K), rawget(v, PORT_K)), 4)
end

local function view_tostring(v)
  return format("fusebox.instance %s:%d", v.host, v.port)
end

-- A live field of view v.
local function live(v, key)
  local what, st, id = stats[key], rawget(v, REG), rawget(v, ID)
  if what then
    local x = api.instance_stat(st.slot, id, what)
    if x >= 0 then
      if what == HEALTHY then return x ~= 0 end
      return x
    end
    if x == ECLOSED then registry_closed(v, key) end
    return nil
  elseif key == "zone" then
    local z = instance_string(st.slot, id, ZONE)
    if z == false then registry_closed(v, key) end
    return z
  elseif key == "meta" then
    local x = api.instance_stat(st.slot, id, C.FBL_WEIGHT)
    if x == ECLOSED then registry_closed(v, key) end
    if x >= 0 then return st.env.meta[id] end
  end
  return nil
end

-- The metatable of every view, of every registry: a trace reading views
-- of several registries does not specialise on one.
local view_mt = {
  __index = function(v, key)
    if key == "host" then return rawget(v, HOST_K) end
    if key == "port" then return rawget(v, PORT_K) end
    if key == "id" then return rawget(v, ID) end
    return live(v, key)
  end,
  __newindex = read_only,
  __tostring = view_tostring,
  __metatable = "fusebox.instance",
}

-- M.state(reg, fname) -> st { services, views, env } (and ud,
-- slot: see fusebox.base)
M.state = base.object_state(registry_mt, "registry", function(ud)
  return {
    services = {}, -- name -> fb_service*, filled on first sight, emptied
                   -- when the registry removed services
    removed = 0,   -- fb_registry_services_removed() when last emptied
    views = {},    -- slot -> view of the instance last seen in it
    filled = {},   -- service name -> its version when picked_view made its views
    env = debug.getfenv(ud), -- env.meta: id -> meta (lua_registry.c; replaced
                             -- when reaped instances' meta is dropped)
  }
end)

-- Returns the fb_service* called name, nil if there is none, or false if
-- the registry is closed. The registry removes services left without
-- instances when a new name needs the room (lua_registry.c sets
-- remove_empty_services): once it did, every pointer kept may dangle, so
-- all are dropped (one FFI call per lookup). Otherwise a pointer is good
-- while the registry, or a balancer over it, is open.
function M.service_of(st, name)
  -- (closed, the counter reads FBL_ECLOSED: nothing registers any more,
  -- so nothing is removed, and a balancer's picks keep the pointers)
  local removed = api.registry_services_removed(st.slot)
  if removed ~= st.removed and removed >= 0 then st.services, st.removed = {}, removed end
  local svc = st.services[name]
  if svc == nil then
    svc = api.registry_service(st.slot, name)
    if svc == nil then
      if st.slot[0] == nil then return false end
      return nil
    end
    st.services[name] = svc
  end
  return svc
end

-- The Lua face of instance id: one table per instance, made on first
-- sight and kept while the instance is registered, so picks allocate
-- nothing. Returns nil if the instance is gone, false if the registry is
-- closed.
function M.view_of(st, id)
  local slot = tobit(id)
  local v = st.views[slot]
  if v and rawget(v, ID) == id then return v end
  local port = api.instance_stat(st.slot, id, PORT) -- first: no allocation
  if port < 0 then
    if port == ECLOSED then return false end
    return nil
  end
  local host = instance_string(st.slot, id, HOST)
  if not host then return host end
  v = setmetatable({ st, id, host, port }, view_mt) -- REG, ID, HOST_K, PORT_K
  st.views[slot] = v
  return v
end

-- Returns the id of view v if it is one of this registry's views.
-- M.picked_view(st, svc, name, id, t) -> view_of(st, id) for an instance
-- a balancer picked from service svc (called name) at t. On a miss, the
-- views of every live instance of svc are made first, once per version
-- of the service: a loop of picks then meets only views made already,
-- so LuaJIT records its trace on the path every later pick takes (made
-- one by one, the trace recorded during the first picks made a view and
-- every later pick left it by a side exit: 40 ns a round-robin pick
-- instead of 17).
function M.picked_view(st, svc, name, id, t)
  local v = st.views[tobit(id)]
  if v and rawget(v, ID) == id then return v end -- done() reads v next
  local version = api.service_version(st.slot, svc)
  if st.filled[name] ~= version then
    st.filled[name] = version
    local i = 0
    while true do
      local other = api.service_live_id(st.slot, svc, t, i)
      if other < 0 then break end
      if M.view_of(st, other) == false then return false end
      i = i + 1
    end
  end
  return M.view_of(st, id)
end

function M.id_of(st, v)
  -- debug.getmetatable: one comparison in a trace, where getmetatable
  -- also looks up __metatable (every done() and lb:call pay it)
  if debug_getmetatable(v) ~= view_mt or rawget(v, REG) ~= st then return nil end
  return rawget(v, ID)
end

-- Stores other than memory, by name -> constructor(opts); each backend
-- module adds itself (lua/fusebox/etcd.lua).
M.backends = {}

-- fb.registry{heartbeat_timeout=30, reap_after=3*heartbeat_timeout,
-- max_services=10000, max_instances=100000 [, backend="memory" | a name in
-- M.backends, that backend's options]} -> a registry. static = true: its
-- instances never expire (heartbeat_timeout = math.huge): a fixed list
-- of peers, as an nginx upstream block, needs no heartbeat timer.
function M.new(opts)
  if type(opts) == "table" and opts.static ~= nil then
    if opts.static ~= true and opts.static ~= false then
      base.argerror(1, "registry", "static must be a boolean, got " .. tostring(opts.static))
    end
    if opts.static and (opts.heartbeat_timeout ~= nil or opts.reap_after ~= nil) then
      base.argerror(1, "registry", "static registries have no heartbeat_timeout nor reap_after")
    end
    local copy = {}
    for k, v in pairs(opts) do copy[k] = v end
    copy.static = nil
    copy.heartbeat_timeout = opts.static and huge or nil
    opts = copy
  end
  local backend = type(opts) == "table" and opts.backend or nil
  if backend == nil then return core.registry(opts) end
  if backend == "memory" then
    local copy = {}
    for k, v in pairs(opts) do copy[k] = v end
    copy.backend = nil
    return core.registry(copy)
  end
  local new = M.backends[backend]
  if new == nil then
    local names = { "memory" }
    for name in pairs(M.backends) do names[#names + 1] = name end
    table.sort(names)
    base.argerror(1, "registry", format("unknown backend '%s' (known: %s)", tostring(backend),
      table.concat(names, ", ")))
  end
  return new(opts)
end

-- reg:discover(service) -> array of instance views: the live instances,
-- in registration order. Making a view allocates, and a finalizer run
-- then may change the service: the list is read again if it did.
function registry:discover(service)
  local st = M.state(self, "discover")
  check_name(service, 1, "discover")
  local svc = M.service_of(st, service)
  if svc == false then base.closed("discover", "registry", 2) end
  if svc == nil then return {} end
  local t, out = now(), nil
  for _ = 1, 3 do
    local version = api.service_version(st.slot, svc)
    if version == ECLOSED then base.closed("discover", "registry", 2) end
    out = {}
    local i = 0
    while true do
      local id = api.service_live_id(st.slot, svc, t, i)
      if id < 0 then break end
      local v = M.view_of(st, id)
      if v then out[#out + 1] = v end
      i = i + 1
    end
    if api.service_version(st.slot, svc) == version then break end
  end
  return out
end

-- reg:eject(inst, until) -> true, or false if inst is gone: balancers
-- skip inst (panic mode aside) until fb.now() reaches until, when it is
-- back with no timer or call; an until in the past readmits it at once.
-- inst is a view of this registry or its id.
function registry:eject(inst, until_t)
  local st = M.state(self, "eject")
  local id = inst
  if type(inst) ~= "number" then
    id = M.id_of(st, inst)
    if id == nil then
      base.argerror(1, "eject", "not an instance of this registry nor an id (got "
        .. tostring(inst) .. ")")
    end
  end
  if type(until_t) ~= "number" or until_t ~= until_t then
    base.argerror(2, "eject", "until must be a time (a number, as fb.now()), got "
      .. tostring(until_t))
  end
  local rc = api.instance_eject(st.slot, id, until_t)
  if rc == ECLOSED then base.closed("eject", "registry", 2) end
  return rc == 0
end

registry_mt.__index = registry
registry_mt.__newindex = base.read_only("fusebox.registry")
registry_mt.__tostring = function(self)
  if getmetatable(self) ~= registry_mt then return "fusebox.registry (bad self)" end
  local closed = ffi.cast("void **", self)[0] == nil and " closed" or ""
  return format("fusebox.registry%s (%p)", closed, self)
end

return M
