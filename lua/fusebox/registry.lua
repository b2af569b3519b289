-- fusebox/registry.lua -- registry methods written in Lua: discover(),
-- and the instance views balancers hand out.
--
-- A view is one table per instance with the fields host, port, id, and
-- fields read live from the core on access: weight, zone, meta, healthy,
-- inflight, successes, failures, latency. Every field is read-only: the
-- view itself is an empty table, so every write reaches __newindex, which
-- raises; host, port and id sit in a table of the registry's, weak on the
-- views, and the metatable is protected (getmetatable(view) gives
-- "fusebox.instance"). One metatable serves all views of a registry, so a
-- trace through a pick does not specialise on the view. Views are cached
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
local instance_key, instance_zone = core.instance_key, core.instance_zone
local C = ffi.C
local ECLOSED = C.FBL_ECLOSED

local registry_mt = base.core.meta.registry
local registry = registry_mt.methods

local M = {}

-- The live fields the core counts, by what api.instance_stat reads.
local stats = {
  weight = C.FBL_WEIGHT, healthy = C.FBL_HEALTHY, inflight = C.FBL_INFLIGHT,
  successes = C.FBL_SUCCESSES, failures = C.FBL_FAILURES, latency = C.FBL_LATENCY,
}
local HEALTHY = C.FBL_HEALTHY

local function read_only(_, key)
  error(format("instance views are read-only (cannot set '%s')", tostring(key)), 2)
end

local function registry_closed(d, key)
  error(format("cannot read '%s' of instance %s:%d: its registry is closed",
    tostring(key), d.host, d.port), 4)
end

local function view_tostring(v)
  return format("fusebox.instance %s:%d", v.host, v.port)
end

-- M.state(reg, fname) -> st { services, views, view_ids, data, view_mt }
-- (and ud, slot: see fusebox.base)
M.state = base.object_state(registry_mt, "registry", function(ud)
  local st = {
    services = {}, -- name -> fb_service*, filled on first sight
    views = {},    -- slot -> view of the instance last seen in it
    view_ids = {}, -- slot -> that instance's id
    data = setmetatable({}, { __mode = "k" }), -- view -> { host=, port=, id= }
    meta = debug.getfenv(ud).meta,             -- id -> meta (lua_registry.c)
  }
  -- A live field of the view whose data is d.
  local function live(d, key)
    local what = stats[key]
    local id = d.id
    if what then
      local x = api.instance_stat(st.slot, id, what)
      if x >= 0 then
        if what == HEALTHY then return x ~= 0 end
        return x
      end
      if x == ECLOSED then registry_closed(d, key) end
      return nil
    elseif key == "zone" then
      local z = instance_zone(st.ud, id)
      if z == false then registry_closed(d, key) end
      return z
    elseif key == "meta" then
      local x = api.instance_stat(st.slot, id, C.FBL_WEIGHT)
      if x == ECLOSED then registry_closed(d, key) end
      if x >= 0 then return st.meta[id] end
    end
    return nil
  end
  local data = st.data
  st.view_mt = {
    __index = function(v, key)
      local d = data[v]
      local x = d[key]
      if x ~= nil then return x end
      return live(d, key)
    end,
    __newindex = read_only,
    __tostring = view_tostring,
    __metatable = "fusebox.instance",
  }
  return st
end)

-- Returns the fb_service* called name, nil if never registered, or false
-- if the registry is closed. Services live as long as their registry, so
-- the pointer is good while the registry, or a balancer over it, is open.
function M.service_of(st, name)
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
  local slot = id % 4294967296
  if st.view_ids[slot] == id then return st.views[slot] end
  local host, port = instance_key(st.ud, id)
  if not host then return host end
  local v = setmetatable({}, st.view_mt)
  st.data[v] = { host = host, port = port, id = id }
  st.views[slot], st.view_ids[slot] = v, id
  return v
end

-- Returns the id of view v if it is one of this registry's views.
function M.id_of(st, v)
  local d = st.data[v]
  return d and d.id
end

-- Stores other than memory, by name -> constructor(opts); each backend
-- module adds itself (lua/fusebox/etcd.lua).
M.backends = {}

-- fb.registry{heartbeat_timeout=30 [, backend="memory" | a name in
-- M.backends, that backend's options]} -> a registry
function M.new(opts)
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

registry_mt.__index = registry
registry_mt.__tostring = function(self)
  if getmetatable(self) ~= registry_mt then return "fusebox.registry (bad self)" end
  local closed = ffi.cast("void **", self)[0] == nil and " closed" or ""
  return format("fusebox.registry%s (%p)", closed, self)
end

return M
